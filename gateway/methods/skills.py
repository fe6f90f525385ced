"""skills.status|install|update (operations.md §7): thin handlers over gateway.skills. skills.bins
(node role) lives with the node methods."""

from __future__ import annotations

from typing import Annotated, Any

from asgiref.sync import sync_to_async
from pydantic import Field, StringConstraints

from gateway.protocol.context import CallContext
from gateway.protocol.errors import invalid, not_found
from gateway.protocol.registry import ADMIN, READ, Params, method
from gateway.skills import queries, services

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class SkillsStatusParams(Params):
    agent_id: str | None = None


class SkillsInstallParams(Params):
    name: NonEmpty | None = None
    install_id: NonEmpty | None = None
    path: NonEmpty | None = None  # a local skill directory (this gateway's extension)
    timeout_ms: Annotated[int, Field(ge=1000)] | None = None


class SkillsUpdateParams(Params):
    skill_key: NonEmpty
    enabled: bool | None = None
    api_key: str | None = None
    env: dict[str, str] | None = None


def _actor(ctx: CallContext) -> str:
    return f"rpc:{ctx.conn.client.get('id')}:{ctx.conn.conn_id[:8]}"


@method("skills.status", scope=READ, params=SkillsStatusParams)
async def skills_status(ctx: CallContext, params: SkillsStatusParams) -> dict[str, Any]:
    if params.agent_id is not None and not queries.agent_known(params.agent_id):
        raise not_found(f'unknown agent id "{params.agent_id}"')
    return await sync_to_async(queries.status)()


@method("skills.install", scope=ADMIN, params=SkillsInstallParams)
async def skills_install(ctx: CallContext, params: SkillsInstallParams) -> dict[str, Any]:
    if params.path:
        return await sync_to_async(services.install_from_path)(params.path, params.name)
    if params.name and params.install_id:
        return await sync_to_async(services.run_installer)(params.name, params.install_id)
    raise invalid("invalid skills.install params: path (a local skill directory) or name and installId required")


@method("skills.update", scope=ADMIN, params=SkillsUpdateParams)
async def skills_update(ctx: CallContext, params: SkillsUpdateParams) -> dict[str, Any]:
    return await sync_to_async(services.update_entry)(params.skill_key, params.enabled, params.api_key, params.env,
                                                      _actor(ctx))
