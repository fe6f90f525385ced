"""Node-role connections and node.invoke over a real socket (auth-and-pairing.md §5, README D2):
the invoke round trip, command policy, a node answering only for itself, and the error for each
way an invoke can fail."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from gateway.client import GatewayClient
from tests.support import ADMIN, READ, call_error, still_usable

WRITE = ["operator.write"]


def node_id() -> str:
    return f"node-{uuid.uuid4().hex[:10]}"


async def connect_node(client: Any, name: str, commands: list[str]) -> GatewayClient:
    """A token-authenticated node without a device identity: its node id is its client id (its
    platform, "python", gets the platform-neutral default allowlist)."""
    node = await client([], role="node", client_id=name, mode="node",
                        extra={"commands": commands, "caps": ["system"]})
    assert node.hello["type"] == "hello-ok"
    return node


async def answer_next_invoke(node: GatewayClient, *, ok: bool = True, payload: Any = None,
                             error: dict | None = None) -> dict:
    """Wait for the node's next invoke request and answer it; returns the request."""
    event = await node.next_event("node.invoke.request")
    assert "seq" not in event, "targeted events carry no seq"
    request = event["payload"]
    params: dict[str, Any] = {"id": request["id"], "nodeId": request["nodeId"], "ok": ok}
    if payload is not None:
        params["payload"] = payload
    if error is not None:
        params["error"] = error
    assert await node.call("node.invoke.result", params) == {"ok": True}
    return request


async def test_invoke_round_trip(client) -> None:
    name = node_id()
    node = await connect_node(client, name, ["system.which", "system.run"])
    operator = await client(WRITE)
    listing = await operator.call("node.list")
    row = next(n for n in listing["nodes"] if n["nodeId"] == name)
    assert row["connected"] is True and "system.which" in row["commands"]

    call = asyncio.ensure_future(operator.call("node.invoke", {
        "nodeId": name, "command": "system.which", "params": {"bins": ["git"]}, "idempotencyKey": "k1"}))
    request = await answer_next_invoke(node, payload={"bins": {"git": "/usr/bin/git"}})
    assert request["command"] == "system.which"
    assert request["idempotencyKey"] == "k1"
    assert request["paramsJSON"] is not None and "git" in request["paramsJSON"]
    result = await asyncio.wait_for(call, 10)
    assert result["ok"] is True and result["nodeId"] == name
    assert result["payload"] == {"bins": {"git": "/usr/bin/git"}}


async def test_node_failure_is_503_with_the_node_error(client) -> None:
    name = node_id()
    node = await connect_node(client, name, ["system.which"])
    operator = await client(WRITE)
    call = asyncio.ensure_future(operator.request("node.invoke", {
        "nodeId": name, "command": "system.which", "idempotencyKey": "k2"}))
    await answer_next_invoke(node, ok=False, error={"code": "ENOENT", "message": "which: not found"})
    frame = await asyncio.wait_for(call, 10)
    assert (frame["error"]["code"], frame["error"]["reason"]) == (503, "UNAVAILABLE")
    assert frame["error"]["details"]["nodeError"]["code"] == "ENOENT"
    await still_usable(operator)


async def test_invoke_that_runs_out_of_time_is_504(client) -> None:
    name = node_id()
    await connect_node(client, name, ["system.which"])
    operator = await client(WRITE)
    error = await call_error(operator, "node.invoke", {"nodeId": name, "command": "system.which",
                                                       "timeoutMs": 200, "idempotencyKey": "k3"})
    assert (error["code"], error["reason"]) == (504, "TIMEOUT")
    assert error["details"]["nodeError"]["code"] == "TIMEOUT"
    await still_usable(operator)


async def test_invoke_errors_for_unknown_and_disconnected_nodes(client) -> None:
    operator = await client(WRITE)
    error = await call_error(operator, "node.invoke", {"nodeId": node_id(), "command": "system.which",
                                                       "idempotencyKey": "k4"})
    assert (error["code"], error["reason"]) == (404, "NOT_FOUND")
    name = node_id()
    node = await connect_node(client, name, ["system.which"])
    await node.close()
    for _ in range(100):  # the disconnect is processed by the server asynchronously
        rows = [r for r in (await operator.call("node.list"))["nodes"] if r["nodeId"] == name]
        if not rows or not rows[0]["connected"]:
            break
        await asyncio.sleep(0.05)
    error = await call_error(operator, "node.invoke", {"nodeId": name, "command": "system.which",
                                                       "idempotencyKey": "k5"})
    assert (error["code"], error["reason"]) == (503, "UNAVAILABLE")
    await still_usable(operator)


async def test_command_policy_is_enforced_at_invoke(client) -> None:
    name = node_id()
    await connect_node(client, name, ["system.which", "camera.snap", "made.up"])
    operator = await client(ADMIN)
    described = await operator.call("node.describe", {"nodeId": name})
    assert "camera.snap" not in described["commands"], "dangerous commands are dropped at connect"
    assert "made.up" not in described["commands"]
    for command, reason in (("camera.snap", "command not allowlisted"),
                            ("system.notify", "command not declared by node")):
        error = await call_error(operator, "node.invoke", {"nodeId": name, "command": command,
                                                           "idempotencyKey": f"p-{command}"})
        assert error["code"] == 400 and error["details"]["reason"] == reason, error
    error = await call_error(operator, "node.invoke", {"nodeId": name, "command": "system.execApprovals.get",
                                                       "idempotencyKey": "p-x"})
    assert error["code"] == 400
    error = await call_error(operator, "node.describe", {"nodeId": node_id()})
    assert error["code"] == 404
    await still_usable(operator)


async def test_a_node_answers_only_for_itself(client) -> None:
    mine, other = node_id(), node_id()
    node = await connect_node(client, mine, ["system.which"])
    await connect_node(client, other, ["system.which"])
    error = await call_error(node, "node.invoke.result", {"id": str(uuid.uuid4()), "nodeId": other, "ok": True})
    assert (error["code"], error["message"]) == (403, "nodeId mismatch")
    ignored = await node.call("node.invoke.result", {"id": str(uuid.uuid4()), "nodeId": mine, "ok": True})
    assert ignored == {"ok": True, "ignored": True}, "a result for no invoke is ignored"


async def test_node_role_methods(client) -> None:
    name = node_id()
    node = await connect_node(client, name, [])
    assert isinstance((await node.call("skills.bins"))["bins"], list)
    assert await node.call("node.event", {"event": "something.new", "payload": {"x": 1}}) == {"ok": True}
    error = await call_error(node, "node.event", {"event": "voice.transcript", "payload": {"text": " "}})
    assert error["code"] == 400
    error = await call_error(node, "node.list")
    assert (error["code"], error["message"]) == (403, "unauthorized role: node")
    reader = await client(READ)
    error = await call_error(reader, "node.event", {"event": "x"})
    assert (error["code"], error["message"]) == (403, "unauthorized role: operator")
