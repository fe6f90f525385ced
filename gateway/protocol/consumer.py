"""The WebSocket consumer: frames in, frames out. It runs the handshake, then hands every
request to the dispatcher as its own task, so a slow handler never blocks a fast one or event
delivery (protocol.md §1.7). Channels' AsyncConsumer dispatch loop is replaced on purpose: it
would open a per-socket channel and close old DB connections (a thread hop) on every frame."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from asgiref.sync import sync_to_async
from channels.consumer import AsyncConsumer
from django.conf import settings

from gateway.config import config_value
from gateway.runtime import GatewayRuntime

from .connection import Connection
from .context import CallContext
from .dialects import DIALECTS, Dialect
from .dispatcher import dispatch
from .errors import INTERNAL_MESSAGE, GatewayError
from .frames import as_request, dumps, echo_id, frame_problem, loads
from .events import now_ms
from .handshake import HandshakeRefused, authenticate, parse_connect
from .netaddr import header, resolve_client

log = logging.getLogger("gateway.consumer")


def dialect_for_path(path: str) -> Dialect:
    if path.rstrip("/").endswith("/v3") or path == "/v3":
        return DIALECTS["v3"]
    return DIALECTS.get(settings.ANIMA_GATEWAY_ROOT_DIALECT, DIALECTS["seed"])


class GatewayConsumer(AsyncConsumer):
    runtime: GatewayRuntime

    def __init__(self, runtime: GatewayRuntime):
        self.runtime = runtime
        self.conn: Connection | None = None
        self.tasks: set[asyncio.Task] = set()
        self.timer: asyncio.TimerHandle | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        self.scope = scope
        await self.runtime.ensure_started()
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.connect":
                    await self.accept(send)
                elif kind == "websocket.receive":
                    await self.on_frame(message.get("text") if message.get("text") is not None
                                        else message.get("bytes"))
                elif kind == "websocket.disconnect":
                    break
        except asyncio.CancelledError:
            # Daphne cancels every application when the server stops: say goodbye (§2.11).
            if self.conn is not None and not self.conn.closing:
                self.runtime.stopping = True
                self.conn.goodbye("ANIMA Gateway stopping")
                await self.conn.drain()
            raise
        finally:
            await self.cleanup()

    # --- lifecycle ---------------------------------------------------------------------------

    async def accept(self, send: Any) -> None:
        await send({"type": "websocket.accept"})
        path = self.scope.get("path", "/")
        self.conn = conn = Connection(send, dialect_for_path(path), self.runtime.policy.max_buffered)
        self.runtime.hub.sockets[conn.conn_id] = conn
        challenge = dumps({"nonce": conn.nonce, "ts": int(time.time() * 1000)})
        conn.push_text(conn.dialect.event_frame("connect.challenge", challenge))
        self.timer = asyncio.get_running_loop().call_later(
            self.runtime.policy.handshake_timeout_ms / 1000, self.handshake_timed_out)

    def handshake_timed_out(self) -> None:
        if self.conn and not self.conn.authed:
            self.conn.close_soon(1008, "handshake timeout")

    async def cleanup(self) -> None:
        if self.timer:
            self.timer.cancel()
        for task in list(self.tasks):
            task.cancel()
        conn = self.conn
        if conn is None:
            return
        self.runtime.hub.remove(conn)
        self.runtime.hub.sockets.pop(conn.conn_id, None)
        if conn.role == "node":
            self.runtime.nodes.unregister(conn)
        conn.closing = True
        if conn.authed and conn.presence_key and not self.runtime.stopping:
            self.runtime.presence.upsert(conn.presence_key, {"reason": "disconnect"})
            try:
                await self.runtime.presence_changed()
            except Exception:
                log.exception("presence broadcast after disconnect failed")
        conn.stop_writer()

    # --- inbound -----------------------------------------------------------------------------

    async def on_frame(self, data: str | bytes | None) -> None:
        conn = self.conn
        if conn is None or conn.closing:
            return
        size = len(data) if isinstance(data, bytes) else len((data or "").encode())
        if size > self.runtime.policy.max_payload:
            conn.close_soon(1009, "frame too large")
            return
        try:
            frame = loads(data or b"")
        except Exception:
            frame = _INVALID
        if not conn.authed:
            await self.on_handshake_frame(frame)
            return
        if frame is _INVALID:
            self.reply_error("invalid", GatewayError("INVALID_REQUEST", "invalid request frame: invalid JSON"))
            return
        problem = frame_problem(frame)
        if problem:
            self.reply_error(echo_id(frame), GatewayError("INVALID_REQUEST", f"invalid request frame: {problem}"))
            return
        request = as_request(frame)
        if request.method == "connect":
            self.reply_error(request.id, GatewayError("INVALID_REQUEST", "connect is only valid as the first request"))
            return
        task = asyncio.get_running_loop().create_task(self.run_request(request.id, request.method, request.params))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run_request(self, rid: str, method: str, params: Any) -> None:
        conn = self.conn
        assert conn is not None
        ctx = CallContext(conn=conn, runtime=self.runtime, request_id=rid)
        try:
            payload = await dispatch(ctx, method, params)
        except GatewayError as err:
            self.reply_error(rid, err)
            return
        except asyncio.CancelledError:
            raise
        except Exception:  # dispatch maps handler errors; this guards the encoder itself
            log.exception("request %s (%s) failed", rid, method)
            self.reply_error(rid, GatewayError("INTERNAL", INTERNAL_MESSAGE))
            return
        try:
            frame = conn.dialect.ok_frame(rid, payload)
        except TypeError:
            log.exception("method %s returned a payload that is not JSON", method)
            self.reply_error(rid, GatewayError("INTERNAL", INTERNAL_MESSAGE))
            return
        if len(frame) > self.runtime.policy.max_buffered:
            # larger than the whole outbound budget: it could never be delivered in one piece
            log.warning("response to %s is %d bytes; answered 413 instead", method, len(frame))
            self.reply_error(rid, GatewayError(
                "PAYLOAD_TOO_LARGE", f"response too large ({len(frame)} bytes > {self.runtime.policy.max_buffered}); "
                "ask for less (e.g. a smaller limit)", details={"bytes": len(frame)}))
            return
        conn.push_text(frame)

    def reply_error(self, rid: str, err: GatewayError) -> None:
        assert self.conn is not None
        self.conn.push_text(self.conn.dialect.error_frame(rid, err, err.payload))

    # --- handshake ---------------------------------------------------------------------------

    async def on_handshake_frame(self, frame: Any) -> None:
        conn = self.conn
        assert conn is not None
        if frame is _INVALID:
            conn.close_soon(1008, "invalid handshake")
            return
        if frame_problem(frame):
            conn.close_soon(1008, "invalid request frame")
            return
        request = as_request(frame)
        if request.method != "connect":
            self.refuse(request.id, HandshakeRefused(GatewayError(
                "INVALID_REQUEST", "invalid handshake: first request must be connect")))
            return
        address = resolve_client(self.scope, config_value("gateway.trustedProxies", []) or [])
        try:
            params = parse_connect(request.params)
            admitted = await authenticate(params, dialect=conn.dialect.name, nonce=conn.nonce, address=address,
                                          limiter=self.runtime.limiter, origin=header(self.scope, "origin"),
                                          host=header(self.scope, "host"))
        except HandshakeRefused as refused:
            client = request.params.get("client") if isinstance(request.params, dict) else None
            client_id = client.get("id") if isinstance(client, dict) else None
            # An operator reads these in logs.tail to see who is knocking and why they are refused.
            log.warning("connect refused: %s %s (client %r from %s)", refused.error.reason, refused.error.message,
                        client_id, address.ip)
            self.refuse(request.id, refused)
            return
        except Exception:
            log.exception("connect failed")
            self.refuse(request.id, HandshakeRefused(GatewayError("INTERNAL", INTERNAL_MESSAGE)))
            return
        if conn.closing:  # timed out while we were checking
            return
        conn.role = admitted.role
        conn.scopes = frozenset(admitted.scopes)
        conn.client = admitted.client
        conn.device_id = admitted.device_id
        conn.caps = admitted.caps
        conn.auth_method = admitted.auth_method
        if admitted.role == "node":
            conn.node_id = admitted.device_id or admitted.client["id"]
        tracked = admitted.client["mode"] != "cli"
        if tracked:
            conn.presence_key = admitted.device_id or admitted.client.get("instanceId") or conn.conn_id
            self.runtime.presence.upsert(conn.presence_key, self.presence_fields(admitted, address.reported_ip))
            self.runtime.versions.bump("presence")
        hello = self.hello_ok(admitted)
        if self.timer:
            self.timer.cancel()
        conn.push_text(conn.dialect.ok_frame(request.id, hello))
        conn.authed = True
        self.runtime.hub.add(conn)  # after hello-ok is queued: no event can overtake it
        if admitted.role == "node":
            await self.register_node(admitted, address.reported_ip)
        if tracked:
            await self.runtime.presence_changed()

    async def register_node(self, admitted: Any, remote_ip: str | None) -> None:
        from pairing.services import record_node_connect

        conn = self.conn
        assert conn is not None and conn.node_id
        client = admitted.client
        info = {"nodeId": conn.node_id, "connId": conn.conn_id, "displayName": client.get("displayName"),
                "platform": client.get("platform"), "version": client.get("version"),
                "deviceFamily": client.get("deviceFamily"), "modelIdentifier": client.get("modelIdentifier"),
                "remoteIp": remote_ip, "caps": admitted.caps, "commands": admitted.commands,
                "permissions": admitted.permissions, "pathEnv": admitted.path_env, "connectedAtMs": now_ms()}
        self.runtime.nodes.register(conn, info)
        await sync_to_async(record_node_connect)(info)
        await self.send_voicewake_snapshot(conn)

    @staticmethod
    async def send_voicewake_snapshot(conn: Any) -> None:
        """A node learns the current wake words right after hello-ok (protocol.md §2, step 4)."""
        from gateway.speech.services import wake_triggers

        triggers = await sync_to_async(wake_triggers)()
        conn.push_event("voicewake.changed", dumps({"triggers": triggers}), droppable=True, sequenced=False)

    def refuse(self, rid: str, refused: HandshakeRefused) -> None:
        assert self.conn is not None
        self.reply_error(rid, refused.error)
        self.conn.close_soon(refused.close_code, refused.close_reason)

    def presence_fields(self, admitted: Any, reported_ip: str | None) -> dict[str, Any]:
        client = admitted.client
        host = client.get("displayName") or client["id"]
        return {"host": host, "ip": reported_ip, "version": client.get("version"), "platform": client.get("platform"),
                "deviceFamily": client.get("deviceFamily"), "modelIdentifier": client.get("modelIdentifier"),
                "mode": client["mode"], "deviceId": admitted.device_id, "roles": [admitted.role],
                "scopes": admitted.scopes, "instanceId": admitted.device_id or client.get("instanceId"),
                "reason": "connect", "text": f"Node: {host} · mode {client['mode']}"}

    def hello_ok(self, admitted: Any) -> dict[str, Any]:
        from gateway.protocol.handshake import auth_mode
        from gateway.protocol.registry import REGISTRY
        from gateway.queries import DEFAULT_AGENT_ID, MAIN_KEY

        conn = self.conn
        assert conn is not None
        runtime = self.runtime
        hello: dict[str, Any] = {
            "type": "hello-ok",
            "protocol": admitted.protocol,
            "server": {"version": settings.ANIMA_VERSION, "host": runtime.presence.host, "connId": conn.conn_id},
            "features": {"methods": sorted(REGISTRY), "events": list(conn.dialect.events)},
            "snapshot": {
                "presence": runtime.presence.listing(),
                "health": runtime.health.cached() or {},
                "stateVersion": runtime.versions.current(),
                "uptimeMs": runtime.uptime_ms,
                "stateDir": "db:default",
                "sessionDefaults": {"defaultAgentId": DEFAULT_AGENT_ID, "mainKey": MAIN_KEY,
                                    "mainSessionKey": f"agent:{DEFAULT_AGENT_ID}:{MAIN_KEY}", "scope": "per-sender"},
                "authMode": auth_mode(),
            },
            "policy": runtime.policy.as_hello(),
        }
        if admitted.hello_auth is not None:
            hello["auth"] = admitted.hello_auth
        return hello


_INVALID = object()
