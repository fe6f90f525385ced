"""Frame parsing and encoding. JSON goes through orjson; broadcast payloads are encoded once
and spliced into each recipient's frame (only `seq` differs per connection)."""

from __future__ import annotations

from typing import Any

import orjson


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads(data: str | bytes) -> Any:
    return orjson.loads(data)


class RequestFrame:
    __slots__ = ("id", "method", "params")

    def __init__(self, id: str, method: str, params: Any):
        self.id, self.method, self.params = id, method, params


def frame_problem(frame: Any) -> str | None:
    """Why `frame` is not a valid request frame, or None (unknown keys are ignored, D3)."""
    if not isinstance(frame, dict):
        return "frame must be an object"
    if frame.get("type") != "req":
        return "at /type: must be \"req\""
    rid = frame.get("id")
    if not isinstance(rid, str) or not rid:
        return "at /id: must be a non-empty string"
    method = frame.get("method")
    if not isinstance(method, str) or not method:
        return "at /method: must be a non-empty string"
    return None


def echo_id(frame: Any) -> Any:
    """The id to answer an invalid frame under: the received one when it has one (a number is
    echoed as sent, so the client can correlate it), else "invalid"."""
    rid = frame.get("id") if isinstance(frame, dict) else None
    if (isinstance(rid, str) and rid) or (isinstance(rid, int) and not isinstance(rid, bool)):
        return rid
    return "invalid"


def as_request(frame: dict) -> RequestFrame:
    params = frame.get("params")
    return RequestFrame(frame["id"], frame["method"], {} if params is None else params)
