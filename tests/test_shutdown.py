"""Orderly stop (protocol.md §2.11): on SIGTERM every client gets a `shutdown` event and then
close 1012, and the process exits."""

from __future__ import annotations

import asyncio
import signal


from gateway.client import GatewayClient
from tests.support import ADMIN, READ


async def test_sigterm_sends_shutdown_then_closes_1012(fresh_gateway_server) -> None:
    server = fresh_gateway_server
    reader = await GatewayClient.connect(server.url, token=server.token, scopes=READ)
    pairer = await GatewayClient.connect(server.url, token=server.token, scopes=["operator.pairing"])
    v3 = await GatewayClient.connect(server.v3_url, token=server.token, scopes=ADMIN)
    try:
        server.process.send_signal(signal.SIGTERM)
        for conn in (reader, pairer, v3):  # everyone gets it, whatever its scopes or dialect
            event = await conn.next_event("shutdown", timeout=15)
            assert event["payload"]["reason"]
            assert "restartExpectedMs" in event["payload"]
            assert isinstance(event.get("seq"), int)
            await asyncio.wait_for(conn.ws.wait_closed(), 15)
            assert conn.ws.close_code == 1012
        assert v3.hello["protocol"] == 3
    finally:
        for conn in (reader, pairer, v3):
            await conn.close()
    assert await asyncio.to_thread(server.process.wait, 20) is not None


async def test_sigterm_closes_sockets_still_in_the_handshake_with_1012(fresh_gateway_server) -> None:
    from tests.support import frames_until_close, open_socket

    server = fresh_gateway_server
    ws, _ = await open_socket(server.url)
    server.process.send_signal(signal.SIGTERM)
    frames = await frames_until_close(ws, timeout=15)
    assert frames == [], "no broadcast reaches a socket before hello-ok"
    assert ws.close_code == 1012
