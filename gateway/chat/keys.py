"""Session keys (chat-sessions-cron.md §1.1): canonical form `agent:<agentId>:<rest>`.

The main key (`session.mainKey`), the scope (`session.scope = "global"`) and the default agent
(`agents.list[].default`) come from config when the caller does not name them, so every
method that canonicalises a key agrees on the result."""

from __future__ import annotations

import re
from typing import Any

from gateway.queries import DEFAULT_AGENT_ID, MAIN_KEY

AGENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$", re.IGNORECASE)
SPECIAL = ("global", "unknown")
CRON_RUN = re.compile(r":cron:[^:]+:run:")


def config_value(path: str, default: Any) -> Any:
    try:
        from gateway.config import config_value as read
    except ImportError:  # the config subsystem is optional here
        return default
    value = read(path, default)
    return default if value is None else value


def configured_main_key() -> str:
    value = config_value("session.mainKey", MAIN_KEY)
    return (value.strip().lower() if isinstance(value, str) else "") or MAIN_KEY


def global_scope() -> bool:
    return config_value("session.scope", None) == "global"


def default_agent_id() -> str:
    """The agent marked `default` in agents.list, else the first listed, else `main`."""
    entries = config_value("agents.list", None)
    if isinstance(entries, list) and entries:
        chosen = next((e for e in entries if isinstance(e, dict) and e.get("default")), entries[0])
        if isinstance(chosen, dict) and isinstance(chosen.get("id"), str):
            return normalize_agent_id(chosen["id"])
    return DEFAULT_AGENT_ID


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


def main_session_key() -> str:
    """The session that can never be deleted: the default agent's main key, or `global`."""
    return "global" if global_scope() else main_key(default_agent_id(), configured_main_key())


def canonical_key(raw: str, *, main: str | None = None, default_agent: str | None = None,
                  scope_global: bool | None = None) -> str:
    """ANIMA's resolveSessionStoreKey: apply to every key before any storage lookup."""
    key = (raw or "").strip()
    if key.lower() in SPECIAL:
        return key.lower()
    main = (main or configured_main_key()).lower()
    scope_global = global_scope() if scope_global is None else scope_global
    parsed = parse_agent_key(key)
    if parsed:
        agent_id, rest = normalize_agent_id(parsed[0]), parsed[1].lower()
        aliases = {"main", main, f"agent:{agent_id}:main", f"agent:{agent_id}:{main}"}
        if rest in aliases:
            return "global" if scope_global else main_key(agent_id, main)
        return f"agent:{agent_id}:{rest}"
    default_agent = default_agent or default_agent_id()
    if key.lower() in ("main", main):
        return "global" if scope_global else main_key(default_agent, main)
    return f"agent:{default_agent}:{key.lower()}"


def agent_of(key: str) -> str:
    parsed = parse_agent_key(key)
    return normalize_agent_id(parsed[0]) if parsed else default_agent_id()


def is_cron_run_key(key: str) -> bool:
    """`…:cron:<jobId>:run:<sessionId>`: one isolated cron run, hidden from sessions.list."""
    return bool(CRON_RUN.search(key))


def is_subagent_key(key: str) -> bool:
    return ":subagent:" in key.lower()
