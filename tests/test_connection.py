"""One connection's outbound queue: per-connection seq, the byte budget and the slow-consumer
policy (protocol.md §4.4, §4.6), close-reason truncation."""

from __future__ import annotations

import asyncio

import orjson

from gateway.protocol.connection import Connection, truncate_reason
from gateway.protocol.dialects import SEED, V3


class BlockedSocket:
    """An ASGI send() whose peer does not read: every call waits until released."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.release = asyncio.Event()

    async def __call__(self, message: dict) -> None:
        await self.release.wait()
        self.sent.append(message)


class OpenSocket(BlockedSocket):
    def __init__(self) -> None:
        super().__init__()
        self.release.set()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def texts(socket: BlockedSocket) -> list[dict]:
    return [orjson.loads(m["text"]) for m in socket.sent if m["type"] == "websocket.send"]


async def test_events_are_numbered_from_one_per_connection() -> None:
    socket = OpenSocket()
    conn = Connection(socket, SEED, max_buffered=1 << 20)
    conn.authed = True
    for _ in range(3):
        conn.push_event("tick", "{}", droppable=True, sequenced=True)
    conn.push_event("node.invoke.request", "{}", droppable=False, sequenced=False)
    await settle()
    frames = texts(socket)
    assert [f.get("seq") for f in frames] == [1, 2, 3, None]
    conn.stop_writer()


async def test_events_wait_for_the_handshake() -> None:
    socket = OpenSocket()
    conn = Connection(socket, SEED, max_buffered=1 << 20)
    conn.push_event("tick", "{}", droppable=True, sequenced=True)
    await settle()
    assert socket.sent == [] and conn.seq == 0
    conn.stop_writer()


async def test_slow_consumer_loses_droppable_events_with_a_seq_gap() -> None:
    socket = BlockedSocket()
    conn = Connection(socket, SEED, max_buffered=100)
    conn.authed = True
    conn.push_text("x" * 200)  # a response larger than the budget is still queued
    conn.push_event("presence.changed", "{}", droppable=True, sequenced=True)  # dropped, seq 1 used
    assert not conn.closing
    socket.release.set()
    await settle()
    conn.push_event("presence.changed", "{}", droppable=True, sequenced=True)
    await settle()
    events = [f for f in (orjson.loads(m["text"]) for m in socket.sent if m["text"].startswith("{"))]
    assert [e["seq"] for e in events] == [2], "the gap tells the client it missed one"
    conn.stop_writer()


async def test_slow_consumer_is_closed_1008_on_a_non_droppable_event() -> None:
    socket = BlockedSocket()
    conn = Connection(socket, SEED, max_buffered=100)
    conn.authed = True
    conn.push_text("x" * 200)
    conn.push_event("shutdown", "{}", droppable=False, sequenced=True)
    assert conn.closing
    socket.release.set()
    await settle()
    closes = [m for m in socket.sent if m["type"] == "websocket.close"]
    assert closes == [{"type": "websocket.close", "code": 1008, "reason": "slow consumer"}]


async def test_goodbye_sends_shutdown_then_closes_1012() -> None:
    socket = OpenSocket()
    conn = Connection(socket, SEED, max_buffered=1 << 20)
    conn.authed = True
    conn.goodbye("ANIMA Gateway stopping")
    await conn.drain()
    assert socket.sent[0]["type"] == "websocket.send"
    event = orjson.loads(socket.sent[0]["text"])
    assert (event["event"], event["payload"]) == ("shutdown", {"reason": "ANIMA Gateway stopping",
                                                               "restartExpectedMs": None})
    assert socket.sent[1] == {"type": "websocket.close", "code": 1012, "reason": "service restart"}


async def test_nothing_is_sent_after_close() -> None:
    socket = OpenSocket()
    conn = Connection(socket, SEED, max_buffered=1 << 20)
    conn.authed = True
    conn.close_soon(1008, "bye")
    conn.push_text('{"late":true}')
    conn.push_event("tick", "{}", droppable=True, sequenced=True)
    await conn.drain()
    assert [m["type"] for m in socket.sent] == ["websocket.close"]


async def test_v3_connection_skips_events_it_has_no_name_for() -> None:
    socket = OpenSocket()
    conn = Connection(socket, V3, max_buffered=1 << 20)
    conn.authed = True
    conn.push_event("chat.run.started", "{}", droppable=False, sequenced=True)
    conn.push_event("health.changed", "{}", droppable=False, sequenced=True)
    await settle()
    frames = texts(socket)
    assert [(f["type"], f["event"], f["seq"]) for f in frames] == [("event", "health", 1)]
    conn.stop_writer()


def test_close_reasons_are_cut_to_120_utf8_bytes() -> None:
    assert truncate_reason("short") == "short"
    assert len(truncate_reason("x" * 500).encode()) == 120
    cut = truncate_reason("é" * 100)  # 2 bytes each: never split a character
    assert len(cut.encode()) <= 120 and cut == "é" * 60
