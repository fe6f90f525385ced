"""The two wire dialects (README D1). Handlers never see them: they raise GatewayError and
emit events under canonical (seed) names; the connection's dialect encodes frames."""

from __future__ import annotations

from typing import Any

from .errors import SEED_CODES, V3_CODES, GatewayError
from .frames import dumps

SEED_EVENTS = [
    "connect.challenge", "tick", "shutdown", "presence.changed", "health.changed", "heartbeat",
    "chat.run.started", "chat.delta", "chat.run.completed", "chat.run.failed", "agent", "cron",
    "talk.mode", "voicewake.changed", "device.pair.requested", "device.pair.resolved",
    "node.pair.requested", "node.pair.resolved", "node.invoke.request", "exec.approval.requested",
    "exec.approval.resolved",
]

# canonical (seed) name -> v3 name; None: the v3 dialect has no such event
V3_EVENT_NAMES: dict[str, str | None] = {
    "presence.changed": "presence", "health.changed": "health",
    "chat.delta": "chat", "chat.run.completed": "chat", "chat.run.failed": "chat",
    "chat.run.started": None,  # ANIMA announces a run start only on the agent stream
}


class Dialect:
    name: str
    event_type: str
    events: list[str]

    def event_name(self, canonical: str) -> str | None:
        return canonical

    def error_object(self, err: GatewayError) -> dict[str, Any]:
        raise NotImplementedError

    def ok_frame(self, rid: str, payload: Any) -> str:
        return '{"type":"res","id":' + dumps(rid) + ',"ok":true,"payload":' + dumps(payload) + "}"

    def error_frame(self, rid: str, err: GatewayError, payload: Any = None) -> str:
        frame: dict[str, Any] = {"type": "res", "id": rid, "ok": False, "error": self.error_object(err)}
        if payload is not None:
            frame["payload"] = payload
        return dumps(frame)

    def event_frame(self, name: str, payload_json: str, seq: int | None = None,
                    state_version: dict | None = None) -> str:
        """`payload_json` is already encoded, so one broadcast is serialised once per dialect."""
        parts = ['{"type":"', self.event_type, '","event":', dumps(name), ',"payload":', payload_json]
        if seq is not None:
            parts += [',"seq":', str(seq)]
        if state_version is not None:
            parts += [',"stateVersion":', dumps(state_version)]
        parts.append("}")
        return "".join(parts)


class SeedDialect(Dialect):
    name = "seed"
    event_type = "evt"
    events = SEED_EVENTS

    def error_object(self, err: GatewayError) -> dict[str, Any]:
        out: dict[str, Any] = {"code": SEED_CODES[err.reason], "message": err.message, "reason": err.reason}
        if err.details is not None:
            out["details"] = err.details
        if err.retryable is not None:
            out["retryable"] = err.retryable
        if err.retry_after_ms is not None:
            out["retryAfterMs"] = err.retry_after_ms
        return out


class V3Dialect(Dialect):
    """ANIMA/OpenClaw protocol 3: string codes, our finer reason in details.code."""

    name = "v3"
    event_type = "event"
    events = [
        "connect.challenge", "agent", "chat", "presence", "tick", "talk.mode", "shutdown", "health",
        "heartbeat", "cron", "node.pair.requested", "node.pair.resolved", "node.invoke.request",
        "device.pair.requested", "device.pair.resolved", "voicewake.changed", "exec.approval.requested",
        "exec.approval.resolved",
    ]

    def event_name(self, canonical: str) -> str | None:
        return V3_EVENT_NAMES.get(canonical, canonical)

    def error_object(self, err: GatewayError) -> dict[str, Any]:
        details = dict(err.details) if isinstance(err.details, dict) else (
            {} if err.details is None else {"value": err.details})
        details["code"] = err.reason
        out: dict[str, Any] = {"code": V3_CODES.get(err.reason, "INVALID_REQUEST"), "message": err.message,
                               "details": details}
        if err.retryable is not None:
            out["retryable"] = err.retryable
        if err.retry_after_ms is not None:
            out["retryAfterMs"] = err.retry_after_ms
        return out


SEED = SeedDialect()
V3 = V3Dialect()
DIALECTS = {"seed": SEED, "v3": V3}
