"""cron.* methods (chat-sessions-cron.md §5.5). Thin: each calls the service (or the scheduler's
run path) that the admin calls too (README D10)."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from gateway.protocol.context import CallContext
from gateway.protocol.registry import ADMIN, READ, Params, method

from . import queries, services
from .schemas import AddParams, JobRef, ListParams, RunParams, RunsParams, UpdateParams


def now_ms(ctx: CallContext) -> int:
    return ctx.runtime.cron.clock.now_ms()


@method("cron.list", scope=READ, params=ListParams)
async def cron_list(ctx: CallContext, params: ListParams) -> dict[str, Any]:
    return {"jobs": await sync_to_async(queries.list_jobs)(params.include_disabled)}


@method("cron.status", scope=READ)
async def cron_status(ctx: CallContext, params: Params) -> dict[str, Any]:
    return await sync_to_async(queries.status)()


@method("cron.runs", scope=READ, params=RunsParams)
async def cron_runs(ctx: CallContext, params: RunsParams) -> dict[str, Any]:
    return {"entries": await sync_to_async(queries.run_log)(params.ref, params.limit)}


@method("cron.add", scope=ADMIN, params=AddParams)
async def cron_add(ctx: CallContext, params: AddParams) -> dict[str, Any]:
    job = await sync_to_async(services.add_job)(params.raw(), now_ms(ctx))
    return queries.job_payload(job)


@method("cron.update", scope=ADMIN, params=UpdateParams)
async def cron_update(ctx: CallContext, params: UpdateParams) -> dict[str, Any]:
    job = await sync_to_async(services.update_job)(params.ref, params.patch, now_ms(ctx))
    return queries.job_payload(job)


@method("cron.remove", scope=ADMIN, params=JobRef)
async def cron_remove(ctx: CallContext, params: JobRef) -> dict[str, Any]:
    return {"ok": True, "removed": await sync_to_async(services.remove_job)(params.ref)}


@method("cron.run", scope=ADMIN, params=RunParams)
async def cron_run(ctx: CallContext, params: RunParams) -> dict[str, Any]:
    return await ctx.runtime.cron.run_now(params.ref, params.mode)
