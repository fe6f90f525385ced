"""agent (two-phase), agent.wait, agent.identity.get (chat-sessions-cron.md §3)."""

from __future__ import annotations

from typing import Annotated, Any

from asgiref.sync import sync_to_async
from pydantic import Field, StringConstraints

from gateway.chat.keys import canonical_key, main_key, normalize_agent_id
from gateway.models import Agent, Run, Session
from gateway.protocol.context import CallContext
from gateway.protocol.errors import GatewayError, invalid
from gateway.protocol.events import now_ms
from gateway.protocol.registry import READ, WRITE, Params, method
from gateway.runs import services as runs

from .chat import Attachment, check_attachments, sanitize

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
KNOWN_AGENTS = {"main"}


class AgentParams(Params):
    message: NonEmpty
    idempotency_key: NonEmpty
    agent_id: str | None = None
    session_key: str | None = None
    session_id: str | None = None
    to: str | None = None
    model: str | None = None
    thinking: str | None = None
    deliver: bool | None = None
    channel: str | None = None
    timeout: Annotated[int, Field(ge=0)] | None = None
    label: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    extra_system_prompt: str | None = None
    attachments: list[Attachment] | None = None


class AgentWaitParams(Params):
    run_id: NonEmpty
    timeout_ms: Annotated[int, Field(ge=0)] = 30_000


class IdentityParams(Params):
    agent_id: str | None = None
    session_key: str | None = None


def pick_session(params: AgentParams) -> str:
    if params.agent_id is not None and normalize_agent_id(params.agent_id) not in known_agents():
        raise invalid(f'invalid agent params: unknown agent id "{params.agent_id}"')
    if params.session_key:
        key = canonical_key(params.session_key)
        if params.agent_id and key.startswith("agent:") and key.split(":")[1] != normalize_agent_id(params.agent_id):
            raise invalid(f'invalid agent params: agent "{params.agent_id}" does not match session key agent '
                          f'"{key.split(":")[1]}"')
        return key
    if params.agent_id:
        return main_key(normalize_agent_id(params.agent_id))
    if params.session_id:
        session = Session.objects.filter(session_id=params.session_id).first() if _is_uuid(params.session_id) else None
        if session is None:
            raise invalid(f"No session found: {params.session_id}")
        return session.key
    raise invalid("Pass --to <E.164>, --session-id, or --agent to choose a session")


def _is_uuid(text: str) -> bool:
    import uuid

    try:
        uuid.UUID(text)
        return True
    except ValueError:
        return False


def known_agents() -> set[str]:
    try:
        from gateway.config import config_value
    except ImportError:
        return KNOWN_AGENTS
    listed = config_value("agents.list", None) or []
    return (KNOWN_AGENTS | {normalize_agent_id(a.get("id")) for a in listed if isinstance(a, dict) and a.get("id")}
            | set(Agent.objects.values_list("agent_id", flat=True)))  # agents.create (sync callers only)


def final_frame(run: Run) -> dict[str, Any]:
    """The second response of `agent`: ok with the result, or an error with its summary."""
    if run.status == Run.Status.OK:
        return {"runId": run.run_id, "status": "ok", "summary": "completed", "result": run.result or {}}
    summary = run.error or ("aborted" if run.status == Run.Status.ABORTED else run.status)
    raise GatewayError("UNAVAILABLE", summary, payload={"runId": run.run_id, "status": "error", "summary": summary})


@method("agent", scope=WRITE, params=AgentParams)
async def agent(ctx: CallContext, params: AgentParams) -> dict[str, Any]:
    check_attachments(params.attachments)
    message = sanitize(params.message)
    key = await sync_to_async(pick_session)(params)
    run_params: dict[str, Any] = {"thinking": params.thinking, "model": params.model,
                                  "extraSystemPrompt": params.extra_system_prompt, "connId": ctx.conn.conn_id}
    if params.timeout is not None:
        run_params["timeoutMs"] = params.timeout * 1000 or None  # 0: no timeout
    run, created = await ctx.runtime.runs.submit("agent", params.idempotency_key, key, message, run_params)
    if run.status in runs.TERMINAL:
        return final_frame(run)
    ctx.respond_early({"runId": run.run_id, "status": "accepted", "acceptedAt": run.created_at_ms})
    done = await ctx.runtime.runs.wait_done(run.run_id, 365 * 86400, kind="agent")
    assert done is not None
    return final_frame(done)


@method("agent.wait", scope=WRITE, params=AgentWaitParams)
async def agent_wait(ctx: CallContext, params: AgentWaitParams) -> dict[str, Any]:
    """Until the run ends or timeoutMs passes; unknown and aborted runs answer `timeout` (§3.2)."""
    run = await ctx.runtime.runs.wait_done(params.run_id, params.timeout_ms / 1000)
    if run is None or run.status in (Run.Status.ABORTED, Run.Status.TIMEOUT):
        return {"runId": params.run_id, "status": "timeout"}
    out: dict[str, Any] = {"runId": run.run_id, "status": "ok" if run.status == Run.Status.OK else "error",
                           "startedAt": run.started_at_ms, "endedAt": run.ended_at_ms}
    if run.status == Run.Status.ERROR:
        out["error"] = run.error
    return out


@method("agent.identity.get", scope=READ, params=IdentityParams)
async def agent_identity(ctx: CallContext, params: IdentityParams) -> dict[str, Any]:
    agent_id = normalize_agent_id(params.agent_id) if params.agent_id else None
    if params.session_key:
        key = canonical_key(params.session_key)
        key_agent = key.split(":")[1] if key.startswith("agent:") else "main"
        if agent_id and agent_id != key_agent:
            raise invalid(f'agent "{agent_id}" does not match session key agent "{key_agent}"')
        agent_id = key_agent
    agent_id = agent_id or "main"
    try:
        from gateway.config import config_value
    except ImportError:
        def config_value(path: str, default: Any) -> Any:
            return default
    name = str(config_value("ui.assistant.name", None) or "Assistant")[:50]
    avatar = config_value("ui.assistant.avatar", None) or "A"
    return {"agentId": agent_id, "name": name, "avatar": avatar, "ts": now_ms()}
