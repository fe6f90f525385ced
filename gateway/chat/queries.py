"""Reads of session entries and transcripts: sessions.list, sessions.preview, sessions.resolve
(chat-sessions-cron.md §1.4-1.6). Transcript pages come from the (session_id, archived_reason,
seq) index: a page of the newest entries never touches the rest of a long transcript."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from django.db.models import Q, QuerySet

from gateway.models import Session, TranscriptEntry
from gateway.protocol.errors import invalid, not_found
from gateway.protocol.events import now_ms
from gateway.queries import SESSIONS_PATH

from . import messages as msg
from .catalog import default_context_tokens, default_model_ref, split_ref
from .keys import SPECIAL, canonical_key, normalize_agent_id

log = logging.getLogger("gateway.sessions")

# Entry fields kept in Session.settings (camelCase, as on the wire); the rest are columns.
SETTING_FIELDS = (
    "thinkingLevel", "verboseLevel", "reasoningLevel", "elevatedLevel", "responseUsage", "sendPolicy",
    "groupActivation", "execHost", "execSecurity", "execAsk", "execNode", "queueMode", "queueDebounceMs",
    "queueCap", "queueDrop", "spawnDepth", "subject", "channel", "groupId", "groupChannel", "space", "chatType",
    "origin", "lastChannel", "lastTo", "lastAccountId", "lastThreadId", "deliveryContext", "skillsSnapshot",
    "systemPromptReport", "authProfileOverride", "lastHeartbeatText", "lastHeartbeatSentAt", "memoryFlushAt",
)
TITLE_CHARS = 60


# --- finding a session -------------------------------------------------------------------------------

def lookup(key: str) -> Session | None:
    """The row of a canonical key; stored keys also match case-insensitively (legacy rows)."""
    return Session.objects.filter(key=key).first() or Session.objects.filter(key__iexact=key).first()


def find(raw_key: str) -> Session | None:
    return lookup(canonical_key(raw_key))


def session_for_transcript(key: str) -> tuple[Session | None, uuid.UUID | None]:
    """A session and its transcript id. `agent:<id>:<sessionId>` also names a transcript that has
    no row any more (sessions.usage, §1.11)."""
    canonical = canonical_key(key)
    session = lookup(canonical)
    if session is not None:
        return session, session.session_id
    tail = canonical.rsplit(":", 1)[-1]
    try:
        transcript = uuid.UUID(tail)
    except ValueError:
        return None, None
    if TranscriptEntry.objects.filter(session_id=transcript).exists():
        return Session.objects.filter(session_id=transcript).first(), transcript
    return None, None


# --- entries and rows ------------------------------------------------------------------------------------

def counters_cleared(s: Session) -> bool:
    """After sessions.compact the counters are unknown (ANIMA deletes them); a run sets them again."""
    return not s.total_tokens_fresh and not (s.input_tokens or s.output_tokens or s.total_tokens)


def override_ref(s: Session) -> tuple[str, str] | None:
    """(provider, model) the user picked. model_override holds the full `provider/model`
    reference, which is what the run manager reads."""
    if not s.model_override:
        return None
    provider, model = split_ref(s.model_override)
    if not model:  # a bare model id stored by an older writer
        return (s.provider_override or default_model_ref(s.agent_id)[0]), s.model_override
    return provider, model


def effective_model(s: Session) -> tuple[str, str]:
    return override_ref(s) or default_model_ref(s.agent_id)


def entry_dict(s: Session) -> dict[str, Any]:
    """The session entry as ANIMA stores it (§1.2); absent fields are left out."""
    out: dict[str, Any] = {"sessionId": str(s.session_id), "updatedAt": s.updated_at_ms}
    for name, value in (("label", s.label), ("displayName", s.display_name), ("spawnedBy", s.spawned_by),
                        ("model", s.model), ("modelProvider", s.model_provider)):
        if value:
            out[name] = value
    ref = override_ref(s)
    if ref:
        out["providerOverride"], out["modelOverride"] = ref
    if s.context_tokens is not None:
        out["contextTokens"] = s.context_tokens
    if not counters_cleared(s):
        out.update(inputTokens=s.input_tokens, outputTokens=s.output_tokens)
        if s.total_tokens_fresh:
            out["totalTokens"] = s.total_tokens
    out["totalTokensFresh"] = s.total_tokens_fresh
    if s.compaction_count:
        out["compactionCount"] = s.compaction_count
    out["systemSent"] = s.system_sent
    out["abortedLastRun"] = s.aborted_last_run
    for name, value in (s.settings or {}).items():
        if value is not None:
            out.setdefault(name, value)
    return out


def kind_of(s: Session) -> str:
    if s.key in SPECIAL:
        return s.key
    chat_type = (s.settings or {}).get("chatType")
    if chat_type in ("group", "channel") or ":group:" in s.key or ":channel:" in s.key:
        return "group"
    return "direct"


def display_name(s: Session) -> str | None:
    """Stored displayName, then a group name from channel/subject/id, then label, then origin.label."""
    settings = s.settings or {}
    if s.display_name:
        return s.display_name
    if kind_of(s) == "group":
        channel = settings.get("channel") or settings.get("groupChannel")
        name = settings.get("subject") or settings.get("groupId") or s.key.rsplit(":", 1)[-1]
        if channel or settings.get("subject"):
            return f"{channel}:{name}" if channel else name
    if s.label:
        return s.label
    origin = settings.get("origin")
    return origin.get("label") if isinstance(origin, dict) and origin.get("label") else None


def title_from(text: str) -> str:
    text = msg.collapse(text)
    if len(text) <= TITLE_CHARS:
        return text
    cut = text[:TITLE_CHARS]
    space = cut.rfind(" ")
    if space > TITLE_CHARS * 0.6:
        cut = cut[:space]
    return cut.rstrip() + "…"


def live_messages(session_id: uuid.UUID) -> QuerySet:
    """The message entries of a transcript that are not archived (index-backed)."""
    return TranscriptEntry.objects.filter(session_id=session_id, archived_reason__isnull=True, type="message")


def derived_title(s: Session) -> str:
    settings = s.settings or {}
    if s.display_name:
        return s.display_name
    if settings.get("subject"):
        return str(settings["subject"])
    first = live_messages(s.session_id).filter(role="user").order_by("seq").values_list("message", flat=True)[:1]
    text = msg.display_text(first[0]).strip() if first else ""
    if text:
        return title_from(text)
    day = datetime.fromtimestamp(s.updated_at_ms / 1000, timezone.utc).strftime("%Y-%m-%d")
    return f"{str(s.session_id)[:8]} ({day})"


def last_message_preview(s: Session) -> str | None:
    last = (live_messages(s.session_id).filter(role__in=("user", "assistant")).order_by("-seq")
            .values_list("message", flat=True)[:1])
    if not last:
        return None
    return msg.collapse(msg.display_text(last[0])) or None


ROW_SETTINGS = ("channel", "subject", "groupChannel", "space", "chatType", "origin", "thinkingLevel", "verboseLevel",
                "reasoningLevel", "elevatedLevel", "sendPolicy", "responseUsage", "deliveryContext", "lastChannel",
                "lastTo", "lastAccountId")


def session_row(s: Session, *, derived: bool = False, last_message: bool = False) -> dict[str, Any]:
    """One sessions.list row (§1.4); the model is the effective one (override, else agent default)."""
    settings = s.settings or {}
    provider, model = effective_model(s)
    row: dict[str, Any] = {"key": s.key, "kind": kind_of(s), "agentId": s.agent_id}
    name = display_name(s)
    for field, value in (("label", s.label), ("displayName", name)):
        if value:
            row[field] = value
    if derived:
        row["derivedTitle"] = derived_title(s)
    if last_message:
        preview = last_message_preview(s)
        if preview:
            row["lastMessagePreview"] = preview
    for field in ROW_SETTINGS:
        if settings.get(field) is not None:
            row[field] = settings[field]
    row.update(updatedAt=s.updated_at_ms, sessionId=str(s.session_id), systemSent=s.system_sent,
               abortedLastRun=s.aborted_last_run)
    if not counters_cleared(s):
        row.update(inputTokens=s.input_tokens, outputTokens=s.output_tokens)
        if s.total_tokens_fresh:
            row["totalTokens"] = s.total_tokens
    row["totalTokensFresh"] = s.total_tokens_fresh
    row.update(modelProvider=provider, model=model)
    context = s.context_tokens if s.context_tokens is not None else default_context_tokens(provider, model)
    if context is not None:
        row["contextTokens"] = context
    return row


def list_defaults() -> dict[str, Any]:
    from .keys import default_agent_id

    provider, model = default_model_ref(default_agent_id())
    return {"modelProvider": provider, "model": model, "contextTokens": default_context_tokens(provider, model)}


# --- sessions.list ------------------------------------------------------------------------------------------

def listed(*, include_global: bool = False, include_unknown: bool = False, agent_id: str | None = None,
           spawned_by: str | None = None, label: str | None = None) -> QuerySet:
    """The rows sessions.list may show, newest first: never a cron run's own session (§1.4)."""
    rows = Session.objects.exclude(key__regex=r":cron:[^:]+:run:").order_by("-updated_at_ms", "-id")
    if not include_global:
        rows = rows.exclude(key="global")
    if not include_unknown:
        rows = rows.exclude(key="unknown")
    if agent_id:
        rows = rows.filter(agent_id=normalize_agent_id(agent_id), key__startswith="agent:")
    if spawned_by:
        rows = rows.filter(spawned_by=spawned_by)
    if label:
        rows = rows.filter(label=label)
    return rows


def search_filter(text: str) -> Q:
    """Case-insensitive substring of displayName, label, subject, sessionId or key."""
    needle = text.strip()
    q = (Q(key__icontains=needle) | Q(label__icontains=needle) | Q(display_name__icontains=needle)
         | Q(settings__subject__icontains=needle))
    compact = needle.replace("-", "")
    if compact and all(c in "0123456789abcdefABCDEF" for c in compact):
        q |= Q(session_id__icontains=needle)
    return q


def list_sessions(*, limit: int | None = None, active_minutes: int | None = None, include_global: bool = False,
                  include_unknown: bool = False, include_derived_titles: bool = False,
                  include_last_message: bool = False, label: str | None = None, spawned_by: str | None = None,
                  agent_id: str | None = None, search: str | None = None) -> dict[str, Any]:
    now = now_ms()
    rows = listed(include_global=include_global, include_unknown=include_unknown, agent_id=agent_id,
                  spawned_by=spawned_by, label=label)
    if search and search.strip():
        rows = rows.filter(search_filter(search))
    if active_minutes:
        rows = rows.filter(updated_at_ms__gte=now - active_minutes * 60_000)
    if limit:
        rows = rows[:limit]
    sessions = [session_row(s, derived=include_derived_titles, last_message=include_last_message) for s in rows]
    return {"ts": now, "path": SESSIONS_PATH, "count": len(sessions), "defaults": list_defaults(),
            "sessions": sessions}


# --- sessions.preview ------------------------------------------------------------------------------------

def preview_items(s: Session, limit: int, max_chars: int) -> list[dict[str, str]]:
    newest = live_messages(s.session_id).order_by("-seq").values_list("message", flat=True)[:limit]
    items = []
    for message in reversed(list(newest)):
        if not isinstance(message, dict):
            continue
        text = msg.preview_text(message)
        if text:
            items.append({"role": msg.preview_role(message), "text": msg.clip(text, max_chars)})
    return items


def preview(keys: Iterable[str], limit: int, max_chars: int) -> dict[str, Any]:
    previews = []
    for key in keys:
        try:
            session = find(key)
            if session is None:
                previews.append({"key": key, "status": "missing", "items": []})
                continue
            items = preview_items(session, limit, max_chars)
            previews.append({"key": key, "status": "ok" if items else "empty", "items": items})
        except Exception:  # one unreadable transcript must not hide the others (status "error", §1.5)
            log.exception("preview of session %r failed", key)
            previews.append({"key": key, "status": "error", "items": []})
    return {"ts": now_ms(), "previews": previews}


# --- sessions.resolve ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Selector:
    key: str | None = None
    session_id: str | None = None
    label: str | None = None
    agent_id: str | None = None
    spawned_by: str | None = None
    include_global: bool = False
    include_unknown: bool = False


def _one_key(keys: list[str], what: str, value: str) -> str:
    if not keys:
        raise not_found(f"No session found with label: {value}" if what == "label" else f"No session found: {value}")
    if len(keys) > 1:
        kind = "with label" if what == "label" else "for sessionId"
        raise invalid(f"Multiple sessions found {kind}: {value} ({', '.join(keys)})")
    return keys[0]


def resolve(sel: Selector) -> str:
    """The canonical key one selector (key, sessionId or label) names (§1.6)."""
    given = {name: value.strip() for name, value in (("key", sel.key), ("sessionId", sel.session_id),
                                                     ("label", sel.label)) if value and value.strip()}
    if len(given) > 1:
        raise invalid("Provide either key, sessionId, or label (not multiple)")
    if not given:
        raise invalid("Either key, sessionId, or label is required")
    (what, value), = given.items()
    if what == "key":
        session = find(value)
        if session is None:
            raise not_found(f"No session found: {value}")
        return session.key
    rows = listed(include_global=sel.include_global, include_unknown=sel.include_unknown, agent_id=sel.agent_id,
                  spawned_by=sel.spawned_by)
    if what == "label":
        return _one_key(list(rows.filter(label=value).values_list("key", flat=True)[:10]), "label", value)
    match = Q(key=value)
    try:
        match |= Q(session_id=uuid.UUID(value))
    except ValueError:
        pass
    return _one_key(list(rows.filter(match).values_list("key", flat=True)[:10]), "sessionId", value)
