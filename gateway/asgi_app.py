"""The ASGI application of one gateway process, and its start-up hooks."""

from __future__ import annotations

from typing import Any

from channels.routing import ProtocolTypeRouter

from .daphne_compat import adapt_daphne
from .protocol.consumer import GatewayConsumer
from .runtime import GatewayRuntime

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


def build_application(runtime: GatewayRuntime, django_http: Any) -> Any:
    adapt_daphne(runtime)
    return ProtocolTypeRouter({
        "http": django_http,
        "websocket": GatewayConsumer.as_asgi(runtime=runtime),
        "lifespan": Lifespan(runtime),
    })
