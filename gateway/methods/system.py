"""System methods (protocol.md §5): health, status, last-heartbeat, system-presence,
set-heartbeats, system-event."""

from __future__ import annotations

import re
from typing import Annotated, Any

from asgiref.sync import sync_to_async
from django.core.cache import cache
from pydantic import StringConstraints, field_validator

from gateway.protocol.context import CallContext
from gateway.protocol.errors import invalid
from gateway.protocol.registry import ADMIN, READ, Params, method
from gateway.queries import (DEFAULT_AGENT_ID, SESSIONS_PATH, queued_system_events, session_overview,
                             session_status_rows)
from gateway.chat.queries import list_defaults
from gateway.health import HEARTBEATS_KEY, heartbeat_settings
from gateway.services import enqueue_system_event

LAST_HEARTBEAT_KEY = "heartbeats:last"
DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)?\s*$")
UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_ms(text: str) -> int:
    match = DURATION.match(text)
    if not match:
        raise ValueError("must be a duration such as 30m, 1h or 0m")
    return int(match.group(1)) * UNIT_MS[match.group(2) or "m"]


class HealthParams(Params):
    probe: bool = False


@method("health", scope=READ, params=HealthParams)
async def health(ctx: CallContext, params: HealthParams) -> dict[str, Any]:
    return await ctx.runtime.health.get(params.probe)


@method("status", scope=READ)
async def status(ctx: CallContext, params: Params) -> dict[str, Any]:
    overview, recent, queued, defaults = await sync_to_async(
        lambda: (session_overview(), session_status_rows(), queued_system_events(), list_defaults()))()
    beats = heartbeat_settings()
    summary = {
        "heartbeat": {"defaultAgentId": DEFAULT_AGENT_ID,
                      "agents": [{"agentId": DEFAULT_AGENT_ID, "enabled": beats["enabled"], "every": beats["every"],
                                  "everyMs": beats["everyMs"]}]},
        "channelSummary": [],
        "queuedSystemEvents": queued,
        "sessions": {"paths": [SESSIONS_PATH], "count": overview["count"],
                     "defaults": {"model": defaults["model"], "contextTokens": defaults["contextTokens"]},
                     "recent": recent,
                     "byAgent": [{"agentId": DEFAULT_AGENT_ID, "path": SESSIONS_PATH, "count": overview["count"],
                                  "recent": recent}]},
    }
    if not ctx.is_admin:  # exactly ANIMA's redaction (protocol.md §5.2)
        sessions = summary["sessions"]
        sessions.update({"paths": [], "defaults": {"model": None, "contextTokens": None}, "recent": []})
        sessions["byAgent"] = [{**a, "path": "[redacted]", "recent": []} for a in sessions["byAgent"]]
    return summary


@method("last-heartbeat", scope=READ)
async def last_heartbeat(ctx: CallContext, params: Params) -> dict[str, Any] | None:
    return cache.get(LAST_HEARTBEAT_KEY)


@method("system-presence", scope=READ)
async def system_presence(ctx: CallContext, params: Params) -> list[dict[str, Any]]:
    return ctx.runtime.presence.listing()


class SetHeartbeatsParams(Params):
    enabled: bool | None = None
    every: str | None = None

    @field_validator("every")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            duration_ms(value)
        return value


@method("set-heartbeats", scope=ADMIN, params=SetHeartbeatsParams)
async def set_heartbeats(ctx: CallContext, params: SetHeartbeatsParams) -> dict[str, Any]:
    if params.enabled is None and params.every is None:
        raise invalid("invalid set-heartbeats params: enabled (boolean) required",
                      details={"errors": [{"path": "/enabled", "message": "required (boolean)"}]})
    current = heartbeat_settings()
    if params.enabled is not None:
        current["enabled"] = params.enabled
    if params.every is not None:
        every_ms = duration_ms(params.every)
        current["every"] = params.every.strip()
        current["everyMs"] = every_ms or None
        if every_ms == 0:
            current["enabled"] = False
    cache.set(HEARTBEATS_KEY, current, timeout=None)
    ctx.runtime.health.refresh_soon()  # health reports the same switch: tell its readers
    result = {"ok": True, "enabled": current["enabled"]}
    if params.every is not None:
        result["every"] = current["every"]
    return result


class SystemEventParams(Params):
    """Only `text` is checked; wrongly-typed optional fields are ignored (protocol.md §5.6)."""

    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    device_id: Any = None
    instance_id: Any = None
    host: Any = None
    ip: Any = None
    mode: Any = None
    version: Any = None
    platform: Any = None
    device_family: Any = None
    model_identifier: Any = None
    last_input_seconds: Any = None
    reason: Any = None
    roles: Any = None
    scopes: Any = None
    tags: Any = None


BEACON = re.compile(r"^Node:\s*(?P<host>[^(·]+?)\s*(?:\((?P<ip>[^)]*)\))?\s*(?:·|$)")
BEACON_FIELDS = {"app": "version", "mode": "mode", "reason": "reason"}


def parse_beacon(text: str) -> dict[str, Any]:
    """`Node: <host> (<ip>) · app <ver> · last input <n>s ago · mode <m> · reason <r>` -> fields."""
    match = BEACON.match(text)
    if not match:
        return {}
    out: dict[str, Any] = {"host": match.group("host").strip()}
    if match.group("ip"):
        out["ip"] = match.group("ip").strip()
    for part in text.split("·")[1:]:
        words = part.strip().split(" ", 1)
        if len(words) == 2 and words[0] in BEACON_FIELDS:
            out[BEACON_FIELDS[words[0]]] = words[1].strip()
        elif part.strip().startswith("last input "):
            seconds = re.match(r"last input (\d+)s", part.strip())
            if seconds:
                out["lastInputSeconds"] = int(seconds.group(1))
    return out


def _str(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _strings(value: Any) -> list[str] | None:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else None


@method("system-event", scope=ADMIN, params=SystemEventParams)
async def system_event(ctx: CallContext, params: SystemEventParams) -> dict[str, Any]:
    text = params.text
    parsed = parse_beacon(text)
    explicit = {"host": _str(params.host), "ip": _str(params.ip), "mode": _str(params.mode),
                "version": _str(params.version), "platform": _str(params.platform),
                "deviceFamily": _str(params.device_family), "modelIdentifier": _str(params.model_identifier),
                "reason": _str(params.reason), "deviceId": _str(params.device_id),
                "instanceId": _str(params.instance_id), "roles": _strings(params.roles),
                "scopes": _strings(params.scopes)}
    if isinstance(params.last_input_seconds, (int, float)) and not isinstance(params.last_input_seconds, bool):
        explicit["lastInputSeconds"] = int(params.last_input_seconds)
    fields = {**parsed, **{k: v for k, v in explicit.items() if v is not None}, "text": text}
    key = (explicit["deviceId"] or explicit["instanceId"] or parsed.get("host") or parsed.get("ip") or text[:64]
           or ctx.runtime.presence.host)
    store = ctx.runtime.presence
    before = dict(store.local.get(key.strip().lower()) or {})
    store.upsert(key, fields)
    if not text.startswith("Node:"):
        await sync_to_async(enqueue_system_event)(text)
    elif any(before.get(f) != fields.get(f) for f in ("host", "ip", "version", "mode")) or (
            fields.get("reason") and not str(fields["reason"]).startswith(("periodic", "heartbeat"))
            and before.get("reason") != fields.get("reason")):
        await sync_to_async(enqueue_system_event)(
            f"Node changed: {fields.get('host') or key} · mode {fields.get('mode') or '?'}")
    await ctx.runtime.presence_changed()
    return {"ok": True}



