"""send / poll / channels.logout (operations.md §5, §8). Validation first (400s are never
cached), then an idempotency claim in the Django cache shared by every process: the first caller
delivers, a concurrent duplicate waits for its result, a repeat within 5 minutes gets the same
answer (delivery failures, 503, included)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import transaction

from gateway.chat.keys import canonical_key
from gateway.chat.transcripts import append_entry, text_message
from gateway.models import ChannelAccount, OutboundMessage
from gateway.protocol.errors import GatewayError, invalid, unavailable
from gateway.protocol.events import now_ms

from .adapters import DEFAULT_ACCOUNT, ChannelAdapter, Delivered, DeliveryFailed, Outgoing, adapter_for, normalize

IDEMPOTENCY_TTL_S = 300
CLAIM_TTL_S = 300          # outlives the slowest webhook delivery (255 s with every bound at its maximum)
WAIT_STEP_S = 0.05


@dataclass(frozen=True)
class MessageRequest:
    to: str
    text: str
    media_urls: list[str]
    channel: str | None
    account_id: str | None
    session_key: str | None
    idempotency_key: str


@dataclass(frozen=True)
class PollRequest:
    to: str
    question: str
    options: list[str]
    max_selections: int | None
    duration_seconds: int | None
    duration_hours: int | None
    silent: bool | None
    is_anonymous: bool | None
    thread_id: str | None
    channel: str | None
    account_id: str | None
    idempotency_key: str


# --- send ---------------------------------------------------------------------------------------------

def _resolve(channel_input: str | None) -> tuple[str, ChannelAdapter]:
    channel = normalize(channel_input)
    try:
        return channel, adapter_for(channel)
    except GatewayError as exc:
        if exc.reason == "INVALID_REQUEST":  # name the channel as the caller wrote it
            raise invalid(f"unsupported channel: {(channel_input or '').strip() or channel}",
                          details=exc.details) from None
        raise


def _target(to: str) -> str:
    target = to.strip()
    if not target:
        raise invalid("invalid send params: to is required")
    return target


async def send(req: MessageRequest) -> dict[str, Any]:
    text = req.text.strip()
    media = [u.strip() for u in req.media_urls if u.strip()]
    if not text and not media:
        raise invalid("invalid send params: text or media is required")
    channel, adapter = _resolve(req.channel)
    to = _target(req.to)
    account = (req.account_id or "").strip() or DEFAULT_ACCOUNT
    session_key = canonical_key(req.session_key) if (req.session_key or "").strip() else ""
    _usable(adapter, account)

    async def deliver() -> dict[str, Any]:
        out = Outgoing("message", to, account, str(uuid.uuid4()), req.idempotency_key, text=text, media_urls=media)
        delivered = await _deliver(adapter, out, session_key=session_key)
        return {"runId": req.idempotency_key, "messageId": out.message_id, "channel": channel, **delivered.fields}

    return await once(f"send:{req.idempotency_key}", deliver)


# --- poll ----------------------------------------------------------------------------------------------

async def poll(req: PollRequest) -> dict[str, Any]:
    telegram = normalize(req.channel) == "telegram"  # checked first: these are 400 even for absent channels
    if req.duration_seconds is not None and not telegram:
        raise invalid("durationSeconds is only supported for Telegram polls")
    if req.is_anonymous is not None and not telegram:
        raise invalid("isAnonymous is only supported for Telegram polls")
    if req.duration_seconds is not None and req.duration_hours is not None:
        raise invalid("durationSeconds and durationHours are mutually exclusive")
    channel, adapter = _resolve(req.channel)
    if not adapter.supports_polls:
        raise invalid(f"unsupported poll channel: {channel}")
    question = req.question.strip()
    if not question:
        raise invalid("invalid poll params: question is required")
    options = [o.strip() for o in req.options if o.strip()]
    if len(options) < 2:
        raise invalid("poll requires at least 2 options")
    if len(options) > adapter.poll_max_options:
        raise invalid(f"poll supports at most {adapter.poll_max_options} options")
    max_selections = req.max_selections or 1
    if max_selections > len(options):
        raise invalid(f"maxSelections cannot exceed the number of options ({len(options)})")
    to = _target(req.to)
    account = (req.account_id or "").strip() or DEFAULT_ACCOUNT
    spec: dict[str, Any] = {"question": question, "options": options, "maxSelections": max_selections}
    for key, value in (("durationHours", req.duration_hours), ("silent", req.silent), ("threadId", req.thread_id)):
        if value is not None:
            spec[key] = value
    _usable(adapter, account)

    async def deliver() -> dict[str, Any]:
        out = Outgoing("poll", to, account, str(uuid.uuid4()), req.idempotency_key, text=question, poll=spec)
        delivered = await _deliver(adapter, out, session_key="")
        return {"runId": req.idempotency_key, "messageId": out.message_id, "channel": channel, **delivered.fields}

    return await once(f"poll:{req.idempotency_key}", deliver)


# --- delivery and its record --------------------------------------------------------------------------------

def _usable(adapter: ChannelAdapter, account_id: str) -> None:
    """A channel that is not configured (or disabled) is 503 before any claim: not a delivery failure,
    so it is not replayed to a retry once the config is fixed."""
    why = adapter.why_unusable(account_id)
    if why:
        raise unavailable(why, details={"channel": adapter.id})


async def _deliver(adapter: ChannelAdapter, out: Outgoing, *, session_key: str) -> Delivered:
    try:
        delivered = await adapter.deliver(out)
    except DeliveryFailed as exc:
        await sync_to_async(record)(adapter.id, out, session_key=session_key, error=str(exc), attempts=exc.attempts)
        raise unavailable(str(exc), details={"channel": adapter.id}) from None
    await sync_to_async(record)(adapter.id, out, session_key=session_key, attempts=delivered.attempts)
    return delivered


@transaction.atomic
def record(channel: str, out: Outgoing, *, session_key: str, error: str = "", attempts: int = 1) -> OutboundMessage:
    """The outbound log row, and the account's last delivery (a delivery links a logged-out account again)."""
    at = now_ms()
    row = OutboundMessage.objects.create(
        kind=out.kind, channel=channel, account_id=out.account_id, to=out.to, text=out.text,
        media_urls=out.media_urls, poll=out.poll, message_id=out.message_id, idempotency_key=out.idempotency_key,
        session_key=session_key, status=OutboundMessage.Status.FAILED if error else OutboundMessage.Status.DELIVERED,
        error=error, attempts=attempts, created_at_ms=at)
    account, _ = ChannelAccount.objects.select_for_update().get_or_create(channel=channel, account_id=out.account_id)
    account.last_outbound_at_ms = at
    account.last_error = error
    if not error:
        account.logged_out = False
    account.save()
    if session_key and not error:
        mirror(session_key, channel, out)
    return row


def mirror(session_key: str, channel: str, out: Outgoing) -> None:
    """A delivered message becomes an assistant message of the session it was sent for (§5)."""
    text = "\n".join([out.text, *(f"MEDIA: {url}" for url in out.media_urls)]).strip()
    append_entry(session_key, text_message("assistant", text, provider="anima", model="delivery-mirror",
                                           stopReason="stop", mirror={"channel": channel, "to": out.to,
                                                                      "messageId": out.message_id}))


# --- idempotency (shared by every process through the Django cache) ------------------------------------------

async def once(key: str, produce: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run `produce` once per key for IDEMPOTENCY_TTL_S. Its result, or a 503 it raised, is replayed
    to repeats; any other failure releases the key so that a retry delivers."""
    cache_key = f"outbound:{key}"
    deadline = time.monotonic() + CLAIM_TTL_S
    while not await cache.aadd(cache_key, {"state": "pending"}, timeout=CLAIM_TTL_S):
        entry = await cache.aget(cache_key)
        if entry and entry.get("state") == "done":
            return _replay(entry)
        if time.monotonic() > deadline:
            raise unavailable("a delivery with this idempotencyKey is still in progress", retryable=True)
        await asyncio.sleep(WAIT_STEP_S)
    try:
        result = await produce()
    except GatewayError as exc:
        if exc.reason == "UNAVAILABLE":
            await cache.aset(cache_key, {"state": "done", "error": {"message": exc.message, "details": exc.details}},
                             timeout=IDEMPOTENCY_TTL_S)
        else:
            await cache.adelete(cache_key)
        raise
    except BaseException:
        await cache.adelete(cache_key)
        raise
    await cache.aset(cache_key, {"state": "done", "result": result}, timeout=IDEMPOTENCY_TTL_S)
    return result


def _replay(entry: dict[str, Any]) -> dict[str, Any]:
    if "error" in entry:
        raise unavailable(entry["error"]["message"], details=entry["error"].get("details"))
    return entry["result"]


# --- logout ----------------------------------------------------------------------------------------------------

@transaction.atomic
def logout(channel_input: str, account_id: str | None) -> dict[str, Any]:
    """channels.logout: forget the account's delivery state and mark it logged out."""
    from .adapters import ADAPTERS

    channel = normalize(channel_input)
    if channel not in ADAPTERS:
        raise invalid("invalid channels.logout channel", details={"channel": channel_input})
    account = (account_id or "").strip() or DEFAULT_ACCOUNT
    row, created = ChannelAccount.objects.select_for_update().get_or_create(channel=channel, account_id=account)
    cleared = not created and (row.last_outbound_at_ms is not None or bool(row.last_error) or not row.logged_out)
    row.logged_out = True
    row.last_outbound_at_ms = None
    row.last_error = ""
    row.last_stop_at_ms = now_ms()
    row.save()
    return {"channel": channel, "accountId": account, "cleared": cleared, "loggedOut": True}
