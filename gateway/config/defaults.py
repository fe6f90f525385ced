"""What the effective config holds where the document is silent: runtime defaults, and the
environment variables that give values until the config sets them (README Clarifications).
Applied in memory only; never written to the database."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings

ECHO_CHUNK_CHARS = 16     # README D14
ECHO_CHUNK_DELAY_MS = 20
RUN_TIMEOUT_SECONDS = 600  # chat-sessions-cron.md §3 (chat.send step 7)

RUNTIME_DEFAULTS: dict[str, Any] = {
    "agents": {"defaults": {"timeoutSeconds": RUN_TIMEOUT_SECONDS, "heartbeat": {"every": "30m"},
                            "echo": {"chunkChars": ECHO_CHUNK_CHARS, "chunkDelayMs": ECHO_CHUNK_DELAY_MS}}},
    "session": {"mainKey": "main", "scope": "per-sender", "dmScope": "main"},
    "cron": {"enabled": True, "maxConcurrentRuns": 1, "sessionRetention": "24h"},
    "logging": {"level": "info"},
    "browser": {"enabled": True},
    "commands": {"restart": False},
}


def environment_values() -> dict[str, Any]:
    """Values the process environment gives (through settings, which read it)."""
    password = settings.ANIMA_GATEWAY_PASSWORD
    token = settings.ANIMA_GATEWAY_TOKEN
    auth: dict[str, Any] = {}
    if token:
        auth["token"] = token
    if password:
        auth["password"] = password
    limit = settings.ANIMA_AUTH_RATE_LIMIT
    auth["rateLimit"] = {"maxAttempts": limit["max_attempts"], "windowMs": limit["window_ms"],
                         "lockoutMs": limit["lockout_ms"], "exemptLoopback": limit["exempt_loopback"]}
    gateway: dict[str, Any] = {"auth": auth}
    if settings.ANIMA_GATEWAY_TRUSTED_PROXIES:
        gateway["trustedProxies"] = list(settings.ANIMA_GATEWAY_TRUSTED_PROXIES)
    if settings.ANIMA_CONTROL_UI_ALLOWED_ORIGINS:
        gateway["controlUi"] = {"allowedOrigins": list(settings.ANIMA_CONTROL_UI_ALLOWED_ORIGINS)}
    nodes = {key: list(value) for key, value in (("allowCommands", settings.ANIMA_NODE_ALLOW_COMMANDS),
                                                 ("denyCommands", settings.ANIMA_NODE_DENY_COMMANDS)) if value}
    if nodes:
        gateway["nodes"] = nodes
    out: dict[str, Any] = {"gateway": gateway}
    talk_key = os.environ.get("ELEVENLABS_API_KEY") or os.environ.get("XI_API_KEY")
    if talk_key:
        out["talk"] = {"apiKey": talk_key}
    return out


def effective(resolved: dict[str, Any]) -> dict[str, Any]:
    """The resolved document on top of the environment values on top of the runtime defaults."""
    from .document import deep_merge

    out = deep_merge(deep_merge(RUNTIME_DEFAULTS, environment_values()), resolved)
    auth = out["gateway"]["auth"]
    if "mode" not in auth:  # as the handshake decides it: a password wins over a token
        auth["mode"] = "password" if auth.get("password") else "token" if auth.get("token") else "none"
    return out
