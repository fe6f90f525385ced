"""agent.wait before the run machinery lands: no run is known yet, so a wait ends in
`timeout` once timeoutMs has passed (chat-sessions-cron.md §3.2: unknown run -> timeout)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from gateway.protocol.context import CallContext
from gateway.protocol.registry import WRITE, Params, method


class AgentWaitParams(Params):
    run_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    timeout_ms: Annotated[int, Field(ge=0)] = 30_000


@method("agent.wait", scope=WRITE, params=AgentWaitParams)
async def agent_wait(ctx: CallContext, params: AgentWaitParams) -> dict[str, Any]:
    await asyncio.sleep(params.timeout_ms / 1000)
    return {"runId": params.run_id, "status": "timeout"}
