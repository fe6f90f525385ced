"""agents.list|create|update|delete and agents.files.list|get|set (chat-sessions-cron.md §6)."""

from __future__ import annotations

from typing import Annotated, Any

from asgiref.sync import sync_to_async
from pydantic import StringConstraints

from gateway.agents import queries, services
from gateway.protocol.context import CallContext
from gateway.protocol.registry import ADMIN, READ, NoParams, Params, method


# Bounds keep a listing small and a row sane; nothing legitimate comes near them.
Name = Annotated[str, StringConstraints(max_length=200)]
Workspace = Annotated[str, StringConstraints(max_length=4096)]
Short = Annotated[str, StringConstraints(max_length=2048)]


class CreateParams(Params):
    name: Name
    workspace: Workspace
    emoji: Short | None = None
    avatar: Short | None = None
    model: Short | None = None


class UpdateParams(Params):
    agent_id: str
    name: Name | None = None
    workspace: Workspace | None = None
    model: Short | None = None
    avatar: Short | None = None


class DeleteParams(Params):
    agent_id: str
    delete_files: bool = True


class AgentParams(Params):
    agent_id: str


class FileParams(Params):
    agent_id: str
    name: str


class FileSetParams(Params):
    agent_id: str
    name: str
    content: str


@method("agents.list", scope=READ)
async def agents_list(ctx: CallContext, params: NoParams) -> dict[str, Any]:
    return await sync_to_async(queries.list_agents)()


@method("agents.create", scope=ADMIN, params=CreateParams)
async def agents_create(ctx: CallContext, params: CreateParams) -> dict[str, Any]:
    return await sync_to_async(services.create_agent)(params.name, params.workspace, emoji=params.emoji,
                                                      avatar=params.avatar, model=params.model)


@method("agents.update", scope=ADMIN, params=UpdateParams)
async def agents_update(ctx: CallContext, params: UpdateParams) -> dict[str, Any]:
    return await sync_to_async(services.update_agent)(params.agent_id, name=params.name, workspace=params.workspace,
                                                      model=params.model, avatar=params.avatar)


@method("agents.delete", scope=ADMIN, params=DeleteParams)
async def agents_delete(ctx: CallContext, params: DeleteParams) -> dict[str, Any]:
    return await sync_to_async(services.delete_agent)(params.agent_id, delete_files=params.delete_files)


@method("agents.files.list", scope=ADMIN, params=AgentParams)
async def files_list(ctx: CallContext, params: AgentParams) -> dict[str, Any]:
    return await sync_to_async(queries.list_files)(params.agent_id)


@method("agents.files.get", scope=ADMIN, params=FileParams)
async def files_get(ctx: CallContext, params: FileParams) -> dict[str, Any]:
    return await sync_to_async(queries.get_file)(params.agent_id, params.name)


@method("agents.files.set", scope=ADMIN, params=FileSetParams)
async def files_set(ctx: CallContext, params: FileSetParams) -> dict[str, Any]:
    return await sync_to_async(services.set_file)(params.agent_id, params.name, params.content)
