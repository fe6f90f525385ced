"""The gateway's config (operations.md §2–§3, README D13). What other modules use:

    from gateway.config import config_value, current_config
    chars = config_value("agents.defaults.echo.chunkChars", 16)

Both are synchronous, cheap (a per-process copy) and safe on the event loop thread. Values are
the effective config: the stored document with `${VAR}` references substituted, on top of the
environment values (ANIMA_GATEWAY_TOKEN, …) and runtime defaults. Secrets are NOT redacted here.

Modules: `schema` (typed document, JSON Schema, secret fields), `document` (pure operations on
documents), `defaults`, `services` (read/write the database; the one write path), `live` (the
per-process copy, refreshed on every process after a write)."""

from __future__ import annotations

import copy
from typing import Any

_MISSING = object()


def current_config() -> dict[str, Any]:
    """A copy of the effective config, with defaults (unredacted)."""
    from .live import CACHE

    return copy.deepcopy(CACHE.config())


def config_value(path: str, default: Any = None) -> Any:
    """The effective value at a dot path (`agents.list.0.id` indexes lists), or `default`."""
    from .live import CACHE

    node: Any = CACHE.config()
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part, _MISSING)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            node = _MISSING
        if node is _MISSING:
            return default
    return copy.deepcopy(node) if isinstance(node, (dict, list)) else node


__all__ = ["current_config", "config_value"]
