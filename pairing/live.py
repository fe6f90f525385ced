"""Live node sessions and node.invoke across processes (auth-and-pairing.md §5.3-5.4).

A node is connected to exactly one process. Every process publishes its node sessions in its
cache slot, so any process can list them. An invoke is announced to all processes through the
channel-layer group; the one holding the node writes `node.invoke.request` to it. The pending
invoke is a cache entry `invoke:<id>` naming the node and the channel of the waiting process;
the node's result is sent straight there. Whoever deletes the entry first (result, timeout or
disconnect) settles the invoke, so it settles once, with one timeout for both sides."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.cache import cache

from gateway.protocol.errors import GatewayError, unavailable

from gateway.protocol.frames import dumps, loads

if TYPE_CHECKING:
    from gateway.protocol.connection import Connection
    from gateway.runtime import GatewayRuntime

log = logging.getLogger("pairing.live")

INVOKE = "gateway.node_invoke"
RESULT = "gateway.node_result"
LATE_RESULT_GRACE_S = 2.0


def invoke_key(invoke_id: str) -> str:
    return f"invoke:{invoke_id}"


@dataclass
class NodeSession:
    conn: Connection
    info: dict[str, Any]
    delivered: set[str] = field(default_factory=set)  # invoke ids written to this node


class NodeRegistry:
    def __init__(self, runtime: GatewayRuntime):
        self.runtime = runtime
        self.local: dict[str, NodeSession] = {}
        self.waiting: dict[str, asyncio.Future] = {}
        runtime.hub.on(INVOKE, self.on_invoke)
        runtime.hub.on(RESULT, self.on_result)

    # --- sessions ----------------------------------------------------------------------------

    def register(self, conn: Connection, info: dict[str, Any]) -> None:
        """A second connection with the same nodeId replaces the first (§5.3)."""
        self.local[info["nodeId"]] = NodeSession(conn, info)
        self.publish()

    def unregister(self, conn: Connection) -> None:
        session = self.local.get(conn.node_id or "")
        if session is None or session.conn is not conn:
            return
        del self.local[conn.node_id or ""]
        self.publish()
        for invoke_id in session.delivered:
            entry = cache.get(invoke_key(invoke_id))
            if entry and cache.delete(invoke_key(invoke_id)):
                self._answer(entry, invoke_id, {"ok": False, "error": {
                    "code": "NOT_CONNECTED", "message": f"node disconnected ({entry.get('command')})"}})

    def publish(self) -> None:
        self.runtime.slots.publish("nodes", {node_id: s.info for node_id, s in self.local.items()})

    def live(self) -> dict[str, dict[str, Any]]:
        """Every connected node on every process (ours always current)."""
        merged: dict[str, dict[str, Any]] = {}
        for slot in self.runtime.slots.gather("nodes"):
            for node_id, info in slot.items():
                if node_id not in merged or info.get("connectedAtMs", 0) > merged[node_id].get("connectedAtMs", 0):
                    merged[node_id] = info
        for node_id, session in self.local.items():
            merged[node_id] = session.info
        return merged

    # --- invoke (operator side) -----------------------------------------------------------------

    async def invoke(self, node_id: str, command: str, params: Any, timeout_ms: int,
                     idempotency_key: str | None) -> dict[str, Any]:
        """Send the command to the node and wait for its result (raises GatewayError)."""
        invoke_id = str(uuid.uuid4())
        future = asyncio.get_running_loop().create_future()
        self.waiting[invoke_id] = future
        ttl = max(1, math.ceil(timeout_ms / 1000) + 5)
        cache.set(invoke_key(invoke_id), {"nodeId": node_id, "command": command,
                                          "reply": self.runtime.hub.channel_name}, timeout=ttl)
        request = {"id": invoke_id, "nodeId": node_id, "command": command,
                   "paramsJSON": None if params is None else dumps(params), "timeoutMs": timeout_ms}
        if idempotency_key:
            request["idempotencyKey"] = idempotency_key
        try:
            await self.runtime.hub.publish({"type": INVOKE, "request": request})
            result = await asyncio.wait_for(asyncio.shield(future), timeout_ms / 1000)
        except asyncio.TimeoutError:
            if cache.delete(invoke_key(invoke_id)):
                raise GatewayError("TIMEOUT", "node invoke timed out",
                                   details={"nodeError": {"code": "TIMEOUT"}}) from None
            # A result claimed the invoke just before the timer fired: it is on its way, and the
            # node has been told it was accepted, so wait for it rather than report a timeout.
            try:
                result = await asyncio.wait_for(asyncio.shield(future), LATE_RESULT_GRACE_S)
            except asyncio.TimeoutError:
                raise GatewayError("TIMEOUT", "node invoke timed out",
                                   details={"nodeError": {"code": "TIMEOUT"}}) from None
        finally:
            self.waiting.pop(invoke_id, None)
        return self._outcome(node_id, command, result)

    @staticmethod
    def _outcome(node_id: str, command: str, result: dict[str, Any]) -> dict[str, Any]:
        if not result.get("ok"):
            error = result.get("error") if isinstance(result.get("error"), dict) else None
            message = (error or {}).get("message") or "node invoke failed"
            raise unavailable(str(message), details={"nodeError": error, "code": (error or {}).get("code")})
        payload_json = result.get("payloadJSON")
        payload = result.get("payload")
        if isinstance(payload_json, str):
            try:
                payload = loads(payload_json)
            except ValueError:
                payload = {"payloadJSON": payload_json}
        return {"ok": True, "nodeId": node_id, "command": command, "payload": payload,
                "payloadJSON": payload_json if isinstance(payload_json, str) else None}

    def on_result(self, message: dict) -> None:
        future = self.waiting.get(message.get("id", ""))
        if future is not None and not future.done():
            future.set_result(message.get("result") or {})

    # --- invoke (node side) -----------------------------------------------------------------------

    def on_invoke(self, message: dict) -> None:
        request = message.get("request") or {}
        session = self.local.get(request.get("nodeId", ""))
        if session is None:
            return
        session.delivered.add(request["id"])
        session.conn.push_event("node.invoke.request", dumps(request), droppable=False, sequenced=False)

    async def accept_result(self, conn: Connection, invoke_id: str, node_id: str,
                            result: dict[str, Any]) -> dict[str, Any]:
        """node.invoke.result from `conn`: forward it to the waiting process, once."""
        if node_id != conn.node_id:
            raise GatewayError("FORBIDDEN", "nodeId mismatch", details={"nodeId": node_id})
        session = self.local.get(node_id)
        if session is not None:
            session.delivered.discard(invoke_id)
        entry = cache.get(invoke_key(invoke_id))
        if not entry or entry.get("nodeId") != node_id or not cache.delete(invoke_key(invoke_id)):
            return {"ok": True, "ignored": True}
        self._answer(entry, invoke_id, result)
        return {"ok": True}

    def _answer(self, entry: dict[str, Any], invoke_id: str, result: dict[str, Any]) -> None:
        message = {"type": RESULT, "id": invoke_id, "result": result}
        if entry.get("reply") == self.runtime.hub.channel_name:
            self.on_result(message)
        else:
            asyncio.get_running_loop().create_task(self.runtime.hub.send_to(entry["reply"], message))



