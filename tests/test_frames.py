"""Frames after the handshake (protocol.md §1.7): every failure is answered and the socket stays
usable, except an oversize frame, which closes 1009."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.exceptions import ConnectionClosed

from gateway.protocol.frames import dumps
from tests.support import ADMIN, READ, WRITE, call_error, connect_params, frames_until_close, handshake, \
    recv_response, send_raw, still_usable


async def test_unknown_method_is_404_and_the_socket_survives(client) -> None:
    conn = await client(READ)
    error = await call_error(conn, "no.such.method")
    assert (error["code"], error["reason"], error["message"]) == (404, "NOT_FOUND", "unknown method: no.such.method")
    await still_usable(conn)


async def test_unknown_method_is_404_even_without_scopes(client) -> None:
    conn = await client([])
    error = await call_error(conn, "no.such.method")
    assert error["code"] == 404


async def test_invalid_json_after_hello_is_400_under_id_invalid(client) -> None:
    conn = await client(READ)
    frame = await send_raw(conn, "{definitely not json", "invalid")
    assert frame["ok"] is False
    assert frame["error"]["code"] == 400
    assert "invalid JSON" in frame["error"]["message"]
    await still_usable(conn)


async def test_invalid_frame_echoes_its_id_when_it_has_one(client) -> None:
    conn = await client(READ)
    frame = await send_raw(conn, dumps({"type": "req", "id": "bad-1", "params": {}}), "bad-1")  # no method
    assert frame["error"]["code"] == 400
    assert frame["error"]["message"] == "invalid request frame: at /method: must be a non-empty string"

    frame = await send_raw(conn, dumps({"type": "req", "id": 17, "method": "health"}), 17)  # echoed as sent
    assert frame["error"]["message"] == "invalid request frame: at /id: must be a non-empty string"
    await still_usable(conn)


async def test_params_of_the_wrong_type_are_400_naming_the_path(client) -> None:
    conn = await client(READ)
    error = await call_error(conn, "health", {"probe": "yes"})
    assert (error["code"], error["reason"]) == (400, "INVALID_REQUEST")
    assert error["message"].startswith("invalid health params: at /probe:")
    assert [e["path"] for e in error["details"]["errors"]] == ["/probe"]
    error = await call_error(conn, "logs.tail", {"limit": 0, "maxBytes": "lots"})
    assert {e["path"] for e in error["details"]["errors"]} == {"/limit", "/maxBytes"}
    await still_usable(conn)


async def test_params_that_are_not_an_object_are_400_at_root(client) -> None:
    conn = await client(READ)
    error = await call_error(conn, "health", [1, 2])
    assert error["message"] == "invalid health params: at root: must be an object"
    await still_usable(conn)


async def test_unknown_params_keys_are_ignored(client) -> None:
    conn = await client(READ)
    assert (await conn.call("health", {"probe": False, "somethingNew": {"x": 1}}))["ok"] is True


async def test_missing_scope_is_403_naming_the_scope_and_the_socket_survives(client) -> None:
    conn = await client(READ)
    error = await call_error(conn, "system-event", {"text": "hello"})
    assert (error["code"], error["reason"], error["message"]) == (403, "MISSING_SCOPE", "missing scope: operator.admin")
    error = await call_error(conn, "device.pair.list")
    assert error["message"] == "missing scope: operator.pairing"
    await still_usable(conn)


async def test_authorization_is_checked_before_params(client) -> None:
    conn = await client(READ)
    error = await call_error(conn, "system-event", {"text": 42})
    assert error["code"] == 403


async def test_write_scope_implies_read(client) -> None:
    conn = await client(WRITE)
    await still_usable(conn)
    error = await call_error(conn, "set-heartbeats", {"enabled": True})
    assert error["code"] == 403


async def test_operators_cannot_call_node_methods_and_nodes_cannot_call_operator_methods(client) -> None:
    admin = await client(ADMIN)
    error = await call_error(admin, "skills.bins")
    assert (error["code"], error["reason"], error["message"]) == (403, "FORBIDDEN", "unauthorized role: operator")
    await still_usable(admin)
    node = await client([], role="node")
    error = await call_error(node, "health")
    assert (error["code"], error["message"]) == (403, "unauthorized role: node")
    assert (await node.request("health"))["error"]["code"] == 403, "the node's socket stays open"


async def test_system_method_param_errors_keep_the_socket(client) -> None:
    admin = await client(ADMIN)
    error = await call_error(admin, "set-heartbeats", {})
    assert error["code"] == 400 and "enabled" in error["message"]
    error = await call_error(admin, "set-heartbeats", {"enabled": "yes"})
    assert error["code"] == 400 and "/enabled" in error["message"]
    error = await call_error(admin, "system-event", {})
    assert error["code"] == 400 and "/text" in error["message"]
    error = await call_error(admin, "system-event", {"text": "   "})
    assert error["code"] == 400
    await still_usable(admin)


async def test_pipelined_requests_are_all_answered_and_a_slow_one_does_not_block(client) -> None:
    conn = await client(WRITE)
    slow = asyncio.ensure_future(conn.request("agent.wait", {"runId": "no-such-run", "timeoutMs": 1500}))
    fast = await asyncio.gather(*(conn.request("health") for _ in range(20)))
    assert all(f["ok"] for f in fast)
    assert len({f["id"] for f in fast}) == 20
    assert not slow.done(), "the fast requests were answered while the slow one was still running"
    result = await slow
    assert result["payload"] == {"runId": "no-such-run", "status": "timeout"}


async def test_binary_request_frames_are_read_as_utf8(client) -> None:
    conn = await client(READ)
    frame = await send_raw(conn, dumps({"type": "req", "id": "bin-1", "method": "health"}).encode(), "bin-1")
    assert frame["ok"] is True


def _padded_request(rid: str, size: int) -> str:
    """A `health` request of exactly `size` bytes (the padding is an ignored params key)."""
    head = '{"type":"req","id":"' + rid + '","method":"health","params":{"pad":"'
    tail = '"}}'
    return head + "x" * (size - len(head) - len(tail)) + tail


async def test_frame_of_exactly_max_payload_is_answered(client) -> None:
    conn = await client(READ)
    limit = conn.hello["policy"]["maxPayload"]
    frame_text = _padded_request("big", limit)
    assert len(frame_text.encode()) == limit
    frame = await send_raw(conn, frame_text, "big", timeout=30)
    assert frame["ok"] is True
    await still_usable(conn)


async def test_oversize_frame_closes_1009(gateway_server) -> None:
    ws, _, response = await handshake(gateway_server.url, connect_params(token=gateway_server.token, scopes=READ))
    limit = response["payload"]["policy"]["maxPayload"]
    try:
        await ws.send(_padded_request("huge", limit + 1))
    except ConnectionClosed:
        pass  # the server may close while we are still writing
    frames: list[Any] = await frames_until_close(ws, timeout=30)
    assert not any(f.get("type") == "res" for f in frames), "no response to an oversize frame"
    assert ws.close_code == 1009


async def test_many_failures_in_a_row_leave_the_socket_usable(client) -> None:
    conn = await client(READ)
    for method, params in (("no.such", {}), ("health", {"probe": 1}), ("system-event", {"text": "x"}),
                           ("connect", connect_params(scopes=READ))):
        frame = await conn.request(method, params)
        assert frame["ok"] is False
    await still_usable(conn)


async def test_responses_echo_the_request_id_verbatim(client) -> None:
    conn = await client(READ)
    for rid in ("a", "ünïcode-id", "x" * 200, "42"):
        frame = await send_raw(conn, dumps({"type": "req", "id": rid, "method": "health"}), rid)
        assert frame["id"] == rid and frame["ok"] is True


async def test_event_frames_are_not_answered(gateway_server) -> None:
    """An `evt` frame from the client after hello is an invalid request: 400, socket stays open."""
    ws, _, _ = await handshake(gateway_server.url, connect_params(token=gateway_server.token, scopes=READ))
    try:
        await ws.send(dumps({"type": "evt", "event": "x", "id": "e1"}))
        frame = await recv_response(ws, "e1")
        assert frame["error"]["code"] == 400
        await ws.send(dumps({"type": "req", "id": "h", "method": "health"}))
        assert (await recv_response(ws, "h"))["ok"] is True
    finally:
        await ws.close()
