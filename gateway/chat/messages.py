"""Reading transcript message JSON (chat-sessions-cron.md §1.3): text, tool calls, media, and
the envelopes channels put around user text."""

from __future__ import annotations

import re
from typing import Any

# `[WebChat 2025-01-31 12:00 UTC] hello`, `[Telegram Ann (@ann) id:1 2025-01-31T12:00Z] hi`, and the
# timestamp prefix the gateway adds for the model (`[Fri 2025-01-31 12:00 UTC] `).
ENVELOPE = re.compile(r"^\[[^\]\n]*\d{4}-\d{2}-\d{2}[^\]\n]*\]\s*")
MESSAGE_ID_HINT = re.compile(r"\n?\[message_id: [^\]\n]+\]\s*$", re.IGNORECASE)


def blocks(message: dict[str, Any] | None) -> list[dict[str, Any]]:
    content = (message or {}).get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def text_of(message: dict[str, Any] | None, sep: str = "\n") -> str:
    return sep.join(b.get("text") or "" for b in blocks(message) if b.get("type") == "text" and b.get("text"))


def tool_calls(message: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [b for b in blocks(message) if b.get("type") in ("toolCall", "tool_use", "toolUse", "functionCall")]


def strip_envelope(text: str) -> str:
    """User text as the user typed it: no channel envelope, no message-id hint."""
    return MESSAGE_ID_HINT.sub("", ENVELOPE.sub("", text, count=1))


def display_text(message: dict[str, Any] | None) -> str:
    text = text_of(message)
    return strip_envelope(text) if (message or {}).get("role") == "user" else text


def preview_role(message: dict[str, Any]) -> str:
    role = message.get("role")
    if tool_calls(message) or role in ("toolResult", "tool"):
        return "tool"
    return role if role in ("user", "assistant", "system") else "other"


def preview_text(message: dict[str, Any]) -> str:
    """Text blocks joined; only tool calls → `call a, b +N`; only media → `[image]`."""
    text = display_text(message).strip()
    if text:
        return text
    names = [str(c.get("name") or "tool") for c in tool_calls(message)]
    if names:
        more = f" +{len(names) - 2}" if len(names) > 2 else ""
        return f"call {', '.join(names[:2])}{more}"
    media = [b.get("type") for b in blocks(message) if b.get("type") not in ("text", None)]
    return f"[{media[0]}]" if media else ""


def clip(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def collapse(text: str) -> str:
    return " ".join(text.split())
