"""The two wire dialects (README D1, D2) and frame parsing (protocol.md §1)."""

from __future__ import annotations

import orjson
import pytest

from gateway.protocol.dialects import SEED, SEED_EVENTS, V3
from gateway.protocol.errors import SEED_CODES, GatewayError
from gateway.protocol.frames import as_request, echo_id, frame_problem


def decode(text: str) -> dict:
    return orjson.loads(text)


def test_seed_error_has_numeric_code_and_reason() -> None:
    err = GatewayError("NOT_PAIRED", "pairing required", details={"requestId": "r"})
    frame = decode(SEED.error_frame("x", err))
    assert frame == {"type": "res", "id": "x", "ok": False,
                     "error": {"code": 403, "message": "pairing required", "reason": "NOT_PAIRED",
                               "details": {"requestId": "r"}}}


def test_v3_error_has_string_code_and_reason_in_details() -> None:
    err = GatewayError("NOT_FOUND", "unknown method: x")
    error = decode(V3.error_frame("x", err))["error"]
    assert error == {"code": "INVALID_REQUEST", "message": "unknown method: x", "details": {"code": "NOT_FOUND"}}


@pytest.mark.parametrize(("reason", "v3_code"), [
    ("NOT_PAIRED", "NOT_PAIRED"), ("UNAVAILABLE", "UNAVAILABLE"), ("INTERNAL", "UNAVAILABLE"),
    ("NOT_LINKED", "NOT_LINKED"), ("AGENT_TIMEOUT", "AGENT_TIMEOUT"), ("TIMEOUT", "AGENT_TIMEOUT"),
    ("MISSING_SCOPE", "INVALID_REQUEST"), ("UNAUTHORIZED", "INVALID_REQUEST"), ("CONFLICT", "INVALID_REQUEST"),
])
def test_v3_code_mapping(reason: str, v3_code: str) -> None:
    assert V3.error_object(GatewayError(reason, "m"))["code"] == v3_code


def test_v3_keeps_other_details_beside_the_code() -> None:
    err = GatewayError("PROTOCOL_MISMATCH", "protocol mismatch", details={"expectedProtocol": 3})
    assert V3.error_object(err)["details"] == {"expectedProtocol": 3, "code": "PROTOCOL_MISMATCH"}


def test_rate_limited_carries_retry_after_in_both_dialects() -> None:
    err = GatewayError("RATE_LIMITED", "too many", retryable=True, retry_after_ms=1234)
    seed = SEED.error_object(err)
    v3 = V3.error_object(err)
    assert (seed["code"], seed["retryAfterMs"], seed["retryable"]) == (429, 1234, True)
    assert (v3["code"], v3["retryAfterMs"], v3["details"]["code"]) == ("INVALID_REQUEST", 1234, "RATE_LIMITED")


def test_seed_codes_cover_the_readme_reasons() -> None:
    expected = {"INVALID_REQUEST": 400, "UNAUTHORIZED": 401, "FORBIDDEN": 403, "MISSING_SCOPE": 403,
                "NOT_PAIRED": 403, "NOT_FOUND": 404, "CONFLICT": 409, "PAYLOAD_TOO_LARGE": 413,
                "RATE_LIMITED": 429, "INTERNAL": 500, "UNAVAILABLE": 503, "NOT_LINKED": 503, "TIMEOUT": 504,
                "AGENT_TIMEOUT": 504, "PROTOCOL_MISMATCH": 400, "TOKEN_MISMATCH": 401,
                "DEVICE_SIGNATURE_INVALID": 401, "DEVICE_NONCE_MISMATCH": 401, "SIGNATURE_EXPIRED": 401,
                "DEVICE_TOKEN_REVOKED": 401}
    assert {k: SEED_CODES[k] for k in expected} == expected


def test_unknown_reason_is_a_programming_error() -> None:
    with pytest.raises(AssertionError):
        GatewayError("NOT_A_REASON", "x")


def test_event_frames_per_dialect() -> None:
    seed = decode(SEED.event_frame("presence.changed", '{"presence":[]}', 4, {"presence": 2, "health": 1}))
    assert seed == {"type": "evt", "event": "presence.changed", "payload": {"presence": []}, "seq": 4,
                    "stateVersion": {"presence": 2, "health": 1}}
    v3 = decode(V3.event_frame(V3.event_name("presence.changed"), "null"))
    assert v3 == {"type": "event", "event": "presence", "payload": None}


def test_v3_event_names() -> None:
    assert V3.event_name("health.changed") == "health"
    assert V3.event_name("chat.delta") == "chat"
    assert V3.event_name("chat.run.started") is None
    assert V3.event_name("device.pair.requested") == "device.pair.requested"
    assert SEED.event_name("chat.run.started") == "chat.run.started"


def test_seed_event_list() -> None:
    assert SEED_EVENTS[0] == "connect.challenge"
    assert {"tick", "shutdown", "presence.changed", "health.changed", "device.pair.requested",
            "device.pair.resolved", "exec.approval.requested"} <= set(SEED_EVENTS)


def test_ok_frame_keeps_a_null_payload() -> None:
    assert decode(SEED.ok_frame("a", None)) == {"type": "res", "id": "a", "ok": True, "payload": None}


@pytest.mark.parametrize(("frame", "problem"), [
    ([], "frame must be an object"),
    ({"type": "evt", "id": "1", "method": "x"}, 'at /type: must be "req"'),
    ({"type": "req", "id": 5, "method": "x"}, "at /id: must be a non-empty string"),
    ({"type": "req", "id": "", "method": "x"}, "at /id: must be a non-empty string"),
    ({"type": "req", "id": "1"}, "at /method: must be a non-empty string"),
    ({"type": "req", "id": "1", "method": ""}, "at /method: must be a non-empty string"),
])
def test_frame_problems(frame: object, problem: str) -> None:
    assert frame_problem(frame) == problem


def test_valid_frame_with_unknown_keys() -> None:
    frame = {"type": "req", "id": "1", "method": "health", "extra": True}
    assert frame_problem(frame) is None
    request = as_request(frame)
    assert (request.id, request.method, request.params) == ("1", "health", {})


def test_null_params_become_an_empty_object() -> None:
    assert as_request({"type": "req", "id": "1", "method": "m", "params": None}).params == {}
    assert as_request({"type": "req", "id": "1", "method": "m", "params": [1]}).params == [1]


def test_echo_id() -> None:
    assert echo_id({"id": "abc"}) == "abc"
    assert echo_id({"id": 3}) == 3  # a numeric id is echoed as sent, so the client can correlate it
    assert echo_id({"id": True}) == "invalid"
    assert echo_id({"id": ""}) == "invalid"
    assert echo_id("garbage") == "invalid"
