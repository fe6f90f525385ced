"""Cron methods. Until the scheduler lands (its own issue) status says, truthfully, that the
scheduler is not running and no job is stored."""

from __future__ import annotations

from typing import Any

from gateway.protocol.context import CallContext
from gateway.protocol.registry import READ, Params, method


@method("cron.status", scope=READ)
async def cron_status(ctx: CallContext, params: Params) -> dict[str, Any]:
    return {"enabled": False, "storePath": "db", "jobs": 0, "nextWakeAtMs": None}
