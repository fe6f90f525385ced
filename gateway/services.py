"""Writes shared by several method groups."""

from __future__ import annotations

from .models import SystemEvent
from .protocol.events import now_ms
from .queries import MAIN_SESSION_KEY

SYSTEM_EVENTS_SHOWN = 20


def enqueue_system_event(text: str, session_key: str = MAIN_SESSION_KEY) -> SystemEvent:
    return SystemEvent.objects.create(session_key=session_key, text=text, created_at_ms=now_ms())
