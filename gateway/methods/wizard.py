"""wizard.start|next|cancel|status (operations.md §12): onboarding over RPC, one wizard at a
time, answered from any gateway process."""

from __future__ import annotations

from typing import Any, Literal

from asgiref.sync import sync_to_async
from pydantic import Field

from gateway.protocol.context import CallContext
from gateway.protocol.registry import ADMIN, Params, method
from gateway.providers import catalog
from gateway.wizard import services


def _actor(ctx: CallContext) -> str:
    client = ctx.conn.client
    return f"rpc:{client.get('displayName') or client.get('id')}:{ctx.conn.conn_id[:8]}"


async def _models() -> list[dict[str, Any]]:
    return await catalog.list_models()


class StartParams(Params):
    mode: Literal["local", "remote"] | None = None
    workspace: str | None = None


class Answer(Params):
    step_id: str = Field(min_length=1)
    value: Any = None


class NextParams(Params):
    session_id: str
    answer: Answer | None = None


class SessionParams(Params):
    session_id: str


@method("wizard.start", scope=ADMIN, params=StartParams)
async def start(ctx: CallContext, params: StartParams) -> dict[str, Any]:
    return await sync_to_async(services.start)(params.mode, params.workspace, await _models(), _actor(ctx))


@method("wizard.next", scope=ADMIN, params=NextParams)
async def next_(ctx: CallContext, params: NextParams) -> dict[str, Any]:
    answer = None if params.answer is None else {"stepId": params.answer.step_id, "value": params.answer.value}
    return await sync_to_async(services.next_step)(params.session_id, answer, await _models())


@method("wizard.cancel", scope=ADMIN, params=SessionParams)
async def cancel(ctx: CallContext, params: SessionParams) -> dict[str, Any]:
    return await sync_to_async(services.cancel)(params.session_id)


@method("wizard.status", scope=ADMIN, params=SessionParams)
async def status(ctx: CallContext, params: SessionParams) -> dict[str, Any]:
    return await sync_to_async(services.status)(params.session_id)
