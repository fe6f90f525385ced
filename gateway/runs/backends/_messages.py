"""Turning the gateway's transcript messages into the plain role/text turns a model API takes."""

from __future__ import annotations

from typing import Any

from .base import RunRequest


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content
                       if isinstance(part, dict) and part.get("type") in ("text", None) and
                       isinstance(part.get("text"), str))
    return ""


def system_prompt(request: RunRequest) -> str:
    return "\n\n".join(p for p in (request.system_prompt, request.extra_system_prompt) if p and p.strip())


def turns(request: RunRequest) -> list[tuple[str, str]]:
    """(role, text) for the history (user and assistant messages with text) and this run's prompt.
    Other entries (tool results, system notes) are not part of the conversation a model sees."""
    out: list[tuple[str, str]] = []
    for message in request.history:
        role, text = message.get("role"), message_text(message)
        if role in ("user", "assistant") and text:
            out.append((role, text))
    out.append(("user", request.prompt_text))
    return out
