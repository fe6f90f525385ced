"""anima.runtime.*, anima.mission.*, anima.memory.list, anima.registration.* (operations.md §4).
anima.providers.* live in providers.py."""

from __future__ import annotations

from typing import Annotated, Any

from asgiref.sync import sync_to_async
from pydantic import Field

from gateway import registration
from gateway.mission import importer, runtime, services
from gateway.protocol.context import CallContext
from gateway.protocol.errors import invalid
from gateway.protocol.registry import READ, WRITE, NoParams, Params, method


# --- runtime --------------------------------------------------------------------------------------------------

@method("anima.runtime.get", scope=READ)
async def runtime_get(ctx: CallContext, params: NoParams) -> dict[str, Any]:
    return await sync_to_async(runtime.runtime_view)(ctx.runtime.uptime_ms)


class WorkingModeParams(Params):
    mode: str | None = None


@method("anima.runtime.set-working-mode", scope=WRITE, params=WorkingModeParams)
async def set_working_mode(ctx: CallContext, params: WorkingModeParams) -> dict[str, Any]:
    return await sync_to_async(services.set_working_mode)(params.mode)


# --- mission ----------------------------------------------------------------------------------------------------

@method("anima.mission.get", scope=READ)
async def mission_get(ctx: CallContext, params: NoParams) -> dict[str, Any]:
    return await sync_to_async(services.mission)()


class MissionSetParams(Params):
    file_name: str | None = None
    content: str = ""


@method("anima.mission.set", scope=WRITE, params=MissionSetParams)
async def mission_set(ctx: CallContext, params: MissionSetParams) -> dict[str, Any]:
    return await sync_to_async(services.set_file)(params.file_name, params.content)


class MissionPatchParams(Params):
    patch: Any = None  # checked by the service: "patch object required"


@method("anima.mission.patch", scope=WRITE, params=MissionPatchParams)
async def mission_patch(ctx: CallContext, params: MissionPatchParams) -> dict[str, Any]:
    return await sync_to_async(services.patch_state)(params.patch)


class MissionImportParams(Params):
    source: str | None = None
    preset: str | None = None
    url: str | None = None


@method("anima.mission.import", scope=WRITE, params=MissionImportParams)
async def mission_import(ctx: CallContext, params: MissionImportParams) -> dict[str, Any]:
    if params.url is not None:
        if params.source is not None:
            raise invalid("give either source or url, not both")
        return await sync_to_async(importer.import_url)(params.url)
    return await sync_to_async(importer.import_directory)(params.source, params.preset)


class ConnectRepoParams(Params):
    url: str | None = None
    branch: str | None = None
    provider: str | None = None


@method("anima.mission.connect-repo", scope=WRITE, params=ConnectRepoParams)
async def mission_connect_repo(ctx: CallContext, params: ConnectRepoParams) -> dict[str, Any]:
    return await sync_to_async(services.connect_repo)(params.url, params.branch, params.provider)


# --- memory -----------------------------------------------------------------------------------------------------

class MemoryListParams(Params):
    kind: str | None = None
    query: str | None = None
    limit: Annotated[float, Field(allow_inf_nan=False)] | None = None


@method("anima.memory.list", scope=READ, params=MemoryListParams)
async def memory_list(ctx: CallContext, params: MemoryListParams) -> dict[str, Any]:
    return await sync_to_async(services.memory_list)(params.kind, params.query, params.limit)


# --- registration -------------------------------------------------------------------------------------------------

@method("anima.registration.status", scope=READ)
async def registration_status(ctx: CallContext, params: NoParams) -> dict[str, Any]:
    return await sync_to_async(registration.status)()


class SetTokenParams(Params):
    token: str | None = None


@method("anima.registration.set-token", scope=WRITE, params=SetTokenParams)
async def registration_set_token(ctx: CallContext, params: SetTokenParams) -> dict[str, Any]:
    return await sync_to_async(registration.set_token)(params.token)


class RegisterInviteParams(Params):
    code: str | None = None
    name: str | None = None
    display_name: str | None = None
    description: str | None = None


@method("anima.registration.register-invite", scope=WRITE, params=RegisterInviteParams)
async def registration_register_invite(ctx: CallContext, params: RegisterInviteParams) -> dict[str, Any]:
    return await sync_to_async(registration.register_invite)(params.code, params.name, params.display_name,
                                                             params.description)
