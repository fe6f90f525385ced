"""Exec approvals (auth-and-pairing.md §6.2-6.3): requests, decisions, and the policy document."""

from __future__ import annotations

from typing import Annotated, Any

from asgiref.sync import sync_to_async
from pydantic import Field

from gateway.protocol.context import CallContext
from gateway.protocol.errors import invalid
from gateway.protocol.registry import ADMIN, APPROVALS, Params, method

from .. import approval_policy, approvals
from .common import NonEmpty
from .nodes import invoke_node

# --- exec approvals (§6.2-6.3) ------------------------------------------------------------------

OptionalText = str | None


class ApprovalRequestParams(Params):
    id: str | None = None
    command: NonEmpty
    cwd: OptionalText = None
    host: OptionalText = None
    security: OptionalText = None
    ask: OptionalText = None
    agent_id: OptionalText = None
    resolved_path: OptionalText = None
    session_key: OptionalText = None
    timeout_ms: Annotated[int, Field(ge=1)] = approvals.DEFAULT_TIMEOUT_MS
    two_phase: bool = False


class ApprovalIdParams(Params):
    id: Any = None


class ApprovalResolveParams(Params):
    id: NonEmpty
    decision: str


class PolicySetParams(Params):
    file: dict[str, Any]
    base_hash: str | None = None


class NodePolicyGetParams(Params):
    node_id: NonEmpty


class NodePolicySetParams(Params):
    node_id: NonEmpty
    file: dict[str, Any]
    base_hash: str | None = None


@method("exec.approval.request", scope=APPROVALS, params=ApprovalRequestParams)
async def approval_request(ctx: CallContext, params: ApprovalRequestParams) -> dict[str, Any]:
    request = {"command": params.command, "cwd": params.cwd, "host": params.host, "security": params.security,
               "ask": params.ask, "agentId": params.agent_id, "resolvedPath": params.resolved_path,
               "sessionKey": params.session_key}
    requested_by = {"connId": ctx.conn.conn_id, "deviceId": ctx.conn.device_id or "",
                    "clientId": ctx.conn.client.get("id", "")}
    record = await sync_to_async(approvals.create_approval)(
        request, approval_id=(params.id or "").strip() or None, timeout_ms=params.timeout_ms,
        requested_by=requested_by)
    if params.two_phase:
        ctx.respond_early({"status": "accepted", "id": record.id, "createdAtMs": record.created_at_ms,
                           "expiresAtMs": record.expires_at_ms})
    decided = await ctx.runtime.approvals.wait(record.id)
    return approvals.decision_payload(decided)


@method("exec.approval.waitDecision", scope=APPROVALS, params=ApprovalIdParams)
async def approval_wait(ctx: CallContext, params: ApprovalIdParams) -> dict[str, Any]:
    approval_id = params.id.strip() if isinstance(params.id, str) else ""
    if not approval_id:
        raise invalid("id is required")
    decided = await ctx.runtime.approvals.wait(approval_id)
    return approvals.decision_payload(decided)


@method("exec.approval.resolve", scope=APPROVALS, params=ApprovalResolveParams)
async def approval_resolve(ctx: CallContext, params: ApprovalResolveParams) -> dict[str, Any]:
    client = ctx.conn.client
    await sync_to_async(approvals.resolve_approval)(params.id, params.decision,
                                                    resolved_by=client.get("displayName") or client.get("id"))
    return {"ok": True}


@method("exec.approvals.get", scope=ADMIN)
async def approvals_policy_get(ctx: CallContext, params: Params) -> dict[str, Any]:
    return await sync_to_async(approval_policy.get_policy)()


@method("exec.approvals.set", scope=ADMIN, params=PolicySetParams)
async def approvals_policy_set(ctx: CallContext, params: PolicySetParams) -> dict[str, Any]:
    return await sync_to_async(approval_policy.set_policy)(params.file, params.base_hash)


@method("exec.approvals.node.get", scope=ADMIN, params=NodePolicyGetParams)
async def approvals_node_get(ctx: CallContext, params: NodePolicyGetParams) -> Any:
    result = await invoke_node(ctx, params.node_id, "system.execApprovals.get", {}, 30_000, None,
                               check_policy=False)
    return result["payload"]


@method("exec.approvals.node.set", scope=ADMIN, params=NodePolicySetParams)
async def approvals_node_set(ctx: CallContext, params: NodePolicySetParams) -> Any:
    result = await invoke_node(ctx, params.node_id, "system.execApprovals.set",
                               {"file": params.file, "baseHash": params.base_hash}, 30_000, None, check_policy=False)
    return result["payload"]
