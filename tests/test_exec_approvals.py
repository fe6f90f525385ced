"""Exec approvals over a real socket (auth-and-pairing.md §6, README D2): a request waits for a
human decision, which any approvals operator can give; events reach only approvals/admin
operators; an approval nobody decides expires with decision null."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from gateway.client import GatewayClient
from tests.support import ADMIN, READ, REMOTE, DeviceKey, call_error, device_handshake, request_two_phase, \
    still_usable

APPROVALS = ["operator.approvals"]


async def start_two_phase(conn: GatewayClient, params: dict[str, Any]) -> tuple[dict, asyncio.Future]:
    return await request_two_phase(conn, "exec.approval.request", {**params, "twoPhase": True})


async def test_request_waits_for_a_decision_given_elsewhere(client) -> None:
    requester = await client(APPROVALS)
    approver = await client(APPROVALS)
    approval_id = f"appr-{uuid.uuid4().hex[:8]}"
    accepted, final = await start_two_phase(requester, {"id": approval_id, "command": "rm -rf /tmp/x",
                                                        "cwd": "/tmp", "timeoutMs": 60_000})
    assert accepted["ok"] and accepted["payload"]["status"] == "accepted"
    assert accepted["payload"]["id"] == approval_id
    assert accepted["payload"]["expiresAtMs"] > accepted["payload"]["createdAtMs"]

    requested = await approver.next_event("exec.approval.requested")
    while requested["payload"]["id"] != approval_id:
        requested = await approver.next_event("exec.approval.requested")
    assert requested["payload"]["request"]["command"] == "rm -rf /tmp/x"
    assert requested["payload"]["request"]["cwd"] == "/tmp"
    assert not final.done()

    assert await approver.call("exec.approval.resolve", {"id": approval_id, "decision": "allow-once"}) == {"ok": True}
    frame = await asyncio.wait_for(final, 10)
    assert frame["ok"] and frame["payload"]["decision"] == "allow-once" and frame["payload"]["id"] == approval_id
    resolved = await approver.next_event("exec.approval.resolved")
    while resolved["payload"]["id"] != approval_id:
        resolved = await approver.next_event("exec.approval.resolved")
    assert resolved["payload"]["decision"] == "allow-once"

    waited = await approver.call("exec.approval.waitDecision", {"id": approval_id})
    assert waited["decision"] == "allow-once"


async def test_undecided_approval_expires_with_a_null_decision(client) -> None:
    requester = await client(APPROVALS)
    result = await requester.call("exec.approval.request", {"command": "ls", "timeoutMs": 300})
    assert result["decision"] is None, "an expiry is an answer, not an error"
    frame = await requester.request("exec.approval.resolve", {"id": result["id"], "decision": "deny"})
    assert (frame["error"]["code"], frame["error"]["reason"]) == (409, "CONFLICT")


async def test_resolve_errors_keep_the_socket(client) -> None:
    approver = await client(APPROVALS + READ)
    error = await call_error(approver, "exec.approval.resolve", {"id": "no-such-approval", "decision": "deny"})
    assert (error["code"], error["reason"]) == (404, "NOT_FOUND")
    error = await call_error(approver, "exec.approval.resolve", {"id": "x", "decision": "maybe"})
    assert error["code"] == 400 and "decision" in error["message"]
    error = await call_error(approver, "exec.approval.waitDecision", {})
    assert (error["code"], error["message"]) == (400, "id is required")
    error = await call_error(approver, "exec.approval.waitDecision", {"id": "never-seen"})
    assert error["code"] == 404
    error = await call_error(approver, "exec.approval.request", {"command": "  "})
    assert error["code"] == 400 and "/command" in error["message"]
    await still_usable(approver)


async def test_resolving_twice_conflicts(client) -> None:
    requester = await client(APPROVALS)
    approval_id = f"twice-{uuid.uuid4().hex[:8]}"
    _, final = await start_two_phase(requester, {"id": approval_id, "command": "echo hi"})
    await requester.call("exec.approval.resolve", {"id": approval_id, "decision": "deny"})
    assert (await asyncio.wait_for(final, 10))["payload"]["decision"] == "deny"
    error = await call_error(requester, "exec.approval.resolve", {"id": approval_id, "decision": "allow-once"})
    assert error["code"] == 409
    error = await call_error(requester, "exec.approval.request", {"id": approval_id, "command": "echo again"})
    assert error["code"] == 409, "an id cannot be reused"


async def test_approval_events_reach_only_approvals_and_admin_operators(client) -> None:
    reader = await client(READ)
    admin = await client(ADMIN)
    requester = await client(APPROVALS)
    approval_id = f"aud-{uuid.uuid4().hex[:8]}"
    _, final = await start_two_phase(requester, {"id": approval_id, "command": "true"})
    event = await admin.next_event("exec.approval.requested")
    while event["payload"]["id"] != approval_id:
        event = await admin.next_event("exec.approval.requested")
    await requester.call("exec.approval.resolve", {"id": approval_id, "decision": "deny"})
    await asyncio.wait_for(final, 10)
    # Barriers: an event each of them is entitled to, sent after the approval events.
    await admin.call("system-event", {"text": f"barrier {approval_id}"})
    seen = []
    while True:
        frame = await reader.next_event()
        seen.append(frame["event"])
        if frame["event"] == "presence.changed" and any(
                e.get("text") == f"barrier {approval_id}" for e in frame["payload"]["presence"]):
            break
    assert not any(name.startswith("exec.approval") for name in seen)


async def test_approval_events_do_not_reach_pairing_operators(gateway_server, client) -> None:
    pairer = await client(["operator.pairing"])
    requester = await client(APPROVALS)
    approval_id = f"pair-{uuid.uuid4().hex[:8]}"
    _, final = await start_two_phase(requester, {"id": approval_id, "command": "true"})
    await requester.call("exec.approval.resolve", {"id": approval_id, "decision": "deny"})
    await asyncio.wait_for(final, 10)
    attempt = await device_handshake(gateway_server.url, DeviceKey(), token=gateway_server.token, scopes=READ,
                                     headers=REMOTE)  # a pairing event the pairer is entitled to: the barrier
    request_id = attempt.error["details"]["requestId"]
    await attempt.ws.close()
    seen = []
    while True:
        frame = await pairer.next_event()
        seen.append(frame["event"])
        if frame["event"] == "device.pair.requested" and frame["payload"]["requestId"] == request_id:
            break
    assert not any(name.startswith("exec.approval") for name in seen)


async def test_approval_methods_need_the_approvals_scope(client) -> None:
    writer = await client(["operator.write"])
    error = await call_error(writer, "exec.approval.request", {"command": "ls"})
    assert (error["code"], error["message"]) == (403, "missing scope: operator.approvals")
    await still_usable(writer)


async def test_policy_document_is_guarded_by_base_hash(client) -> None:
    admin = await client(ADMIN)
    current = await admin.call("exec.approvals.get")
    assert {"path", "exists", "hash", "file"} <= set(current)
    assert not current["path"].startswith("/"), "state lives in the database (D7)"
    document = {"version": 1, "defaults": {"security": "allowlist", "ask": "on-miss"},
                "agents": {"main": {"allowlist": ["/usr/bin/ls", {"pattern": "  "}]}}}
    if current["exists"]:
        written = await admin.call("exec.approvals.set", {"file": document, "baseHash": current["hash"]})
    else:
        written = await admin.call("exec.approvals.set", {"file": document})
    assert written["exists"] is True and written["hash"] != current["hash"]
    allowlist = written["file"]["agents"]["main"]["allowlist"]
    assert [entry["pattern"] for entry in allowlist] == ["/usr/bin/ls"], "blank patterns are dropped"
    assert all(entry.get("id") for entry in allowlist), "entries get ids"
    assert "token" not in str(written["file"].get("socket", {}))

    stale = await call_error(admin, "exec.approvals.set", {"file": document, "baseHash": current["hash"]})
    assert (stale["code"], stale["reason"]) == (409, "CONFLICT")
    missing = await call_error(admin, "exec.approvals.set", {"file": document})
    assert missing["code"] == 400 and "base hash required" in missing["message"]
    bad = await call_error(admin, "exec.approvals.set", {"file": {"defaults": {"security": "yolo"}},
                                                         "baseHash": written["hash"]})
    assert bad["code"] == 400 and "/defaults/security" in bad["message"]
    assert (await admin.call("exec.approvals.get"))["hash"] == written["hash"]
