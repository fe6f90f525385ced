"""The ASGI application of one gateway process, and its start-up hooks."""

from __future__ import annotations

import logging
import sys
from typing import Any

from channels.routing import ProtocolTypeRouter

from .protocol.consumer import GatewayConsumer
from .runtime import GatewayRuntime

log = logging.getLogger("gateway.asgi")


class Lifespan:
    """ASGI lifespan (uvicorn, hypercorn): start and stop the runtime."""

    def __init__(self, runtime: GatewayRuntime):
        self.runtime = runtime

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.runtime.ensure_started()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def watch_daphne(runtime: GatewayRuntime) -> None:
    """Under daphne (which has no lifespan events): start the runtime as soon as the event loop
    runs, with no client needed (README D11), and advertise the message limit daphne really
    enforces. Daphne imports the application before it builds its Server, so we hook run()."""
    if "daphne.server" not in sys.modules:
        return
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
        return original_run(server)

    run._anima_wrapped = True  # type: ignore[attr-defined]
    Server.run = run  # type: ignore[method-assign]


def build_application(runtime: GatewayRuntime, django_http: Any) -> Any:
    watch_daphne(runtime)
    return ProtocolTypeRouter({
        "http": django_http,
        "websocket": GatewayConsumer.as_asgi(runtime=runtime),
        "lifespan": Lifespan(runtime),
    })
