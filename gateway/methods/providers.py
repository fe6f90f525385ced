"""anima.providers.get / set / rotate (chat-sessions-cron.md §4.2) and models.list (§4.3)."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError

from gateway.protocol.context import CallContext
from gateway.protocol.errors import unavailable
from gateway.protocol.registry import READ, WRITE, NoParams, Params, method
from gateway.providers import catalog, services


class ProvidersSetParams(Params):
    # checked by the service, which answers the spec's exact message for any malformed list
    providers: Any = None


class ProvidersRotateParams(Params):
    auto_rotation: bool | None = None


@method("anima.providers.get", scope=READ)
async def providers_get(ctx: CallContext, params: NoParams) -> dict[str, Any]:
    return await sync_to_async(services.snapshot)()


@method("anima.providers.set", scope=WRITE, params=ProvidersSetParams)
async def providers_set(ctx: CallContext, params: ProvidersSetParams) -> dict[str, Any]:
    return await sync_to_async(services.replace)(params.providers)


@method("anima.providers.rotate", scope=WRITE, params=ProvidersRotateParams)
async def providers_rotate(ctx: CallContext, params: ProvidersRotateParams) -> dict[str, Any]:
    return await sync_to_async(services.rotate)(params.auto_rotation)


@method("models.list", scope=READ)
async def models_list(ctx: CallContext, params: NoParams) -> dict[str, Any]:
    try:
        return {"models": await catalog.list_models()}
    except (OSError, DatabaseError) as exc:  # the catalog could not be loaded (cache or database down)
        raise unavailable(f"model catalog unavailable: {exc}") from None
