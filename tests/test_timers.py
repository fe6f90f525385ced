"""Timers over a real socket, on a gateway with short intervals: the handshake timeout
(close 1008) and the tick broadcast that reaches every connection (protocol.md §2.8, §2.10)."""

from __future__ import annotations

from typing import Iterator

import pytest

from gateway.client import GatewayClient
from tests.support import READ, GatewayServer, frames_until_close, open_socket, start_gateway


@pytest.fixture(scope="module")
def quick_server() -> Iterator[GatewayServer]:
    server = start_gateway({"ANIMA_TICK_INTERVAL_MS": "200", "ANIMA_HANDSHAKE_TIMEOUT_MS": "1500"})
    yield server
    server.stop()


async def test_silent_socket_is_closed_1008_after_the_handshake_timeout(quick_server: GatewayServer) -> None:
    ws, challenge = await open_socket(quick_server.url)
    assert challenge["event"] == "connect.challenge"
    assert await frames_until_close(ws, timeout=15) == []
    assert (ws.close_code, ws.close_reason) == (1008, "handshake timeout")


async def test_tick_reaches_every_connection_with_the_advertised_period(quick_server: GatewayServer) -> None:
    connections = [
        await GatewayClient.connect(quick_server.url, token=quick_server.token, scopes=READ),
        await GatewayClient.connect(quick_server.url, token=quick_server.token, scopes=[]),
        await GatewayClient.connect(quick_server.url, token=quick_server.token, scopes=[], role="node"),
        await GatewayClient.connect(quick_server.v3_url, token=quick_server.token, scopes=[]),
    ]
    try:
        for conn in connections:
            assert conn.hello["policy"]["tickIntervalMs"] == 200
            first = await conn.next_event("tick", timeout=10)
            second = await conn.next_event("tick", timeout=10)
            assert isinstance(first["payload"]["ts"], int)
            assert second["seq"] > first["seq"] >= 1
            assert second["payload"]["ts"] >= first["payload"]["ts"]
    finally:
        for conn in connections:
            await conn.close()


async def test_an_authenticated_socket_outlives_the_handshake_timeout(quick_server: GatewayServer) -> None:
    conn = await GatewayClient.connect(quick_server.url, token=quick_server.token, scopes=READ)
    try:
        for _ in range(10):  # 10 ticks of 200 ms: well past the 1.5 s handshake timeout
            await conn.next_event("tick", timeout=10)
        assert (await conn.call("health"))["ok"] is True
    finally:
        await conn.close()
