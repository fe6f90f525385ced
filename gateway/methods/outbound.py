"""send, poll, channels.status|logout and web.login.* (operations.md §5, §8): thin handlers over
gateway.outbound."""

from __future__ import annotations

from typing import Annotated, Any

from asgiref.sync import sync_to_async
from pydantic import Field, StringConstraints

from gateway.outbound import queries, services
from gateway.protocol.context import CallContext
from gateway.protocol.errors import unavailable
from gateway.protocol.registry import ADMIN, READ, WRITE, Params, method

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


MESSAGE_MAX = 100_000  # characters of one outbound message (every channel splits far below this)


class SendParams(Params):
    to: NonEmpty
    message: Annotated[str, StringConstraints(max_length=MESSAGE_MAX)] | None = None
    media_url: str | None = None
    media_urls: Annotated[list[str], Field(max_length=32)] | None = None
    gif_playback: bool | None = None
    channel: str | None = None
    account_id: str | None = None
    session_key: str | None = None
    idempotency_key: NonEmpty


class PollParams(Params):
    to: NonEmpty
    question: NonEmpty
    options: Annotated[list[str], Field(min_length=2, max_length=12)]
    max_selections: Annotated[int, Field(ge=1, le=12)] | None = None
    duration_seconds: Annotated[int, Field(ge=1, le=604_800)] | None = None
    duration_hours: Annotated[int, Field(ge=1)] | None = None
    silent: bool | None = None
    is_anonymous: bool | None = None
    thread_id: str | None = None
    channel: str | None = None
    account_id: str | None = None
    idempotency_key: NonEmpty


class ChannelsStatusParams(Params):
    probe: bool | None = None
    timeout_ms: int | None = None


class ChannelsLogoutParams(Params):
    channel: NonEmpty
    account_id: str | None = None


class WebLoginStartParams(Params):
    force: bool | None = None
    timeout_ms: int | None = None
    verbose: bool | None = None
    account_id: str | None = None


class WebLoginWaitParams(Params):
    timeout_ms: int | None = None
    account_id: str | None = None


@method("send", scope=WRITE, params=SendParams)
async def send(ctx: CallContext, params: SendParams) -> dict[str, Any]:
    media = [*([params.media_url] if params.media_url else []), *(params.media_urls or [])]
    return await services.send(services.MessageRequest(
        to=params.to, text=params.message or "", media_urls=media, channel=params.channel,
        account_id=params.account_id, session_key=params.session_key, idempotency_key=params.idempotency_key))


@method("poll", scope=WRITE, params=PollParams)
async def poll(ctx: CallContext, params: PollParams) -> dict[str, Any]:
    return await services.poll(services.PollRequest(
        to=params.to, question=params.question, options=list(params.options), max_selections=params.max_selections,
        duration_seconds=params.duration_seconds, duration_hours=params.duration_hours, silent=params.silent,
        is_anonymous=params.is_anonymous, thread_id=params.thread_id, channel=params.channel,
        account_id=params.account_id, idempotency_key=params.idempotency_key))


@method("channels.status", scope=READ, params=ChannelsStatusParams)
async def channels_status(ctx: CallContext, params: ChannelsStatusParams) -> dict[str, Any]:
    return await queries.status(bool(params.probe), max(1000, params.timeout_ms or 10_000))


@method("channels.logout", scope=ADMIN, params=ChannelsLogoutParams)
async def channels_logout(ctx: CallContext, params: ChannelsLogoutParams) -> dict[str, Any]:
    return await sync_to_async(services.logout)(params.channel, params.account_id)


# No built-in channel offers a QR login (WhatsApp Web); the methods validate and say so (README D12).
NO_WEB_LOGIN = "web login provider is not available (no channel adapter offers QR login; WhatsApp Web is not built in)"


@method("web.login.start", scope=ADMIN, params=WebLoginStartParams)
async def web_login_start(ctx: CallContext, params: WebLoginStartParams) -> dict[str, Any]:
    raise unavailable(NO_WEB_LOGIN)


@method("web.login.wait", scope=ADMIN, params=WebLoginWaitParams)
async def web_login_wait(ctx: CallContext, params: WebLoginWaitParams) -> dict[str, Any]:
    raise unavailable(NO_WEB_LOGIN)
