"""sessions.* and usage.* (chat-sessions-cron.md §1.4-1.11, operations.md §6). Thin handlers:
reads are in gateway/chat/queries.py and usage.py, writes in gateway/chat/sessions.py."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from asgiref.sync import sync_to_async
from pydantic import Field, StringConstraints

from gateway.chat import queries, sessions, usage
from gateway.protocol.context import CallContext
from gateway.protocol.errors import invalid
from gateway.protocol.events import now_ms
from gateway.protocol.registry import ADMIN, READ, Params, method

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class SessionsListParams(Params):
    limit: Annotated[int, Field(ge=1)] | None = None
    active_minutes: Annotated[int, Field(ge=1)] | None = None
    include_global: bool = False
    include_unknown: bool = False
    include_derived_titles: bool = False
    include_last_message: bool = False
    label: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    spawned_by: str | None = None
    agent_id: str | None = None
    search: str | None = None


class SessionsPreviewParams(Params):
    keys: Annotated[list[str], Field(min_length=1)]
    limit: int | None = None
    max_chars: int | None = None


class SessionsResolveParams(Params):
    key: str | None = None
    session_id: str | None = None
    label: str | None = None
    agent_id: str | None = None
    spawned_by: str | None = None
    include_global: bool = False
    include_unknown: bool = False


class SessionsPatchParams(Params):
    """Every field but `key` is optional; null clears it, absent leaves it (§1.7)."""

    key: NonEmpty
    label: str | None = None
    thinking_level: str | None = None
    verbose_level: str | bool | None = None
    reasoning_level: str | None = None
    response_usage: str | None = None
    elevated_level: str | None = None
    exec_host: str | None = None
    exec_security: str | None = None
    exec_ask: str | None = None
    exec_node: str | None = None
    model: str | None = None
    spawned_by: str | None = None
    spawn_depth: int | None = None
    send_policy: str | None = None
    group_activation: str | None = None


class SessionsResetParams(Params):
    key: NonEmpty
    reason: Literal["new", "reset"] = "reset"


class SessionsDeleteParams(Params):
    key: NonEmpty
    delete_transcript: bool = True


class SessionsCompactParams(Params):
    key: NonEmpty
    max_lines: Annotated[int, Field(ge=1)] = 400


class SessionsUsageParams(Params):
    key: str | None = None
    start_date: str | None = None
    end_date: str | None = None
    limit: Annotated[int, Field(ge=1)] = 50
    include_context_weight: bool = False


class SessionsUsageTimeseriesParams(Params):
    key: str | None = None


class SessionsUsageLogsParams(Params):
    key: str | None = None
    limit: Annotated[int, Field(ge=1)] = 200


class UsageCostParams(Params):
    start_date: str | None = None
    end_date: str | None = None
    days: int | float | str | None = None  # lenient: a number or a numeric string (operations.md §6)


def clamp(value: int | None, default: int, low: int, high: int) -> int:
    return max(low, min(high, default if value is None else value))


def days_param(value: int | float | str | None) -> int | None:
    if value is None:
        return None
    try:
        return max(1, int(float(value)))
    except (ValueError, OverflowError):
        raise invalid("invalid days (use a number of days)") from None


@method("sessions.list", scope=READ, params=SessionsListParams)
async def sessions_list(ctx: CallContext, params: SessionsListParams) -> dict[str, Any]:
    return await sync_to_async(queries.list_sessions)(**params.model_dump())


@method("sessions.preview", scope=READ, params=SessionsPreviewParams)
async def sessions_preview(ctx: CallContext, params: SessionsPreviewParams) -> dict[str, Any]:
    keys = [k for k in params.keys if k.strip()][:64]
    return await sync_to_async(queries.preview)(keys, clamp(params.limit, 12, 1, 50),
                                                 clamp(params.max_chars, 240, 20, 2000))


@method("sessions.resolve", scope=ADMIN, params=SessionsResolveParams)
async def sessions_resolve(ctx: CallContext, params: SessionsResolveParams) -> dict[str, Any]:
    key = await sync_to_async(queries.resolve)(queries.Selector(**params.model_dump()))
    return {"ok": True, "key": key}


@method("sessions.patch", scope=ADMIN, params=SessionsPatchParams)
async def sessions_patch(ctx: CallContext, params: SessionsPatchParams) -> dict[str, Any]:
    changes = params.model_dump(by_alias=True, include=params.model_fields_set - {"key"})
    return await sync_to_async(sessions.patch_session)(params.key, changes)


@method("sessions.reset", scope=ADMIN, params=SessionsResetParams)
async def sessions_reset(ctx: CallContext, params: SessionsResetParams) -> dict[str, Any]:
    return await sessions.reset_session(ctx.runtime, params.key, params.reason)


@method("sessions.delete", scope=ADMIN, params=SessionsDeleteParams)
async def sessions_delete(ctx: CallContext, params: SessionsDeleteParams) -> dict[str, Any]:
    return await sessions.delete_session(ctx.runtime, params.key, params.delete_transcript)


@method("sessions.compact", scope=ADMIN, params=SessionsCompactParams)
async def sessions_compact(ctx: CallContext, params: SessionsCompactParams) -> dict[str, Any]:
    return await sync_to_async(sessions.compact_session)(params.key, params.max_lines)


@method("sessions.usage", scope=ADMIN, params=SessionsUsageParams)
async def sessions_usage(ctx: CallContext, params: SessionsUsageParams) -> dict[str, Any]:
    return await sync_to_async(usage.sessions_usage)(**params.model_dump())


@method("sessions.usage.timeseries", scope=ADMIN, params=SessionsUsageTimeseriesParams)
async def sessions_usage_timeseries(ctx: CallContext, params: SessionsUsageTimeseriesParams) -> dict[str, Any]:
    return await sync_to_async(usage.timeseries)(params.key)


@method("sessions.usage.logs", scope=ADMIN, params=SessionsUsageLogsParams)
async def sessions_usage_logs(ctx: CallContext, params: SessionsUsageLogsParams) -> dict[str, Any]:
    return await sync_to_async(usage.logs)(params.key, min(params.limit, 1000))


@method("usage.status", scope=READ)
async def usage_status(ctx: CallContext, params: Any) -> dict[str, Any]:
    """Provider quota windows. No provider quota API is wired in, so there is nothing to report
    (operations.md §6: offline with no credentials → an empty list, true rather than fake)."""
    return {"updatedAt": now_ms(), "providers": []}


@method("usage.cost", scope=READ, params=UsageCostParams)
async def usage_cost(ctx: CallContext, params: UsageCostParams) -> dict[str, Any]:
    return await sync_to_async(usage.usage_cost)(params.start_date, params.end_date, days_param(params.days))
