"""The connect handshake over a real socket (protocol.md §2, auth-and-pairing.md §1.9), against
the gateway as deployed (`manage.py gateway serve`, daphne)."""

from __future__ import annotations

import asyncio
import uuid

from gateway.methods.seed import SEED_METHODS
from gateway.protocol.dialects import SEED_EVENTS, V3
from tests.support import ADMIN, READ, connect_params, frames_until_close, handshake, open_socket, recv_json, req


async def test_challenge_is_the_first_frame_with_a_fresh_nonce_per_socket(gateway_server) -> None:
    first, challenge_a = await open_socket(gateway_server.url)
    second, challenge_b = await open_socket(gateway_server.url)
    try:
        for challenge in (challenge_a, challenge_b):
            assert challenge["type"] == "evt" and challenge["event"] == "connect.challenge"
            assert "seq" not in challenge
            assert isinstance(challenge["payload"]["ts"], int)
            uuid.UUID(challenge["payload"]["nonce"])
        assert challenge_a["payload"]["nonce"] != challenge_b["payload"]["nonce"]
    finally:
        await first.close()
        await second.close()


async def test_non_json_first_frame_closes_1008_without_a_response(gateway_server) -> None:
    ws, _ = await open_socket(gateway_server.url)
    await ws.send("this is { not json")
    assert await frames_until_close(ws) == []
    assert ws.close_code == 1008


async def test_json_that_is_not_a_request_closes_1008_without_a_response(gateway_server) -> None:
    ws, _ = await open_socket(gateway_server.url)
    await ws.send('{"type":"evt","event":"hello"}')
    assert await frames_until_close(ws) == []
    assert (ws.close_code, ws.close_reason) == (1008, "invalid request frame")


async def test_non_connect_first_request_gets_400_then_close_1008(gateway_server) -> None:
    ws, _ = await open_socket(gateway_server.url)
    await ws.send(req("health", {}, rid="h1"))
    frames = await frames_until_close(ws)
    assert len(frames) == 1
    assert frames[0]["id"] == "h1" and frames[0]["ok"] is False
    assert frames[0]["error"]["code"] == 400
    assert frames[0]["error"]["message"] == "invalid handshake: first request must be connect"
    assert ws.close_code == 1008


async def test_invalid_connect_params_name_the_json_pointer_and_close_1008(gateway_server) -> None:
    params = connect_params(token=gateway_server.token)
    del params["client"]["platform"]
    ws, _, response = await handshake(gateway_server.url, params)
    error = response["error"]
    assert (error["code"], error["reason"]) == (400, "INVALID_REQUEST")
    assert "at /client/platform: required" in error["message"]
    assert {"path": "/client/platform", "message": "required"} in error["details"]["errors"]
    await frames_until_close(ws)
    assert ws.close_code == 1008


async def test_protocol_mismatch_is_400_with_expected_protocol_and_close_1002(gateway_server) -> None:
    params = connect_params(token=gateway_server.token, min_protocol=4, max_protocol=9)
    ws, _, response = await handshake(gateway_server.url, params)
    error = response["error"]
    assert (error["code"], error["reason"], error["message"]) == (400, "PROTOCOL_MISMATCH", "protocol mismatch")
    assert error["details"]["expectedProtocol"] == 3
    assert await frames_until_close(ws) == []
    assert ws.close_code == 1002


async def test_overlapping_protocol_range_negotiates_the_highest_common_version(gateway_server) -> None:
    for low, high, expected in ((1, 2, 2), (1, 1, 1), (2, 9, 3), (3, 3, 3)):
        ws, _, response = await handshake(gateway_server.url, connect_params(
            token=gateway_server.token, min_protocol=low, max_protocol=high))
        await ws.close()
        assert response["ok"], response
        assert response["payload"]["protocol"] == expected


async def test_invalid_role_is_400_and_close_1008(gateway_server) -> None:
    ws, _, response = await handshake(gateway_server.url, connect_params(token=gateway_server.token, role="root"))
    assert (response["error"]["code"], response["error"]["message"]) == (400, "invalid role")
    await frames_until_close(ws)
    assert ws.close_code == 1008


async def test_wrong_token_is_401_and_close_1008(gateway_server) -> None:
    ws, _, response = await handshake(gateway_server.url, connect_params(token="not-the-token", scopes=ADMIN))
    error = response["error"]
    assert (error["code"], error["reason"]) == (401, "TOKEN_MISMATCH")
    assert error["message"].startswith("unauthorized: gateway token mismatch")
    assert gateway_server.token not in str(response)
    assert await frames_until_close(ws) == []
    assert ws.close_code == 1008


async def test_refused_connect_is_logged_for_the_operator_without_the_secret(gateway_server) -> None:
    client_id = f"knocker-{uuid.uuid4().hex[:8]}"
    params = connect_params(token="not-the-token-either", scopes=READ)
    params["client"]["id"] = client_id
    ws, _, response = await handshake(gateway_server.url, params)
    assert response["error"]["reason"] == "TOKEN_MISMATCH"
    await frames_until_close(ws)
    for _ in range(50):
        lines = [line for line in gateway_server.log_path.read_text().splitlines() if client_id in line]
        if lines:
            break
        await asyncio.sleep(0.1)
    assert lines and "connect refused: TOKEN_MISMATCH" in lines[0], lines
    assert "not-the-token-either" not in gateway_server.log_path.read_text()


async def test_missing_token_is_401_and_close_1008(gateway_server) -> None:
    ws, _, response = await handshake(gateway_server.url, connect_params(scopes=READ))
    assert (response["error"]["code"], response["error"]["reason"]) == (401, "TOKEN_MISSING")
    assert response["error"]["message"].startswith("unauthorized: gateway token missing")
    await frames_until_close(ws)
    assert ws.close_code == 1008


async def test_hello_ok_advertises_every_seed_method_and_the_daphne_policy(gateway_server) -> None:
    ws, challenge, response = await handshake(gateway_server.url, connect_params(token=gateway_server.token,
                                                                                  scopes=READ))
    await ws.close()
    assert response["id"] == "connect" and response["ok"] is True
    hello = response["payload"]
    assert hello["type"] == "hello-ok"
    methods = hello["features"]["methods"]
    assert len(methods) >= 109
    assert set(SEED_METHODS) <= set(methods)
    assert "connect" not in methods
    assert hello["features"]["events"] == SEED_EVENTS
    # `gateway serve` gives daphne the limits the gateway advertises (nothing lowered).
    assert hello["policy"] == {"maxPayload": 8_388_608, "maxBufferedBytes": 16_777_216, "tickIntervalMs": 30_000}
    uuid.UUID(hello["server"]["connId"])
    assert "auth" not in hello, "no device identity, so no device token"


async def test_hello_ok_snapshot(gateway_server) -> None:
    ws, _, response = await handshake(gateway_server.url, connect_params(token=gateway_server.token, scopes=READ))
    await ws.close()
    snapshot = response["payload"]["snapshot"]
    assert any(e.get("mode") == "gateway" and e.get("reason") == "self" for e in snapshot["presence"])
    versions = snapshot["stateVersion"]
    assert isinstance(versions["presence"], int) and versions["presence"] >= 1
    assert isinstance(versions["health"], int) and versions["health"] >= 1
    assert isinstance(snapshot["uptimeMs"], int) and snapshot["uptimeMs"] >= 0
    assert snapshot["sessionDefaults"]["mainSessionKey"] == "agent:main:main"
    assert snapshot["authMode"] == "token"
    assert not str(snapshot.get("stateDir", "")).startswith("/"), "never a filesystem path of the server"


async def test_hello_ok_is_the_first_frame_after_the_challenge(gateway_server) -> None:
    ws, _ = await open_socket(gateway_server.url)
    try:
        await ws.send(req("connect", connect_params(token=gateway_server.token, scopes=ADMIN, mode="ui",
                                                     display_name="first-frame-probe"), rid="c"))
        first = await recv_json(ws)
        assert (first["type"], first["id"], first["ok"]) == ("res", "c", True)
    finally:
        await ws.close()


async def test_requests_sent_right_behind_connect_are_answered_after_hello(gateway_server) -> None:
    """A frame that arrives while connect is being checked waits for hello-ok (§2.8 row 12)."""
    ws, _ = await open_socket(gateway_server.url)
    try:
        await ws.send(req("connect", connect_params(token=gateway_server.token, scopes=READ), rid="c"))
        await ws.send(req("health", {}, rid="h"))
        responses = []
        while len(responses) < 2:
            frame = await recv_json(ws)
            if frame["type"] == "res":
                responses.append(frame)
        assert [r["id"] for r in responses] == ["c", "h"]
        assert all(r["ok"] for r in responses)
    finally:
        await ws.close()


async def test_second_connect_is_400_and_the_socket_stays_open(client) -> None:
    conn = await client(READ)
    frame = await conn.request("connect", connect_params(scopes=READ))
    assert frame["ok"] is False
    assert (frame["error"]["code"], frame["error"]["message"]) == (400, "connect is only valid as the first request")
    assert (await conn.call("health"))["ok"] is True


async def test_empty_scopes_grant_nothing(client) -> None:
    conn = await client([])
    frame = await conn.request("health")
    error = frame["error"]
    assert (error["code"], error["reason"], error["message"]) == (403, "MISSING_SCOPE", "missing scope: operator.read")
    frame = await conn.request("health")
    assert frame["error"]["code"] == 403, "the socket is still open and answering"


async def test_binary_connect_frame_is_accepted(gateway_server) -> None:
    ws, _ = await open_socket(gateway_server.url)
    try:
        await ws.send(req("connect", connect_params(token=gateway_server.token, scopes=READ), rid="b").encode())
        frame = await recv_json(ws)
        assert frame["ok"] is True
    finally:
        await ws.close()


async def test_handshake_is_unaffected_by_other_sockets_failing(gateway_server) -> None:
    """Many failing handshakes in parallel leave a good one untouched (loopback: never rate limited)."""
    async def bad() -> None:
        ws, _, response = await handshake(gateway_server.url, connect_params(token="wrong", scopes=READ))
        assert response["error"]["code"] == 401
        await frames_until_close(ws)

    await asyncio.gather(*(bad() for _ in range(15)))
    ws, _, response = await handshake(gateway_server.url, connect_params(token=gateway_server.token, scopes=READ))
    await ws.close()
    assert response["ok"] is True


# --- the v3 dialect on /v3 ------------------------------------------------------------------------------

async def test_v3_challenge_uses_event_frames(gateway_server) -> None:
    ws, challenge = await open_socket(gateway_server.v3_url)
    await ws.close()
    assert (challenge["type"], challenge["event"]) == ("event", "connect.challenge")


async def test_v3_wrong_token_is_a_string_code_with_the_reason_in_details(gateway_server) -> None:
    params = connect_params(token="nope", scopes=READ, min_protocol=3, max_protocol=3)
    ws, _, response = await handshake(gateway_server.v3_url, params)
    error = response["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert error["details"]["code"] == "TOKEN_MISMATCH"
    assert "reason" not in error
    await frames_until_close(ws)
    assert ws.close_code == 1008


async def test_v3_accepts_exactly_protocol_3(gateway_server) -> None:
    ws, _, response = await handshake(gateway_server.v3_url, connect_params(
        token=gateway_server.token, scopes=READ, min_protocol=1, max_protocol=2))
    error = response["error"]
    assert (error["code"], error["details"]["code"], error["details"]["expectedProtocol"]) == (
        "INVALID_REQUEST", "PROTOCOL_MISMATCH", 3)
    await frames_until_close(ws)
    assert ws.close_code == 1002


async def test_v3_errors_after_hello_are_strings_with_details_code(client) -> None:
    conn = await client(READ, v3=True)
    assert conn.hello["protocol"] == 3
    assert conn.hello["features"]["events"] == V3.events
    unknown = (await conn.request("no.such.method"))["error"]
    assert (unknown["code"], unknown["details"]["code"]) == ("INVALID_REQUEST", "NOT_FOUND")
    scope = (await conn.request("system-event", {"text": "x"}))["error"]
    assert (scope["code"], scope["details"]["code"]) == ("INVALID_REQUEST", "MISSING_SCOPE")
    assert (await conn.call("health"))["ok"] is True


async def test_v3_unavailable_keeps_the_anima_code_in_details(client) -> None:
    conn = await client(ADMIN, v3=True)
    error = (await conn.request("update.run"))["error"]  # always 503: the package manager updates
    assert (error["code"], error["details"]["code"]) == ("UNAVAILABLE", "UNAVAILABLE")


async def test_other_paths_speak_the_root_dialect(gateway_server) -> None:
    for path in ("/ws", "/gateway"):
        ws, challenge = await open_socket(gateway_server.url + path)
        await ws.close()
        assert challenge["type"] == "evt", path


async def test_frames_queued_behind_a_failed_connect_are_dropped(gateway_server) -> None:
    ws, _ = await open_socket(gateway_server.url)
    await ws.send(req("connect", connect_params(token="wrong", scopes=READ), rid="c"))
    await ws.send(req("health", {}, rid="h"))
    frames = await frames_until_close(ws)
    assert [f["id"] for f in frames] == ["c"]
    assert ws.close_code == 1008


async def test_token_only_node_connection_is_admitted_without_a_device(gateway_server) -> None:
    """README D4: a shared-secret connection needs no device identity, whatever its role."""
    ws, _, response = await handshake(gateway_server.url, connect_params(token=gateway_server.token, role="node"))
    await ws.close()
    assert response["ok"] is True
    assert "auth" not in response["payload"]


async def test_client_aliases_are_accepted(gateway_server) -> None:
    params = connect_params(token=gateway_server.token, scopes=READ, client_id="Control-UI", mode="WEB")
    ws, _, response = await handshake(gateway_server.url, params, headers={"Origin": "http://127.0.0.1"})
    await ws.close()
    assert response["ok"], response
