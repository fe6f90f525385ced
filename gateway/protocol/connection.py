"""One client socket after accept: who it is, its outbound queue with a byte budget, and the
slow-consumer policy (protocol.md §4.6)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Awaitable, Callable

from .dialects import Dialect
from .frames import dumps

log = logging.getLogger("gateway.connection")

Send = Callable[[dict], Awaitable[None]]


def transport_buffer_probe(send: Any) -> Callable[[], int] | None:
    """Bytes the server has accepted from us but not yet written to the socket.

    ASGI hides this, and daphne's send() never waits for the client, so without it a slow client
    would make the server buffer without limit. Daphne passes `partial(server.handle_reply,
    protocol)` as `send`; the protocol's Twisted transport knows its buffer. Under other servers
    (or in-process tests) there is no probe and only our own queue is counted."""
    protocol = next(iter(getattr(send, "args", ()) or ()), None)
    transport = getattr(protocol, "transport", None)
    if transport is None or not hasattr(transport, "dataBuffer"):
        return None

    def buffered() -> int:
        try:
            return (len(transport.dataBuffer) - getattr(transport, "offset", 0)
                    + getattr(transport, "_tempDataLen", 0))
        except Exception:  # a transport without these attributes: nothing known
            return 0

    return buffered


class Connection:
    def __init__(self, send: Send, dialect: Dialect, max_buffered: int):
        self.conn_id = str(uuid.uuid4())
        self.nonce = str(uuid.uuid4())
        self.dialect = dialect
        self.max_buffered = max_buffered
        self.role = "operator"
        self.scopes: frozenset[str] = frozenset()
        self.authed = False
        self.client: dict[str, Any] = {}
        self.device_id: str | None = None
        self.node_id: str | None = None
        self.presence_key: str | None = None
        self.caps: list[str] = []
        self.auth_method = "none"
        self.seq = 0
        self.closing = False
        self._send = send
        self._queue: asyncio.Queue[dict | None] = asyncio.Queue()
        self._queued_bytes = 0
        self._probe = transport_buffer_probe(send)
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    @property
    def granting_scopes(self) -> frozenset[str] | None:
        """What this connection may grant to others: None (everything) when it proved the shared
        secret, which is owner-level trust (README D5); else its own scopes."""
        return None if self.auth_method in ("token", "password", "none") else self.scopes

    # --- outbound ---------------------------------------------------------------------------

    def pending_bytes(self) -> int:
        return self._queued_bytes + (self._probe() if self._probe else 0)

    def push_text(self, text: str) -> None:
        """Queue a frame (responses, the challenge): never dropped."""
        if self.closing:
            return
        self._queued_bytes += len(text)
        self._queue.put_nowait({"type": "websocket.send", "text": text})

    def push_event(self, canonical: str, payload_json: str, *, droppable: bool, sequenced: bool,
                   state_version: dict | None = None) -> None:
        """Deliver a broadcast or targeted event, applying the slow-consumer policy."""
        if not self.authed or self.closing:
            return
        name = self.dialect.event_name(canonical)
        if name is None:
            return
        seq = None
        if sequenced:
            self.seq += 1  # consumed even when dropped: a gap means "you missed one"
            seq = self.seq
            if self.pending_bytes() > self.max_buffered:
                if droppable:
                    return
                log.warning("closing slow consumer %s (%d bytes pending)", self.conn_id, self.pending_bytes())
                self.close_soon(1008, "slow consumer")
                return
        self.push_text(self.dialect.event_frame(name, payload_json, seq, state_version))

    def goodbye(self, reason: str) -> None:
        """The server is stopping: a `shutdown` event, then close 1012 (protocol.md §2.11)."""
        self.push_event("shutdown", dumps({"reason": reason, "restartExpectedMs": None}), droppable=False,
                        sequenced=True)
        self.close_soon(1012, "service restart")

    def close_soon(self, code: int, reason: str) -> None:
        """Close after what is already queued has been written."""
        if self.closing:
            return
        self.closing = True
        self._queue.put_nowait({"type": "websocket.close", "code": code, "reason": truncate_reason(reason)})
        self._queue.put_nowait(None)

    async def _write_loop(self) -> None:
        while True:
            message = await self._queue.get()
            if message is None:
                return
            try:
                await self._send(message)
            except Exception as exc:
                if type(exc).__name__ == "Disconnected":  # the peer is gone; receive will see it
                    return
                log.warning("send failed on %s; closing it", self.conn_id, exc_info=True)
                self.closing = True
                try:
                    await self._send({"type": "websocket.close", "code": 1011, "reason": "send failed"})
                except Exception:
                    pass
                return
            finally:
                if message.get("type") == "websocket.send":
                    self._queued_bytes -= len(message["text"])

    async def drain(self, timeout: float = 2.0) -> None:
        """Wait until the writer has sent everything queued (used before closing at shutdown)."""
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass

    def stop_writer(self) -> None:
        self._writer.cancel()


def truncate_reason(reason: str, limit: int = 120) -> str:
    """Close reasons are cut to 120 UTF-8 bytes (protocol.md §2.8)."""
    data = reason.encode()[:limit]
    return data.decode("utf-8", errors="ignore")
