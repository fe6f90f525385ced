"""Node methods: the node registry, invoke round trip and gateway-owned node pairing
(auth-and-pairing.md §5). Thin: the work is in pairing.live and pairing.services."""

from __future__ import annotations

from typing import Annotated, Any

from asgiref.sync import sync_to_async
from pydantic import Field

from gateway.protocol.context import CallContext
from gateway.protocol.errors import invalid, not_found, unavailable
from gateway.protocol.events import now_ms
from gateway.protocol.frames import loads
from gateway.protocol.registry import NODE, PAIRING, READ, WRITE, Params, method

from gateway.queries import MAIN_SESSION_KEY
from gateway.services import enqueue_system_event

from .. import queries, services
from ..node_policy import platform_id, refusal
from .common import NonEmpty, actor
from .devices import RequestIdParams

# --- nodes (auth-and-pairing.md §5) ------------------------------------------------------------

class NodePairRequestParams(Params):
    node_id: NonEmpty
    display_name: str | None = None
    platform: str | None = None
    version: str | None = None
    core_version: str | None = None
    ui_version: str | None = None
    device_family: str | None = None
    model_identifier: str | None = None
    caps: list[str] | None = None
    commands: list[str] | None = None
    permissions: dict[str, bool] | None = None
    remote_ip: str | None = None
    silent: bool | None = None


class NodeVerifyParams(Params):
    node_id: NonEmpty
    token: str


class NodeRenameParams(Params):
    node_id: NonEmpty
    display_name: str


class NodeIdParams(Params):
    node_id: NonEmpty


class NodeInvokeParams(Params):
    node_id: str
    command: str
    params: Any = None
    timeout_ms: Annotated[int, Field(ge=0)] = 30_000
    idempotency_key: NonEmpty


class NodeInvokeResultParams(Params):
    id: NonEmpty
    node_id: NonEmpty
    ok: bool
    payload: Any = None
    payload_json: Any = Field(None, alias="payloadJSON")
    error: Any = None


class NodeEventParams(Params):
    event: NonEmpty
    payload: Any = None
    payload_json: str | None = Field(None, alias="payloadJSON")


@method("node.pair.request", scope=PAIRING, params=NodePairRequestParams)
async def node_pair_request(ctx: CallContext, params: NodePairRequestParams) -> dict[str, Any]:
    fields = {"node_id": params.node_id, "display_name": (params.display_name or "").strip(),
              "platform": params.platform or "", "version": params.version or "",
              "core_version": params.core_version or "", "ui_version": params.ui_version or "",
              "device_family": params.device_family or "", "model_identifier": params.model_identifier or "",
              "caps": list(params.caps or []), "commands": list(params.commands or []),
              "permissions": dict(params.permissions or {}), "remote_ip": params.remote_ip or "",
              "silent": bool(params.silent)}
    request, created = await sync_to_async(services.request_node_pairing)(fields)
    return {"status": "pending", "request": queries.node_request_payload(request), "created": created}


@method("node.pair.list", scope=PAIRING)
async def node_pair_list(ctx: CallContext, params: Params) -> dict[str, Any]:
    return await sync_to_async(queries.node_pairing_listing)()


@method("node.pair.approve", scope=PAIRING, params=RequestIdParams)
async def node_pair_approve(ctx: CallContext, params: RequestIdParams) -> dict[str, Any]:
    node, token = await sync_to_async(services.approve_node_pairing)(params.request_id, resolved_by=actor(ctx))
    # the only time the node token is shown (D5)
    return {"requestId": params.request_id, "node": {**queries.paired_node_payload(node), "token": token}}


@method("node.pair.reject", scope=PAIRING, params=RequestIdParams)
async def node_pair_reject(ctx: CallContext, params: RequestIdParams) -> dict[str, Any]:
    request = await sync_to_async(services.reject_node_pairing)(params.request_id, resolved_by=actor(ctx))
    return {"requestId": str(request.request_id), "nodeId": request.node_id}


@method("node.pair.verify", scope=PAIRING, params=NodeVerifyParams)
async def node_pair_verify(ctx: CallContext, params: NodeVerifyParams) -> dict[str, Any]:
    node = await sync_to_async(services.verify_node_token)(params.node_id, params.token)
    return {"ok": True, "node": queries.paired_node_payload(node)} if node else {"ok": False}


@method("node.rename", scope=PAIRING, params=NodeRenameParams)
async def node_rename(ctx: CallContext, params: NodeRenameParams) -> dict[str, Any]:
    node = await sync_to_async(services.rename_node)(params.node_id, params.display_name)
    return {"nodeId": node.node_id, "displayName": node.display_name}


def node_entries(live: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """node.list rows: paired nodes and live sessions; live values win (§5.4)."""
    paired = queries.paired_nodes()
    rows = []
    for node_id in set(paired) | set(live):
        row: dict[str, Any] = {"caps": [], "commands": []}
        row.update(paired.get(node_id, {}))
        row.update({k: v for k, v in live.get(node_id, {}).items() if v is not None and k != "connId"})
        row.update({"nodeId": node_id, "paired": node_id in paired, "connected": node_id in live})
        rows.append(row)
    rows.sort(key=lambda r: (not r["connected"], str(r.get("displayName") or r["nodeId"]).lower(), r["nodeId"]))
    return rows


@method("node.list", scope=READ)
async def node_list(ctx: CallContext, params: Params) -> dict[str, Any]:
    rows = await sync_to_async(node_entries)(ctx.runtime.nodes.live())
    return {"ts": now_ms(), "nodes": rows}


@method("node.describe", scope=READ, params=NodeIdParams)
async def node_describe(ctx: CallContext, params: NodeIdParams) -> dict[str, Any]:
    rows = await sync_to_async(node_entries)(ctx.runtime.nodes.live())
    row = next((r for r in rows if r["nodeId"] == params.node_id), None)
    if row is None:
        raise not_found("unknown nodeId", details={"nodeId": params.node_id})
    return {**row, "ts": now_ms()}


async def invoke_node(ctx: CallContext, node_id: str, command: str, params: Any, timeout_ms: int,
                      idempotency_key: str | None, *, check_policy: bool = True) -> dict[str, Any]:
    live = ctx.runtime.nodes.live().get(node_id)
    if live is None:
        if await sync_to_async(queries.node_is_known)(node_id):
            raise unavailable("node not connected", details={"code": "NOT_CONNECTED", "nodeId": node_id})
        raise not_found("unknown nodeId", details={"nodeId": node_id})
    if check_policy:
        why = refusal(command, live.get("commands") or [], platform_id(live.get("platform"), live.get("deviceFamily")))
        if why:
            raise invalid("node command not allowed", details={"reason": why, "command": command})
    return await ctx.runtime.nodes.invoke(node_id, command, params, timeout_ms, idempotency_key)


@method("node.invoke", scope=WRITE, params=NodeInvokeParams)
async def node_invoke(ctx: CallContext, params: NodeInvokeParams) -> dict[str, Any]:
    node_id, command = params.node_id.strip(), params.command.strip()
    if not node_id or not command:
        raise invalid("nodeId and command required")
    if command.startswith("system.execApprovals."):
        raise invalid("node.invoke does not allow system.execApprovals.*; use exec.approvals.node.*",
                      details={"command": command})
    forwarded = params.params
    if command == "system.run":
        forwarded = await sync_to_async(bind_system_run)(ctx, params.params)
    return await invoke_node(ctx, node_id, command, forwarded, params.timeout_ms, params.idempotency_key)


@method("node.invoke.result", scope=NODE, params=NodeInvokeResultParams)
async def node_invoke_result(ctx: CallContext, params: NodeInvokeResultParams) -> dict[str, Any]:
    result: dict[str, Any] = {"ok": params.ok}
    if isinstance(params.payload_json, str):
        result["payloadJSON"] = params.payload_json
    elif params.payload_json is not None:  # a non-string payloadJSON is moved into payload (§5.4)
        result["payload"] = params.payload_json
    if params.payload is not None:
        result["payload"] = params.payload
    if isinstance(params.error, dict):
        result["error"] = {k: params.error.get(k) for k in ("code", "message") if params.error.get(k) is not None}
    return await ctx.runtime.nodes.accept_result(ctx.conn, params.id, params.node_id, result)


EXEC_EVENTS = {"exec.started": "started", "exec.finished": "finished", "exec.denied": "denied"}
MAX_TEXT = 20_000


def exec_event_text(node_id: str, event: str, data: dict[str, Any]) -> str:
    parts = [f"Node {node_id}: exec {EXEC_EVENTS[event]}"]
    if data.get("command"):
        parts.append(f"command {str(data['command'])[:500]}")
    if data.get("exitCode") is not None:
        parts.append(f"exit {data['exitCode']}")
    if data.get("timedOut"):
        parts.append("timed out")
    if data.get("reason"):
        parts.append(f"reason {str(data['reason'])[:200]}")
    return " · ".join(parts)


@method("node.event", scope=NODE, params=NodeEventParams)
async def node_event(ctx: CallContext, params: NodeEventParams) -> dict[str, Any]:
    """From nodes only; the node id is the caller's own. exec.* events queue a system event for
    the session's next turn; events that start agent runs take effect once runs exist; unknown
    events are accepted and ignored (§5.4)."""
    data: Any = params.payload
    if params.payload_json is not None:
        try:
            data = loads(params.payload_json)
        except ValueError:
            raise invalid("invalid node.event params: payloadJSON is not JSON") from None
    data = data if isinstance(data, dict) else {}
    if params.event in EXEC_EVENTS:
        session_key = data.get("sessionKey") if isinstance(data.get("sessionKey"), str) else None
        text = exec_event_text(ctx.conn.node_id or "", params.event, data)
        await sync_to_async(enqueue_system_event)(text, session_key or MAIN_SESSION_KEY)
    elif params.event in ("voice.transcript", "agent.request"):
        text = data.get("text") if params.event == "voice.transcript" else data.get("message")
        if not isinstance(text, str) or not text.strip():
            raise invalid(f"invalid node.event params: {params.event} needs non-empty text")
        if len(text) > MAX_TEXT:
            raise invalid(f"invalid node.event params: text longer than {MAX_TEXT} characters")
    return {"ok": True}


@method("skills.bins", scope=NODE)
async def skills_bins(ctx: CallContext, params: Params) -> dict[str, Any]:
    """Executables the installed skills need (operations.md §7)."""
    from gateway.skills.queries import bins

    return {"bins": await sync_to_async(bins)()}


# --- system.run approval binding (§6.4) ---------------------------------------------------------

SYSTEM_RUN_KEYS = ("command", "rawCommand", "cwd", "env", "timeoutMs", "needsScreenRecording", "agentId",
                   "sessionKey", "runId")


def bind_system_run(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """Forward only the known keys; approval flags only when backed by a live approval record
    made by the same device (or connection) for the same command."""
    from ..approvals import find_approval

    params = raw if isinstance(raw, dict) else {}
    out = {k: params[k] for k in SYSTEM_RUN_KEYS if k in params}
    if "rawCommand" in params:
        argv = params.get("command")
        if not isinstance(argv, list) or not argv:
            raise invalid("rawCommand requires params.command", details={"code": "MISSING_COMMAND"})
        if " ".join(str(a) for a in argv) != params["rawCommand"]:
            raise invalid("rawCommand does not match command", details={"code": "RAW_COMMAND_MISMATCH"})
    wants = params.get("approved") is True or params.get("approvalDecision") in ("allow-once", "allow-always")
    if not wants:
        return out
    run_id = params.get("runId")
    if not isinstance(run_id, str) or not run_id:
        raise invalid("runId required for an approved system.run", details={"code": "MISSING_RUN_ID"})
    approval = find_approval(run_id)
    if approval is None:
        raise invalid("unknown approval id", details={"code": "UNKNOWN_APPROVAL_ID"})
    if now_ms() > approval.expires_at_ms and approval.decision is None:
        raise invalid("approval expired", details={"code": "APPROVAL_EXPIRED"})
    if approval.requested_by_device_id:
        if approval.requested_by_device_id != ctx.conn.device_id:
            raise invalid("approval id not valid for this device", details={"code": "APPROVAL_DEVICE_MISMATCH"})
    elif approval.requested_by_conn_id != ctx.conn.conn_id:
        raise invalid("approval id not valid for this client", details={"code": "APPROVAL_CLIENT_MISMATCH"})
    command_text = params.get("rawCommand") or (" ".join(str(a) for a in params["command"])
                                                if isinstance(params.get("command"), list) else params.get("command"))
    if (approval.host != "node" or approval.command != command_text or approval.cwd != params.get("cwd")
            or approval.agent_id != params.get("agentId") or approval.session_key != params.get("sessionKey")):
        raise invalid("approval does not match this request", details={"code": "APPROVAL_REQUEST_MISMATCH"})
    if approval.decision in ("allow-once", "allow-always"):
        out.update({"approved": True, "approvalDecision": approval.decision})  # never escalated by the caller
        return out
    raise invalid("approval required", details={"code": "APPROVAL_REQUIRED"})
