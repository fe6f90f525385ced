"""Reads used by the system methods."""

from __future__ import annotations

from typing import Any

from .models import Session, SystemEvent
from .protocol.events import now_ms

DEFAULT_AGENT_ID = "main"
MAIN_KEY = "main"
MAIN_SESSION_KEY = f"agent:{DEFAULT_AGENT_ID}:{MAIN_KEY}"


# Where transcripts live under D7 (database alias and table), never a filesystem path.
SESSIONS_PATH = "db:default/sessions"


def session_overview(limit: int = 10) -> dict[str, Any]:
    now = now_ms()
    recent = [{"key": s.key, "updatedAt": s.updated_at_ms, "age": now - s.updated_at_ms}
              for s in Session.objects.order_by("-updated_at_ms")[:limit]]
    return {"count": Session.objects.count(), "recent": recent}


def session_status_rows(limit: int = 10) -> list[dict[str, Any]]:
    now = now_ms()
    rows = []
    for s in Session.objects.order_by("-updated_at_ms")[:limit]:
        total = s.input_tokens + s.output_tokens
        rows.append({"agentId": s.agent_id, "key": s.key, "kind": "direct", "sessionId": str(s.session_id),
                     "updatedAt": s.updated_at_ms, "age": now - s.updated_at_ms, "inputTokens": s.input_tokens,
                     "outputTokens": s.output_tokens, "totalTokens": total, "totalTokensFresh": True,
                     "remainingTokens": None, "percentUsed": None, "model": s.model or None,
                     "contextTokens": None, "flags": []})
    return rows


def queued_system_events(session_key: str = MAIN_SESSION_KEY, limit: int = 20) -> list[str]:
    """Texts waiting for the session's next turn, oldest first."""
    rows = SystemEvent.objects.filter(session_key=session_key, consumed_at_ms__isnull=True).order_by("-id")[:limit]
    return [e.text for e in reversed(list(rows))]
