"""What the gateway needs from daphne that plain daphne does not do.

1. Close codes. Autobahn's public sendClose() accepts only 1000 and 3000-4999, so daphne drops
   (with an exception) every `websocket.close` carrying 1002, 1008, 1009 or 1012, and the socket
   is left open. The protocol needs exactly those codes (protocol.md §2.12), and the close reason
   too, which daphne discards. We send the close frame through autobahn's lower-level call.
   Likewise autobahn drops the TCP connection without a close frame when a message is over the
   limit; with failByDrop off it sends 1009 as the protocol requires.
2. Start-up. Daphne has no ASGI lifespan events, so the runtime (ticks, presence, health:
   README D11) is started as soon as daphne's event loop runs, with no client needed.
3. Honest limits. The payload limit advertised in hello-ok is capped at what daphne enforces.

Applied only when daphne is the server in this process."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runtime import GatewayRuntime

log = logging.getLogger("gateway.daphne")


def _patch_close() -> None:
    from autobahn.util import encode_truncate
    from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol

    set_options = WebSocketFactory.setProtocolOptions

    def set_protocol_options(self: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("failByDrop", False)
        return set_options(self, *args, **kwargs)

    WebSocketFactory.setProtocolOptions = set_protocol_options  # type: ignore[method-assign]
    original = WebSocketProtocol.handle_reply
    if getattr(original, "_anima_wrapped", False):
        return

    def handle_reply(self: Any, message: dict) -> None:
        if message.get("type") == "websocket.close" and self.state == self.STATE_OPEN:
            reason = message.get("reason") or ""
            self.sendCloseFrame(code=int(message.get("code") or 1000),
                                reasonUtf8=encode_truncate(reason, 123) if reason else None, isReply=False)
            return
        if message.get("type") == "websocket.send":
            # Autobahn applies the inbound message limit to what we send too and raises, which
            # would stall the socket. The limit guards memory against clients; what the gateway
            # sends is bounded by the gateway itself (Connection.MAX_FRAME).
            limit, self.maxMessagePayloadSize = self.maxMessagePayloadSize, 0
            try:
                original(self, message)
            finally:
                self.maxMessagePayloadSize = limit
            return
        original(self, message)

    handle_reply._anima_wrapped = True  # type: ignore[attr-defined]
    WebSocketProtocol.handle_reply = handle_reply  # type: ignore[method-assign]


def _hook_server_start(runtime: GatewayRuntime) -> None:
    from daphne.server import Server, twisted_loop

    original_run = Server.run
    if getattr(original_run, "_anima_wrapped", False):
        return

    def run(server: Any) -> Any:
        limits = [v for v in (server.websocket_max_message_size, server.websocket_max_frame_size) if v > 0]
        if limits:
            runtime.limit_payload(min(limits))
        if 0 <= server.websocket_timeout < 365 * 86400:
            log.warning("daphne closes every WebSocket after %ss (--websocket_timeout); the gateway's clients "
                        "expect long-lived sockets: pass --websocket_timeout -1", server.websocket_timeout)
        twisted_loop.call_soon(lambda: twisted_loop.create_task(runtime.ensure_started()))
        twisted_loop.call_soon(_take_over_stop_signals, runtime, twisted_loop)
        return original_run(server)

    run._anima_wrapped = True  # type: ignore[attr-defined]
    Server.run = run  # type: ignore[method-assign]


def _take_over_stop_signals(runtime: GatewayRuntime, loop: Any) -> None:
    """SIGTERM/SIGINT: say `shutdown` and close every client with 1012 first (§2.11), then let
    Twisted stop as it would have. Daphne's own path cancels the applications, which is too late
    to write anything reliably. Runs once the reactor has installed its handlers, so ours win."""
    import signal

    from twisted.internet import reactor

    def stop() -> None:
        async def graceful() -> None:
            try:
                await asyncio.wait_for(runtime.shutdown(), 5)
            except Exception:
                log.exception("graceful shutdown failed")
            reactor.stop()

        if not runtime.stopping:
            loop.create_task(graceful())

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)


def adapt_daphne(runtime: GatewayRuntime) -> None:
    if "daphne.server" not in sys.modules:
        return
    _patch_close()
    _hook_server_start(runtime)
