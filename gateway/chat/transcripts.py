"""Session entries and their transcripts in the database (chat-sessions-cron.md §1.2-1.3)."""

from __future__ import annotations

import secrets
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max

from gateway.models import Session, TranscriptEntry
from gateway.protocol.events import now_ms

from .keys import agent_of


def new_entry_id() -> str:
    return secrets.token_hex(8)


def text_message(role: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"role": role, "content": [{"type": "text", "text": text}], "timestamp": now_ms(), **extra}


def message_text(message: dict[str, Any] | None) -> str:
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def find_session(key: str) -> Session | None:
    return Session.objects.filter(key=key).first()


def ensure_session(key: str) -> Session:
    """The session row for a canonical key, created on first use (two racing creators both win)."""
    session = find_session(key)
    if session is not None:
        return session
    now = now_ms()
    try:
        with transaction.atomic():
            return Session.objects.create(key=key, agent_id=agent_of(key), created_at_ms=now, updated_at_ms=now)
    except IntegrityError:
        return Session.objects.get(key=key)


@transaction.atomic
def append_entry(key: str, message: dict[str, Any] | None, *, run_id: str = "", entry_type: str = "message",
                 session: Session | None = None) -> TranscriptEntry:
    """Append at the tip of the session's current transcript. The session row lock serialises
    appends, so seq stays gap-free and ordered even with several writers."""
    session = Session.objects.select_for_update().get(pk=(session or ensure_session(key)).pk)
    tip = (TranscriptEntry.objects.filter(session_id=session.session_id)
           .aggregate(top=Max("seq"))["top"])
    parent = ""
    if tip is not None:
        parent = TranscriptEntry.objects.filter(session_id=session.session_id, seq=tip).values_list(
            "entry_id", flat=True).first() or ""
    now = now_ms()
    entry = TranscriptEntry.objects.create(
        entry_id=new_entry_id(), session_id=session.session_id, parent_id=parent, seq=(tip or 0) + 1,
        type=entry_type, role=(message or {}).get("role", ""), message=message, run_id=run_id, created_at_ms=now)
    Session.objects.filter(pk=session.pk).update(updated_at_ms=max(now, session.updated_at_ms))
    return entry


def current_entries(session: Session, limit: int) -> list[TranscriptEntry]:
    """The newest `limit` live entries of the current transcript, oldest first (index-backed)."""
    rows = (TranscriptEntry.objects.filter(session_id=session.session_id, archived_reason__isnull=True)
            .order_by("-seq")[:limit])
    return list(reversed(list(rows)))


def history_messages(session: Session, limit: int) -> list[dict[str, Any]]:
    out = []
    for entry in current_entries(session, limit):
        if entry.type == "message" and entry.message:
            out.append(entry.message)
        elif entry.type == "compaction":
            out.append({"role": "system", "content": [{"type": "text", "text": "Compaction"}],
                        "timestamp": entry.created_at_ms, "__anima": {"kind": "compaction", "id": entry.entry_id}})
    return out
