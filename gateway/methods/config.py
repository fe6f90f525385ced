"""config.* (operations.md §3): read the document, its schema, and write it in three forms. Every
write goes through gateway.config.services (baseHash under a row lock, live on every process);
unlike ANIMA nothing restarts and no socket is closed (README D13)."""

from __future__ import annotations

from typing import Annotated, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from pydantic import Field

from gateway.config import services
from gateway.config.schema import schema_response
from gateway.protocol.context import CallContext
from gateway.protocol.errors import GatewayError, invalid
from gateway.protocol.registry import ADMIN, READ, Params, method

NonNegative = Annotated[int, Field(ge=0)]


def actor(ctx: CallContext) -> str:
    """Who wrote the config, for the revision history."""
    client = ctx.conn.client
    return f"rpc:{client.get('displayName') or client.get('id')}:{ctx.conn.conn_id[:8]}"


def missing(method_name: str, what: str, pointer: str) -> GatewayError:
    return invalid(f"invalid {method_name} params: {what} required",
                   details={"errors": [{"path": pointer, "message": "required"}]})


def written(snapshot: services.Snapshot, changed: list[str]) -> dict[str, Any]:
    """A write's result: the stored document (redacted), its new hash, the changed paths."""
    view = services.public(snapshot)
    return {"ok": True, "path": services.PATH, "config": view["parsed"], "hash": snapshot.hash,
            "changedPaths": changed, "restartRequired": False}


class GetParams(Params):
    path: str | None = None


@method("config.get", scope=READ, params=GetParams)
async def get(ctx: CallContext, params: GetParams) -> dict[str, Any]:
    snapshot = await sync_to_async(services.load)()
    out = services.public(snapshot)
    if params.path is not None:
        out["value"] = services.value_at(snapshot, params.path) if snapshot.valid else None
    return out


@method("config.schema", scope=ADMIN)
async def schema(ctx: CallContext, params: Params) -> dict[str, Any]:
    return schema_response(settings.ANIMA_VERSION)


class SetParams(Params):
    raw: str | None = None
    path: str | None = None
    value: Any = None
    base_hash: str | None = None


@method("config.set", scope=ADMIN, params=SetParams)
async def set_(ctx: CallContext, params: SetParams) -> dict[str, Any]:
    if (params.raw is None) == (params.path is None):
        raise missing("config.set", "raw (string)", "/raw")
    if params.path is not None:
        if "value" not in params.model_fields_set:
            raise missing("config.set", "value", "/value")
        result = await sync_to_async(services.set_key)(params.path, params.value, base_hash=params.base_hash,
                                                       actor=actor(ctx))
    else:
        if not params.raw.strip():
            raise missing("config.set", "raw (non-empty string)", "/raw")
        result = await sync_to_async(services.replace)(params.raw, base_hash=params.base_hash, actor=actor(ctx),
                                                       source="config.set")
    return written(*result)


class PatchParams(Params):
    raw: str | None = None
    patch: dict[str, Any] | None = None
    base_hash: str | None = None
    session_key: str | None = None
    note: str | None = None
    restart_delay_ms: NonNegative | None = None  # accepted for ANIMA clients; nothing restarts


@method("config.patch", scope=ADMIN, params=PatchParams)
async def patch(ctx: CallContext, params: PatchParams) -> dict[str, Any]:
    if params.raw is not None:
        merge = services.parse_object(params.raw, "config.patch raw")
    elif params.patch is not None:
        merge = params.patch
    else:
        raise missing("config.patch", "raw (string)", "/raw")
    return written(*await sync_to_async(services.patch)(merge, base_hash=params.base_hash, actor=actor(ctx)))


class ApplyParams(Params):
    raw: str | None = None
    config: dict[str, Any] | None = None
    base_hash: str | None = None
    session_key: str | None = None
    note: str | None = None
    restart_delay_ms: NonNegative | None = None  # accepted for ANIMA clients; nothing restarts


@method("config.apply", scope=ADMIN, params=ApplyParams)
async def apply(ctx: CallContext, params: ApplyParams) -> dict[str, Any]:
    if params.raw is not None:
        if not params.raw.strip():
            raise missing("config.apply", "raw (non-empty string)", "/raw")
        document: str | dict[str, Any] = params.raw
    elif params.config is not None:
        document = params.config
    else:
        raise missing("config.apply", "raw (string)", "/raw")
    return written(*await sync_to_async(services.replace)(document, base_hash=params.base_hash, actor=actor(ctx),
                                                          source="config.apply"))
