"""Device identity, pairing and device tokens over a real socket (auth-and-pairing.md §2-4,
README D5). A remote device is simulated with an X-Forwarded-For header from the (untrusted)
loopback peer, which makes the connection non-local."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.client import GatewayClient
from tests.support import ADMIN, PAIRING, READ, REMOTE, DeviceKey, device_handshake, frames_until_close, now_ms, \
    open_socket, still_usable


async def next_matching(client: GatewayClient, event: str, predicate: Any, timeout: float = 10) -> dict:
    """The next `event` frame whose payload satisfies `predicate` (others are skipped)."""
    async def wait() -> dict:
        while True:
            frame = await client.next_event(event, timeout=timeout)
            if predicate(frame["payload"]):
                return frame
    return await asyncio.wait_for(wait(), timeout)


async def pairing_request(server: Any, device: DeviceKey, scopes: list[str]) -> str:
    """A remote device asks to connect: refused with NOT_PAIRED; returns the request id."""
    attempt = await device_handshake(server.url, device, token=server.token, scopes=scopes, headers=REMOTE)
    assert attempt.error["code"] == 403 and attempt.error["reason"] == "NOT_PAIRED", attempt.response
    await frames_until_close(attempt.ws)
    return attempt.error["details"]["requestId"]


async def test_local_device_is_auto_paired_and_sees_its_token_once(gateway_server, client) -> None:
    device = DeviceKey()
    first = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ)
    assert first.ok, first.response
    auth = first.hello["auth"]
    assert auth["role"] == "operator" and auth["scopes"] == READ
    token = auth["deviceToken"]
    assert isinstance(token, str) and len(token) >= 32
    await first.ws.close()

    again = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ)
    assert again.ok
    assert "deviceToken" not in again.hello["auth"], "a token is shown only when it is issued"
    await again.ws.close()

    pairer = await client(PAIRING)
    listing = await pairer.call("device.pair.list")
    paired = next(d for d in listing["paired"] if d["deviceId"] == device.id)
    assert paired["scopes"] == READ
    assert token not in str(listing), "device.pair.list never shows token strings"


async def test_local_device_without_nonce_signs_v1(gateway_server) -> None:
    device = DeviceKey()
    attempt = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ,
                                     sign_nonce=False)
    assert attempt.ok, attempt.response
    await attempt.ws.close()


async def test_remote_device_without_nonce_is_refused(gateway_server) -> None:
    attempt = await device_handshake(gateway_server.url, DeviceKey(), token=gateway_server.token, scopes=READ,
                                     headers=REMOTE, sign_nonce=False)
    assert (attempt.error["code"], attempt.error["reason"]) == (401, "DEVICE_NONCE_REQUIRED")
    await frames_until_close(attempt.ws)
    assert attempt.ws.close_code == 1008


async def test_signature_over_other_scopes_is_invalid(gateway_server) -> None:
    attempt = await device_handshake(gateway_server.url, DeviceKey(), token=gateway_server.token, scopes=ADMIN,
                                     signed_scopes=READ)
    assert (attempt.error["code"], attempt.error["reason"]) == (401, "DEVICE_SIGNATURE_INVALID")
    await frames_until_close(attempt.ws)
    assert attempt.ws.close_code == 1008


async def test_device_id_must_be_the_key_fingerprint(gateway_server) -> None:
    device, other = DeviceKey(), DeviceKey()
    device.id = other.id  # claim another device's id with our own key
    attempt = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ)
    assert (attempt.error["code"], attempt.error["reason"]) == (401, "DEVICE_IDENTITY_MISMATCH")
    await frames_until_close(attempt.ws)
    assert attempt.ws.close_code == 1008


async def test_remote_device_needs_pairing_and_pairers_hear_about_it(gateway_server, client) -> None:
    pairer = await client(PAIRING)
    reader = await client(READ)
    device = DeviceKey()
    attempt = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ,
                                     headers=REMOTE)
    error = attempt.error
    assert (error["code"], error["reason"], error["message"]) == (403, "NOT_PAIRED", "pairing required")
    request_id = error["details"]["requestId"]
    assert await frames_until_close(attempt.ws) == []
    assert attempt.ws.close_code == 1008

    requested = await next_matching(pairer, "device.pair.requested", lambda p: p["requestId"] == request_id)
    assert requested["payload"]["deviceId"] == device.id
    assert requested["payload"]["scopes"] == READ
    listing = await pairer.call("device.pair.list")
    assert request_id in [p["requestId"] for p in listing["pending"]]

    # A reader is not entitled to pairing events: a later presence event reaches it first.
    admin = await client(ADMIN)
    await admin.call("system-event", {"text": f"barrier {request_id}"})
    seen = []
    while True:
        frame = await reader.next_event()
        seen.append(frame["event"])
        if frame["event"] == "presence.changed" and any(
                e.get("text") == f"barrier {request_id}" for e in frame["payload"]["presence"]):
            break
    assert "device.pair.requested" not in seen


async def test_asking_again_returns_the_same_pending_request(gateway_server) -> None:
    device = DeviceKey()
    first = await pairing_request(gateway_server, device, READ)
    second = await pairing_request(gateway_server, device, READ)
    assert first == second


async def test_approved_remote_device_can_connect(gateway_server, client) -> None:
    device = DeviceKey()
    request_id = await pairing_request(gateway_server, device, READ)
    approver = await client(PAIRING + READ)
    result = await approver.call("device.pair.approve", {"requestId": request_id})
    assert result["requestId"] == request_id
    assert result["device"]["deviceId"] == device.id
    resolved = await next_matching(approver, "device.pair.resolved", lambda p: p["requestId"] == request_id)
    assert resolved["payload"]["decision"] == "approved"

    admitted = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ,
                                      headers=REMOTE)
    assert admitted.ok, admitted.response
    assert admitted.hello["auth"]["deviceToken"]
    conn = admitted.client()
    try:
        await still_usable(conn)
    finally:
        await conn.close()

    again = await approver.request("device.pair.approve", {"requestId": request_id})
    assert again["error"]["code"] == 409, "a resolved request stays for the audit trail: acting again conflicts"


async def test_approving_an_unknown_request_is_404(client) -> None:
    approver = await client(PAIRING)
    frame = await approver.request("device.pair.approve", {"requestId": "00000000-0000-4000-8000-000000000000"})
    assert (frame["error"]["code"], frame["error"]["reason"]) == (404, "NOT_FOUND")
    frame = await approver.request("device.pair.approve", {"requestId": "not-a-uuid"})
    assert frame["error"]["code"] == 404
    frame = await approver.request("device.pair.approve", {})
    assert frame["error"]["code"] == 400 and "/requestId" in frame["error"]["message"]
    assert (await approver.call("device.pair.list"))["pending"] is not None, "the socket survived"


async def test_rejected_device_stays_out(gateway_server, client) -> None:
    device = DeviceKey()
    request_id = await pairing_request(gateway_server, device, READ)
    approver = await client(PAIRING)
    result = await approver.call("device.pair.reject", {"requestId": request_id})
    assert result == {"requestId": request_id, "deviceId": device.id}
    new_request = await pairing_request(gateway_server, device, READ)
    assert new_request != request_id


async def test_shared_secret_approver_holds_every_scope(gateway_server, client) -> None:
    """README D5: a connection that proved the shared secret may grant any scope, even one it did
    not ask for itself."""
    device = DeviceKey()
    request_id = await pairing_request(gateway_server, device, READ)
    approver = await client(PAIRING)  # authenticated by the shared gateway token
    frame = await approver.request("device.pair.approve", {"requestId": request_id})
    assert frame["ok"], frame


async def test_device_token_approver_cannot_grant_scopes_it_does_not_hold(gateway_server) -> None:
    """README D5: an approver that logged in with its device token grants at most its own scopes."""
    approver_device = DeviceKey()
    first = await device_handshake(gateway_server.url, approver_device, token=gateway_server.token, scopes=PAIRING)
    assert first.ok, first.response
    await first.ws.close()
    by_token = await device_handshake(gateway_server.url, approver_device, token=first.hello["auth"]["deviceToken"],
                                      scopes=PAIRING)
    assert by_token.ok, by_token.response
    approver = by_token.client()
    try:
        wants_read = await pairing_request(gateway_server, DeviceKey(), READ)
        frame = await approver.request("device.pair.approve", {"requestId": wants_read})
        assert (frame["error"]["code"], frame["error"]["reason"]) == (403, "FORBIDDEN")
        assert "operator.read" in frame["error"]["message"]

        wants_pairing = await pairing_request(gateway_server, DeviceKey(), PAIRING)
        assert (await approver.call("device.pair.approve", {"requestId": wants_pairing}))["requestId"] == wants_pairing
    finally:
        await approver.close()


async def test_device_token_authenticates_its_device(gateway_server) -> None:
    device = DeviceKey()
    first = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ)
    token = first.hello["auth"]["deviceToken"]
    await first.ws.close()
    with_token = await device_handshake(gateway_server.url, device, token=token, scopes=READ)
    assert with_token.ok, with_token.response
    await with_token.ws.close()

    thief = DeviceKey()  # another device cannot use it
    stolen = await device_handshake(gateway_server.url, thief, token=token, scopes=READ)
    assert stolen.error["code"] == 401
    await frames_until_close(stolen.ws)

    wider = await device_handshake(gateway_server.url, device, token=token, scopes=ADMIN)
    assert wider.error["code"] == 401, "a device token never covers more than it was issued for"
    await frames_until_close(wider.ws)


async def test_revoked_token_closes_live_connection(gateway_server, client) -> None:
    device = DeviceKey()
    request_id = await pairing_request(gateway_server, device, READ)
    pairer = await client(PAIRING + READ)
    await pairer.call("device.pair.approve", {"requestId": request_id})
    admitted = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ,
                                      headers=REMOTE)
    assert admitted.ok, admitted.response
    device_token = admitted.hello["auth"]["deviceToken"]
    live = admitted.client()
    await still_usable(live)

    result = await pairer.call("device.token.revoke", {"deviceId": device.id, "role": "operator"})
    assert result["deviceId"] == device.id and result["revokedAtMs"] > 0

    await asyncio.wait_for(live.ws.wait_closed(), 10)
    assert live.ws.close_code == 1008
    await live.close()
    await still_usable(pairer)  # the revoking connection is untouched

    refused = await device_handshake(gateway_server.url, device, token=device_token, scopes=READ, headers=REMOTE)
    assert (refused.error["code"], refused.error["reason"]) == (401, "DEVICE_TOKEN_REVOKED")
    await frames_until_close(refused.ws)
    assert refused.ws.close_code == 1008


async def test_revoking_an_unknown_token_is_404(client) -> None:
    pairer = await client(PAIRING)
    frame = await pairer.request("device.token.revoke", {"deviceId": "0" * 64, "role": "operator"})
    assert (frame["error"]["code"], frame["error"]["reason"]) == (404, "NOT_FOUND")
    assert "pending" in await pairer.call("device.pair.list")


async def test_rotate_cannot_widen_scopes(gateway_server, client) -> None:
    device = DeviceKey()
    first = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ)
    await first.ws.close()
    pairer = await client(PAIRING)
    frame = await pairer.request("device.token.rotate", {"deviceId": device.id, "role": "operator",
                                                         "scopes": ["operator.admin"]})
    assert (frame["error"]["code"], frame["error"]["reason"]) == (403, "FORBIDDEN")
    rotated = await pairer.call("device.token.rotate", {"deviceId": device.id, "role": "operator"})
    assert rotated["scopes"] == READ and rotated["token"]
    old = first.hello["auth"]["deviceToken"]
    stale = await device_handshake(gateway_server.url, device, token=old, scopes=READ)
    assert stale.error["code"] == 401, "the old token stops working after rotate"
    await frames_until_close(stale.ws)
    fresh = await device_handshake(gateway_server.url, device, token=rotated["token"], scopes=READ)
    assert fresh.ok
    await fresh.ws.close()


async def test_signature_must_be_fresh(gateway_server) -> None:
    device = DeviceKey()
    for offset in (-11 * 60_000, 11 * 60_000):  # ten minutes of clock skew either way, no more
        stale = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ,
                                       signed_at=now_ms() + offset)
        assert (stale.error["code"], stale.error["reason"]) == (401, "SIGNATURE_EXPIRED"), offset
        await frames_until_close(stale.ws)
        assert stale.ws.close_code == 1008
    fresh = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ,
                                   signed_at=now_ms() - 9 * 60_000)
    assert fresh.ok, fresh.response
    await fresh.ws.close()


async def test_nonce_of_another_socket_is_refused(gateway_server) -> None:
    """A captured connect cannot be replayed on a new socket by a remote client."""
    other, challenge = await open_socket(gateway_server.url)
    await other.close()
    replay = await device_handshake(gateway_server.url, DeviceKey(), token=gateway_server.token, scopes=READ,
                                    headers=REMOTE, nonce=challenge["payload"]["nonce"])
    assert (replay.error["code"], replay.error["reason"]) == (401, "DEVICE_NONCE_MISMATCH")
    await frames_until_close(replay.ws)
    assert replay.ws.close_code == 1008


async def test_paired_remote_device_asking_for_more_scopes_must_pair_again(gateway_server, client) -> None:
    device = DeviceKey()
    request_id = await pairing_request(gateway_server, device, READ)
    pairer = await client(PAIRING)
    await pairer.call("device.pair.approve", {"requestId": request_id})
    wider = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=ADMIN,
                                   headers=REMOTE)
    assert (wider.error["code"], wider.error["reason"]) == (403, "NOT_PAIRED"), "even with the shared token"
    assert wider.error["details"]["requestId"] != request_id
    await frames_until_close(wider.ws)
    as_node = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=[],
                                     headers=REMOTE, role="node")
    assert as_node.error["reason"] == "NOT_PAIRED", "an operator device cannot become a node unapproved"
    await frames_until_close(as_node.ws)
    same = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ,
                                  headers=REMOTE)
    assert same.ok, "the approved scopes still work"
    await same.ws.close()


async def test_local_device_upgrades_its_scopes_silently(gateway_server) -> None:
    device = DeviceKey()
    first = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ)
    assert first.ok
    await first.ws.close()
    upgraded = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=ADMIN)
    assert upgraded.ok, upgraded.response
    assert set(upgraded.hello["auth"]["scopes"]) == set(ADMIN)
    assert upgraded.hello["auth"]["deviceToken"], "a wider token is issued, and shown once"
    await upgraded.ws.close()


async def test_local_auto_approval_is_announced_to_pairers(gateway_server, client) -> None:
    pairer = await client(PAIRING)
    device = DeviceKey()
    attempt = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ)
    assert attempt.ok
    await attempt.ws.close()
    seen = []
    while True:
        frame = await pairer.next_event()
        seen.append(frame)
        if frame["event"] == "device.pair.resolved" and frame["payload"]["deviceId"] == device.id:
            break
    assert frame["payload"]["decision"] == "approved"
    assert not any(f["event"] == "device.pair.requested" and f["payload"]["deviceId"] == device.id for f in seen), \
        "a silent (local) request is not announced as pending"


async def test_rejection_is_announced(gateway_server, client) -> None:
    device = DeviceKey()
    request_id = await pairing_request(gateway_server, device, READ)
    pairer = await client(PAIRING)
    await pairer.call("device.pair.reject", {"requestId": request_id})
    resolved = await next_matching(pairer, "device.pair.resolved", lambda p: p["requestId"] == request_id)
    assert resolved["payload"] == {"requestId": request_id, "deviceId": device.id, "decision": "rejected",
                                   "ts": resolved["payload"]["ts"]}
    again = await pairer.request("device.pair.reject", {"requestId": request_id})
    assert again["error"]["code"] == 409
