"""Exec approvals (auth-and-pairing.md §6.1-6.2): a request to run a command waits for a human
decision. Records live in the database, so any process can resolve a request made on another;
a `gateway.approval_settled` message through the channel layer wakes the waiters everywhere.
An approval nobody decides expires with decision null (not an error, README D2)."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.db import transaction

from gateway.protocol.errors import GatewayError, conflict, not_found
from gateway.protocol.events import APPROVALS, emit_after_commit, now_ms, publish_after_commit

from .models import ExecApproval

if TYPE_CHECKING:
    from gateway.runtime import GatewayRuntime

DEFAULT_TIMEOUT_MS = 120_000
SETTLED = "gateway.approval_settled"
REQUEST_FIELDS = {"command": "command", "cwd": "cwd", "host": "host", "security": "security", "ask": "ask",
                  "agentId": "agent_id", "resolvedPath": "resolved_path", "sessionKey": "session_key"}
DECISIONS = {c.value for c in ExecApproval.Decision}


def approval_payload(a: ExecApproval) -> dict[str, Any]:
    return {"id": a.id, "request": {wire: getattr(a, attr) for wire, attr in REQUEST_FIELDS.items()},
            "createdAtMs": a.created_at_ms, "expiresAtMs": a.expires_at_ms}


def decision_payload(a: ExecApproval) -> dict[str, Any]:
    return {"id": a.id, "decision": a.decision, "createdAtMs": a.created_at_ms, "expiresAtMs": a.expires_at_ms}


@transaction.atomic
def create_approval(request: dict[str, Any], *, approval_id: str | None, timeout_ms: int,
                    requested_by: dict[str, str]) -> ExecApproval:
    approval_id = approval_id or str(uuid.uuid4())
    if ExecApproval.objects.select_for_update().filter(id=approval_id).exists():
        raise conflict("approval id already pending", details={"id": approval_id})
    now = now_ms()
    approval = ExecApproval.objects.create(
        id=approval_id, created_at_ms=now, expires_at_ms=now + timeout_ms,
        requested_by_conn_id=requested_by.get("connId", ""), requested_by_device_id=requested_by.get("deviceId", ""),
        requested_by_client_id=requested_by.get("clientId", ""),
        **{attr: request.get(wire) for wire, attr in REQUEST_FIELDS.items()})
    emit_after_commit("exec.approval.requested", approval_payload(approval), APPROVALS)
    return approval


@transaction.atomic
def resolve_approval(approval_id: str, decision: str, *, resolved_by: str | None) -> ExecApproval:
    """Record a decision. Shared by the RPC and the Django admin (README D10)."""
    if decision not in DECISIONS:
        raise GatewayError("INVALID_REQUEST", "invalid decision", details={"decision": decision})
    approval = ExecApproval.objects.select_for_update().filter(id=approval_id).first()
    if approval is None:
        raise not_found("unknown approval id", details={"id": approval_id})
    now = now_ms()
    if not approval.settled and now >= approval.expires_at_ms:
        _settle(approval, None, None, now)
    if approval.settled:
        raise conflict("approval already resolved" if approval.decision else "approval expired",
                       details={"id": approval_id})
    _settle(approval, decision, resolved_by, now)
    emit_after_commit("exec.approval.resolved", {"id": approval.id, "decision": decision, "resolvedBy": resolved_by,
                                                 "ts": now}, APPROVALS)
    return approval


def _settle(approval: ExecApproval, decision: str | None, resolved_by: str | None, now: int) -> None:
    approval.settled = True
    approval.decision = decision
    approval.resolved_by = resolved_by
    approval.resolved_at_ms = now
    approval.save(update_fields=["settled", "decision", "resolved_by", "resolved_at_ms"])
    publish_after_commit({"type": SETTLED, "id": approval.id})


@transaction.atomic
def expire_if_due(approval_id: str) -> ExecApproval | None:
    approval = ExecApproval.objects.select_for_update().filter(id=approval_id).first()
    if approval is not None and not approval.settled and now_ms() >= approval.expires_at_ms:
        _settle(approval, None, None, now_ms())
    return approval


def find_approval(approval_id: str) -> ExecApproval | None:
    return ExecApproval.objects.filter(id=approval_id).first()


class ApprovalWaiters:
    """Per process: futures of requests waiting for a decision, woken by SETTLED messages."""

    def __init__(self, runtime: GatewayRuntime):
        self.waiting: dict[str, set[asyncio.Future]] = {}
        runtime.hub.on(SETTLED, self.on_settled)

    def on_settled(self, message: dict) -> None:
        for future in self.waiting.pop(message.get("id", ""), set()):
            if not future.done():
                future.set_result(None)

    async def wait(self, approval_id: str) -> ExecApproval:
        """Until the approval is decided or expires (expiring it when its time has come)."""
        while True:
            future = asyncio.get_running_loop().create_future()
            self.waiting.setdefault(approval_id, set()).add(future)  # before reading: no missed wake-up
            try:
                approval = await sync_to_async(expire_if_due)(approval_id)
                if approval is None:
                    raise not_found("approval expired or not found", details={"id": approval_id})
                if approval.settled:
                    return approval
                remaining = max(0.0, (approval.expires_at_ms - now_ms()) / 1000) + 0.02
                try:
                    await asyncio.wait_for(asyncio.shield(future), remaining)
                except asyncio.TimeoutError:
                    pass
            finally:
                waiters = self.waiting.get(approval_id)
                if waiters is not None:
                    waiters.discard(future)
                    if not waiters:
                        self.waiting.pop(approval_id, None)
