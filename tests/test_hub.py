"""Fan-out inside one process (protocol.md §4.3, §4.4): who is entitled to which event, one
encoding per event, per-connection seq, targeted events unsequenced, remote close requests."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from gateway.protocol.connection import Connection
from gateway.protocol.dialects import SEED, V3
from gateway.protocol.events import ALL, APPROVALS, PAIRING, READERS, READERS_AND_NODES, event_message, \
    to_connections, to_devices
from gateway.protocol.hub import Hub, entitled


class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def __call__(self, message: dict) -> None:
        self.sent.append(message)

    def frames(self) -> list[dict]:
        return [orjson.loads(m["text"]) for m in self.sent if m["type"] == "websocket.send"]


def make_conn(role: str = "operator", scopes: tuple[str, ...] = (), device_id: str | None = None,
              dialect: Any = SEED) -> tuple[Connection, Recorder]:
    socket = Recorder()
    conn = Connection(socket, dialect, max_buffered=1 << 20)
    conn.role, conn.scopes, conn.device_id, conn.authed = role, frozenset(scopes), device_id, True
    if role == "node":
        conn.node_id = device_id or "node-client"
    return conn, socket


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


AUDIENCES = {"all": ALL, "readers": READERS, "readers+nodes": READERS_AND_NODES, "pairing": PAIRING,
             "approvals": APPROVALS}


@pytest.mark.parametrize(("role", "scopes", "expected"), [
    ("operator", ("operator.admin",), {"all", "readers", "readers+nodes", "pairing", "approvals"}),
    ("operator", ("operator.read",), {"all", "readers", "readers+nodes"}),
    ("operator", ("operator.write",), {"all", "readers", "readers+nodes"}),
    ("operator", ("operator.pairing",), {"all", "pairing"}),
    ("operator", ("operator.approvals",), {"all", "approvals"}),
    ("operator", (), {"all"}),
    ("node", ("operator.admin",), {"all", "readers+nodes"}),  # a node never gets pairing/approval events
])
async def test_event_audiences(role: str, scopes: tuple[str, ...], expected: set[str]) -> None:
    conn, _ = make_conn(role, scopes)
    got = {name for name, audience in AUDIENCES.items() if entitled(audience, conn)}
    assert got == expected
    conn.stop_writer()


async def test_targeted_audiences() -> None:
    alice, _ = make_conn(device_id="dev-a")
    node, _ = make_conn("node", device_id="dev-a")
    assert entitled(to_connections(alice.conn_id), alice) and not entitled(to_connections(alice.conn_id), node)
    assert entitled(to_devices("dev-a"), alice) and entitled(to_devices("dev-a"), node)
    assert entitled(to_devices("dev-a", role="node"), node) and not entitled(to_devices("dev-a", role="node"), alice)
    assert not entitled({"kind": "node", "ids": ["dev-a"]}, alice) and entitled({"kind": "node", "ids": ["dev-a"]}, node)
    assert not entitled({"kind": "something-new"}, alice), "unknown audiences reach nobody"
    for conn in (alice, node):
        conn.stop_writer()


async def test_broadcast_reaches_entitled_connections_with_their_own_seq() -> None:
    hub = Hub()
    reader, reader_socket = make_conn(scopes=("operator.read",))
    pairer, pairer_socket = make_conn(scopes=("operator.pairing",))
    v3_reader, v3_socket = make_conn(scopes=("operator.read",), dialect=V3)
    for conn in (reader, pairer, v3_reader):
        hub.add(conn)
    hub.deliver(event_message("device.pair.requested", {"requestId": "r"}, PAIRING))
    hub.deliver(event_message("presence.changed", {"presence": []}, READERS, state_version={"presence": 3,
                                                                                             "health": 1}))
    hub.deliver(event_message("presence.changed", {"presence": []}, READERS))
    await settle()
    assert [(f["event"], f["seq"]) for f in reader_socket.frames()] == [("presence.changed", 1),
                                                                         ("presence.changed", 2)]
    assert reader_socket.frames()[0]["stateVersion"] == {"presence": 3, "health": 1}
    assert [(f["event"], f["seq"]) for f in pairer_socket.frames()] == [("device.pair.requested", 1)]
    assert [(f["type"], f["event"]) for f in v3_socket.frames()] == [("event", "presence"), ("event", "presence")]
    for conn in (reader, pairer, v3_reader):
        conn.stop_writer()


async def test_targeted_events_carry_no_seq_and_do_not_consume_one() -> None:
    hub = Hub()
    conn, socket = make_conn(scopes=("operator.read",), device_id="dev-x")
    hub.add(conn)
    hub.deliver(event_message("node.invoke.request", {"id": 1}, to_devices("dev-x")))
    hub.deliver(event_message("presence.changed", {}, READERS))
    await settle()
    frames = socket.frames()
    assert "seq" not in frames[0] and frames[1]["seq"] == 1
    conn.stop_writer()


async def test_removed_connections_get_nothing() -> None:
    hub = Hub()
    conn, socket = make_conn(scopes=("operator.admin",))
    hub.add(conn)
    hub.remove(conn)
    hub.deliver(event_message("tick", {"ts": 1}, ALL))
    await settle()
    assert socket.sent == []
    conn.stop_writer()


async def test_close_message_closes_only_the_addressed_device_connections() -> None:
    hub = Hub()
    target, target_socket = make_conn(scopes=("operator.read",), device_id="dev-revoked")
    other, other_socket = make_conn(scopes=("operator.read",), device_id="dev-fine")
    hub.add(target)
    hub.add(other)
    hub.deliver({"type": "gateway.close", "audience": to_devices("dev-revoked", role="operator"), "code": 1008,
                 "reason": "device token revoked"})
    await settle()
    assert target_socket.sent == [{"type": "websocket.close", "code": 1008, "reason": "device token revoked"}]
    assert other_socket.sent == [] and not other.closing
    other.stop_writer()


async def test_unauthenticated_connections_never_receive_broadcasts() -> None:
    hub = Hub()
    conn, socket = make_conn(scopes=("operator.admin",))
    conn.authed = False
    hub.add(conn)
    hub.deliver(event_message("tick", {"ts": 1}, ALL))
    await settle()
    assert socket.sent == []
    conn.stop_writer()


async def test_a_malformed_message_does_not_stop_fan_out() -> None:
    from gateway.protocol.events import emit

    hub = Hub()
    await hub.start()
    conn, socket = make_conn(scopes=("operator.read",))
    hub.add(conn)
    try:
        await hub.publish({"type": "gateway.event", "audience": READERS})  # no event name: cannot be delivered
        await emit("presence.changed", {"presence": []}, READERS)
        for _ in range(200):
            if socket.frames():
                break
            await asyncio.sleep(0.01)
        assert [f["event"] for f in socket.frames()] == ["presence.changed"]
    finally:
        conn.stop_writer()
        await hub.stop()
