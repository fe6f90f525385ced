"""chat.send / chat.history / chat.abort / chat.inject (chat-sessions-cron.md §2, README D14)."""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from typing import Annotated, Any

from asgiref.sync import sync_to_async
from pydantic import Field, StringConstraints

from gateway.chat.keys import canonical_key
from gateway.chat.transcripts import append_entry, find_session, history_messages, text_message
from gateway.models import Run
from gateway.protocol.context import CallContext
from gateway.protocol.errors import GatewayError, invalid
from gateway.protocol.events import READERS, emit, now_ms
from gateway.protocol.frames import dumps
from gateway.protocol.registry import ADMIN, READ, WRITE, Params, method
from gateway.runs import services as runs

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
STOP_WORDS = {"/stop", "stop", "esc", "abort", "wait", "exit", "interrupt"}
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_ATTACHMENT_BYTES = 5_000_000
HISTORY_MAX_BYTES = 6 * 1024 * 1024


class Attachment(Params):
    type: str | None = None
    mime_type: str | None = None
    file_name: str | None = None
    content: str | None = None


class ChatSendParams(Params):
    session_key: NonEmpty
    message: str
    idempotency_key: NonEmpty
    thinking: str | None = None
    deliver: bool | None = None
    attachments: list[Attachment] | None = None
    timeout_ms: Annotated[int, Field(ge=0)] | None = None


class ChatHistoryParams(Params):
    session_key: NonEmpty
    limit: Annotated[int, Field(ge=1, le=1000)] = 200


class ChatAbortParams(Params):
    session_key: NonEmpty
    run_id: str | None = None


class ChatInjectParams(Params):
    session_key: NonEmpty
    message: NonEmpty
    label: Annotated[str, Field(max_length=100)] | None = None


def sanitize(message: str) -> str:
    """NFC; NUL is an error; other control characters but tab, LF and CR are dropped (§2.1)."""
    if "\x00" in message:
        raise invalid("message must not contain null bytes")
    return CONTROL.sub("", unicodedata.normalize("NFC", message))


def check_attachments(attachments: list[Attachment] | None) -> int:
    """Validates every attachment; returns how many carry content."""
    kept = 0
    for i, item in enumerate(attachments or []):
        if not item.content:
            continue
        label = item.file_name or f"#{i + 1}"
        data = item.content.split(",", 1)[1] if item.content.startswith("data:") else item.content
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise invalid(f"attachment {label}: invalid base64 content") from None
        if len(raw) > MAX_ATTACHMENT_BYTES:
            raise invalid(f"attachment {label}: exceeds size limit ({len(raw)} > {MAX_ATTACHMENT_BYTES} bytes)")
        kept += 1
    return kept


def within_bytes(messages: list[dict[str, Any]], limit: int = HISTORY_MAX_BYTES) -> list[dict[str, Any]]:
    """Drop the oldest messages until the JSON fits in `limit` bytes (§2.2: 6 MiB)."""
    sizes = [len(dumps(m)) + 1 for m in messages]
    total, start = sum(sizes), 0
    while total > limit and start < len(messages):
        total -= sizes[start]
        start += 1
    return messages[start:]


def cached_reply(run: Run) -> dict[str, Any]:
    """A retry with a known idempotencyKey (§2.1 step 6; README D14)."""
    if run.status in runs.ACTIVE:
        return {"runId": run.run_id, "status": "in_flight"}
    if run.status == Run.Status.OK:
        return {"runId": run.run_id, "status": "ok"}
    summary = run.error or run.stop_reason or run.status
    raise GatewayError("UNAVAILABLE", summary, payload={"runId": run.run_id, "status": "error", "summary": summary})


@method("chat.send", scope=WRITE, params=ChatSendParams)
async def chat_send(ctx: CallContext, params: ChatSendParams) -> dict[str, Any]:
    message = sanitize(params.message)
    attached = check_attachments(params.attachments)
    if not message.strip() and not attached:
        raise invalid("message or attachment required")
    key = canonical_key(params.session_key)
    session = await sync_to_async(find_session)(key)
    if session is not None and (session.settings or {}).get("sendPolicy") == "deny":
        raise invalid("send blocked by session policy")
    if message.strip().lower() in STOP_WORDS:
        aborted = await ctx.runtime.runs.abort(key, None, "stop")
        return {"ok": True, "aborted": bool(aborted), "runIds": aborted}
    run_params: dict[str, Any] = {"thinking": params.thinking, "connId": ctx.conn.conn_id}
    if params.timeout_ms is not None:
        run_params["timeoutMs"] = params.timeout_ms or None  # 0: no timeout
    run, created = await ctx.runtime.runs.submit("chat", params.idempotency_key, key, message, run_params)
    if not created:
        return cached_reply(run)
    return {"runId": run.run_id, "status": "started"}


@method("chat.history", scope=READ, params=ChatHistoryParams)
async def chat_history(ctx: CallContext, params: ChatHistoryParams) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        session = find_session(canonical_key(params.session_key))
        out: dict[str, Any] = {"sessionKey": params.session_key, "messages": [],
                               "thinkingLevel": "off", "verboseLevel": "off"}
        if session is None:
            return out
        settings = session.settings or {}
        messages = within_bytes(history_messages(session, params.limit))
        out.update({"sessionId": str(session.session_id), "messages": messages,
                    "thinkingLevel": settings.get("thinkingLevel", "off"),
                    "verboseLevel": settings.get("verboseLevel", "off")})
        return out

    return await sync_to_async(read)()


@method("chat.abort", scope=WRITE, params=ChatAbortParams)
async def chat_abort(ctx: CallContext, params: ChatAbortParams) -> dict[str, Any]:
    key = canonical_key(params.session_key)
    if params.run_id:
        run = await sync_to_async(runs.find_run)(params.run_id, "chat")
        if run is None or run.status not in runs.ACTIVE:
            return {"ok": True, "aborted": False, "runIds": []}
        if run.session_key != key:
            raise invalid("runId does not match sessionKey")
    aborted = await ctx.runtime.runs.abort(key, params.run_id or None, "rpc")
    return {"ok": True, "aborted": bool(aborted), "runIds": aborted}


@method("chat.inject", scope=ADMIN, params=ChatInjectParams)
async def chat_inject(ctx: CallContext, params: ChatInjectParams) -> dict[str, Any]:
    key = canonical_key(params.session_key)
    text = f"[{params.label}]\n\n{params.message}" if params.label else params.message
    zero = {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 0,
            "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0}}
    message = text_message("assistant", text, stopReason="stop", usage=zero, api="openai-responses",
                           provider="anima", model="gateway-injected")
    entry = await sync_to_async(append_entry)(key, message)  # creates the transcript if needed (D14)
    await emit("chat.run.completed", {"runId": f"inject-{entry.entry_id}", "sessionKey": key, "seq": 0,
                                      "state": "final", "message": message, "ts": now_ms()}, READERS)
    return {"ok": True, "messageId": entry.entry_id}
