"""Behind a trusted proxy (ANIMA_GATEWAY_TRUSTED_PROXIES=127.0.0.1) over a real socket: the
client address is the rightmost untrusted X-Forwarded-For entry (README D5), so remote clients
are rate limited per address and cannot pass for local ones."""

from __future__ import annotations

from typing import Iterator

import pytest

from gateway.client import GatewayClient
from tests.support import READ, DeviceKey, GatewayServer, connect_params, device_handshake, frames_until_close, \
    handshake


@pytest.fixture(scope="module")
def proxied_server() -> Iterator[GatewayServer]:
    from tests.support import start_gateway

    server = start_gateway({"ANIMA_GATEWAY_TRUSTED_PROXIES": "127.0.0.1"})
    yield server
    server.stop()


async def connect_via_proxy(server: GatewayServer, token: str, forwarded_for: str) -> tuple[dict, int | None]:
    ws, _, response = await handshake(server.url, connect_params(token=token, scopes=READ),
                                      headers={"X-Forwarded-For": forwarded_for})
    if response.get("ok"):
        await ws.close()
        return response, None
    await frames_until_close(ws)
    return response, ws.close_code


async def test_ten_failures_lock_the_address_even_for_the_right_token(proxied_server: GatewayServer) -> None:
    attacker = "203.0.113.77"
    for _ in range(10):
        response, code = await connect_via_proxy(proxied_server, "wrong-token", attacker)
        assert (response["error"]["code"], code) == (401, 1008)
    response, code = await connect_via_proxy(proxied_server, proxied_server.token, attacker)
    error = response["error"]
    assert (error["code"], error["reason"], code) == (429, "RATE_LIMITED", 1008)
    assert error["retryAfterMs"] > 0
    assert "too many failed authentication attempts" in error["message"]

    response, _ = await connect_via_proxy(proxied_server, proxied_server.token, "203.0.113.78")
    assert response["ok"], "another address is not locked"
    response, _ = await connect_via_proxy(proxied_server, proxied_server.token, "127.0.0.1")
    assert response["ok"], "loopback clients are exempt"


async def test_prepending_loopback_does_not_make_a_client_local(proxied_server: GatewayServer) -> None:
    attempt = await device_handshake(proxied_server.url, DeviceKey(), token=proxied_server.token, scopes=READ,
                                     headers={"X-Forwarded-For": "127.0.0.1, 203.0.113.5"}, sign_nonce=False)
    assert (attempt.error["code"], attempt.error["reason"]) == (401, "DEVICE_NONCE_REQUIRED")
    await frames_until_close(attempt.ws)


async def test_remote_device_behind_the_proxy_needs_pairing(proxied_server: GatewayServer) -> None:
    pairer = await GatewayClient.connect(proxied_server.url, token=proxied_server.token, scopes=["operator.pairing"])
    try:
        attempt = await device_handshake(proxied_server.url, DeviceKey(), token=proxied_server.token, scopes=READ,
                                         headers={"X-Forwarded-For": "198.51.100.30"})
        assert attempt.error["reason"] == "NOT_PAIRED"
        await frames_until_close(attempt.ws)
        request_id = attempt.error["details"]["requestId"]
        event = await pairer.next_event("device.pair.requested")
        while event["payload"]["requestId"] != request_id:
            event = await pairer.next_event("device.pair.requested")
        assert event["payload"]["remoteIp"] == "198.51.100.30"
    finally:
        await pairer.close()


async def test_remote_client_presence_shows_its_forwarded_address(proxied_server: GatewayServer) -> None:
    ws, _, response = await handshake(proxied_server.url, connect_params(
        token=proxied_server.token, scopes=READ, mode="ui", display_name="proxied-ui"),
        headers={"X-Forwarded-For": "198.51.100.31"})
    try:
        assert response["ok"]
        entry = next(e for e in response["payload"]["snapshot"]["presence"] if e.get("host") == "proxied-ui")
        assert entry["ip"] == "198.51.100.31"
    finally:
        await ws.close()


async def test_loopback_forwarded_by_the_proxy_is_local(proxied_server: GatewayServer) -> None:
    attempt = await device_handshake(proxied_server.url, DeviceKey(), token=proxied_server.token, scopes=READ,
                                     headers={"X-Forwarded-For": "127.0.0.1"})
    assert attempt.ok, attempt.response
    assert attempt.hello["auth"]["deviceToken"], "auto-paired as a local device"
    await attempt.ws.close()


async def test_success_resets_the_failure_count_of_its_address(proxied_server: GatewayServer) -> None:
    address = "203.0.113.90"
    for _ in range(9):
        response, _ = await connect_via_proxy(proxied_server, "wrong-token", address)
        assert response["error"]["code"] == 401
    response, _ = await connect_via_proxy(proxied_server, proxied_server.token, address)
    assert response["ok"]
    for _ in range(9):
        response, _ = await connect_via_proxy(proxied_server, "wrong-token", address)
        assert response["error"]["code"] == 401, "counting started again after the success"
    response, _ = await connect_via_proxy(proxied_server, proxied_server.token, address)
    assert response["ok"]


async def test_device_token_failures_have_their_own_bucket(proxied_server: GatewayServer) -> None:
    address = {"X-Forwarded-For": "203.0.113.91"}
    device = DeviceKey()
    for _ in range(10):
        attempt = await device_handshake(proxied_server.url, device, token="not-a-device-token", scopes=READ,
                                         headers=address)
        assert (attempt.error["code"], attempt.error["reason"]) == (401, "DEVICE_TOKEN_MISMATCH")
        await frames_until_close(attempt.ws)
    locked = await device_handshake(proxied_server.url, device, token="not-a-device-token", scopes=READ,
                                    headers=address)
    assert (locked.error["code"], locked.error["reason"]) == (429, "RATE_LIMITED")
    assert locked.error["retryAfterMs"] > 0
    await frames_until_close(locked.ws)
    response, _ = await connect_via_proxy(proxied_server, proxied_server.token, "203.0.113.91")
    assert response["ok"], "the shared-secret bucket of the same address is not locked"
