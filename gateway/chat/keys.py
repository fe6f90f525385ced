"""Session keys (chat-sessions-cron.md §1.1): canonical form `agent:<agentId>:<rest>`."""

from __future__ import annotations

import re

from gateway.queries import DEFAULT_AGENT_ID, MAIN_KEY

AGENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$", re.IGNORECASE)
SPECIAL = ("global", "unknown")


def normalize_agent_id(value: str | None) -> str:
    text = (value or "").strip()
    if AGENT_ID.match(text):
        return text.lower()
    text = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")[:64]
    return text or DEFAULT_AGENT_ID


def parse_agent_key(key: str) -> tuple[str, str] | None:
    """(agentId, rest) when `key` is an agent key, else None."""
    parts = [p for p in key.split(":") if p]
    if len(parts) >= 3 and parts[0].lower() == "agent":
        return parts[1], ":".join(parts[2:])
    return None


def main_key(agent_id: str = DEFAULT_AGENT_ID, main: str = MAIN_KEY) -> str:
    return f"agent:{agent_id}:{main}"


def canonical_key(raw: str, *, main: str = MAIN_KEY, default_agent: str = DEFAULT_AGENT_ID) -> str:
    key = (raw or "").strip()
    if key.lower() in SPECIAL:
        return key.lower()
    parsed = parse_agent_key(key)
    if parsed:
        agent_id, rest = normalize_agent_id(parsed[0]), parsed[1].lower()
        aliases = {"main", main.lower(), f"agent:{agent_id}:main", f"agent:{agent_id}:{main.lower()}"}
        return main_key(agent_id, main) if rest in aliases else f"agent:{agent_id}:{rest}"
    if key.lower() in ("main", main.lower()):
        return main_key(default_agent, main)
    return f"agent:{default_agent}:{key.lower()}"


def agent_of(key: str) -> str:
    parsed = parse_agent_key(key)
    return normalize_agent_id(parsed[0]) if parsed else DEFAULT_AGENT_ID
