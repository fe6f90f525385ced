"""Per-process fan-out. The process owns one channel in the channel-layer group; every event
arrives there once and is written to the entitled local connections. The payload is encoded
once per event; each frame only splices in the connection's own `seq`."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable, Iterable

from channels.layers import get_channel_layer

from .events import GROUP
from .frames import dumps
from .registry import SCOPE_ADMIN, SCOPE_APPROVALS, SCOPE_PAIRING, SCOPE_READ, SCOPE_WRITE

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger("gateway.hub")

READ_SCOPES = frozenset({SCOPE_READ, SCOPE_WRITE, SCOPE_ADMIN})


def entitled(audience: dict, conn: Connection) -> bool:
    """protocol.md §4.3 (our stricter rules)."""
    kind = audience.get("kind")
    operator = conn.role == "operator"
    if kind == "all":
        return True
    if kind == "readers":
        return operator and bool(conn.scopes & READ_SCOPES)
    if kind == "readers+nodes":
        return conn.role == "node" or (operator and bool(conn.scopes & READ_SCOPES))
    if kind == "pairing":
        return operator and bool(conn.scopes & {SCOPE_PAIRING, SCOPE_ADMIN})
    if kind == "approvals":
        return operator and bool(conn.scopes & {SCOPE_APPROVALS, SCOPE_ADMIN})
    if kind == "conn":
        return conn.conn_id in audience.get("ids", ())
    if kind == "device":
        role = audience.get("role")
        return conn.device_id in audience.get("ids", ()) and (role is None or role == conn.role)
    if kind == "node":
        return conn.role == "node" and conn.node_id in audience.get("ids", ())
    return False


TARGETED = {"conn", "device", "node"}
MAX_EVENT_BYTES = 8 * 1024 * 1024  # no single event may take half a client's outbound budget


class Hub:
    def __init__(self) -> None:
        self.connections: dict[str, Connection] = {}  # authenticated: they receive events
        self.sockets: dict[str, Connection] = {}      # every accepted socket, handshake or not
        # other message types (e.g. node invoke results sent straight to this process's channel)
        self.handlers: dict[str, Callable[[dict], None]] = {}
        self._task: asyncio.Task | None = None
        self.channel_name: str | None = None

    def add(self, conn: Connection) -> None:
        self.connections[conn.conn_id] = conn

    def remove(self, conn: Connection) -> None:
        self.connections.pop(conn.conn_id, None)

    async def start(self) -> None:
        layer = get_channel_layer()
        self.channel_name = await layer.new_channel("gateway.")
        await layer.group_add(GROUP, self.channel_name)
        self._task = asyncio.get_running_loop().create_task(self._receive_loop(layer))

    async def refresh_membership(self) -> None:
        """Group membership expires in the channel layer; renew it (background loop)."""
        if self.channel_name:
            await get_channel_layer().group_add(GROUP, self.channel_name)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            # Wait for it: a receive left pending when the loop closes crashes the interpreter at exit.
            await asyncio.gather(self._task, return_exceptions=True)
        if self.channel_name:
            try:
                await get_channel_layer().group_discard(GROUP, self.channel_name)
            except Exception:  # the layer may already be gone at shutdown
                log.debug("group_discard failed at shutdown", exc_info=True)

    async def _receive_loop(self, layer: Any) -> None:
        backoff = 0.5
        while True:
            try:
                message = await layer.receive(self.channel_name)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("channel layer receive failed; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
                continue
            handler = self.handlers.get(message.get("type", ""))
            try:
                handler(message) if handler else self.deliver(message)
            except Exception:
                log.exception("handling %s failed", message.get("type"))

    def on(self, message_type: str, handler: Callable[[dict], None]) -> None:
        self.handlers[message_type] = handler

    async def publish(self, message: dict) -> None:
        """A message for every process (the group)."""
        await get_channel_layer().group_send(GROUP, message)

    async def send_to(self, channel: str, message: dict) -> None:
        """A message for one process (its hub channel), e.g. the answer to its invoke."""
        await get_channel_layer().send(channel, message)

    def deliver(self, message: dict) -> None:
        """Write one channel-layer message to the local connections it is meant for."""
        audience = message.get("audience") or {}
        targets: Iterable[Connection] = [c for c in list(self.connections.values()) if entitled(audience, c)]
        if message.get("type") == "gateway.close":
            for conn in targets:
                conn.close_soon(message.get("code", 1008), message.get("reason", ""))
            return
        payload_json = dumps(message.get("payload"))
        if len(payload_json) > MAX_EVENT_BYTES:
            log.warning("event %s is %d bytes; not delivered", message.get("event"), len(payload_json))
            return
        targeted = audience.get("kind") in TARGETED
        for conn in targets:
            conn.push_event(message["event"], payload_json, droppable=bool(message.get("droppable")),
                            sequenced=not targeted, state_version=message.get("stateVersion"))

    def deliver_local(self, event: str, payload: Any, audience: dict, *, droppable: bool) -> None:
        """An event only this process's connections need (tick, shutdown)."""
        self.deliver({"type": "gateway.event", "event": event, "payload": payload, "audience": audience,
                      "droppable": droppable})
