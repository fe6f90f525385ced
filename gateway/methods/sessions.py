"""Session methods available before the chat machinery lands: listing."""

from __future__ import annotations

from typing import Annotated, Any

from asgiref.sync import sync_to_async
from pydantic import Field

from gateway.models import Session
from gateway.protocol.context import CallContext
from gateway.protocol.events import now_ms
from gateway.protocol.registry import READ, Params, method


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


def session_row(s: Session, now: int) -> dict[str, Any]:
    return {"key": s.key, "sessionId": str(s.session_id), "agentId": s.agent_id, "label": s.label,
            "model": s.model or None, "updatedAt": s.updated_at_ms, "age": now - s.updated_at_ms,
            "inputTokens": s.input_tokens, "outputTokens": s.output_tokens,
            "totalTokens": s.input_tokens + s.output_tokens, "kind": "direct"}


def list_sessions(params: SessionsListParams) -> dict[str, Any]:
    now = now_ms()
    rows = Session.objects.exclude(key__regex=r":cron:[^:]+:run:").order_by("-updated_at_ms")
    if not params.include_global:
        rows = rows.exclude(key="global")
    if not params.include_unknown:
        rows = rows.exclude(key="unknown")
    if params.agent_id:
        rows = rows.filter(agent_id=params.agent_id.strip().lower())
    if params.label:
        rows = rows.filter(label=params.label)
    if params.search:
        rows = rows.filter(key__icontains=params.search) | rows.filter(label__icontains=params.search)
    if params.active_minutes:
        rows = rows.filter(updated_at_ms__gte=now - params.active_minutes * 60_000)
    if params.limit:
        rows = rows[: params.limit]
    sessions = [session_row(s, now) for s in rows]
    return {"ts": now, "path": "db", "count": len(sessions),
            "defaults": {"modelProvider": None, "model": None, "contextTokens": None}, "sessions": sessions}


@method("sessions.list", scope=READ, params=SessionsListParams)
async def sessions_list(ctx: CallContext, params: SessionsListParams) -> dict[str, Any]:
    return await sync_to_async(list_sessions)(params)
