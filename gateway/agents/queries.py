"""Reads: which agents exist, what agents.list shows, an agent's files."""

from __future__ import annotations

from typing import Any

from gateway.chat.keys import configured_main_key, default_agent_id, global_scope, normalize_agent_id
from gateway.config import config_value
from gateway.models import Agent, AgentFile
from gateway.protocol.errors import invalid, not_found
from gateway.queries import DEFAULT_AGENT_ID

# The seven bootstrap files in listing order, then the memory file (either spelling).
BOOTSTRAP_FILES = ("AGENTS.md", "SOUL.md", "TOOLS.md", "IDENTITY.md", "USER.md", "HEARTBEAT.md", "BOOTSTRAP.md")
MEMORY_FILES = ("MEMORY.md", "memory.md")
ALLOWED_FILES = BOOTSTRAP_FILES + MEMORY_FILES
MAX_FILE_BYTES = 1024 * 1024
DEFAULT_WORKSPACE_ROOT = "db:default/agents"


def config_agents() -> dict[str, dict[str, Any]]:
    """Entries of the config document's agents.list, by normalised id."""
    entries = config_value("agents.list", None)
    out: dict[str, dict[str, Any]] = {}
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry["id"].strip():
                out.setdefault(normalize_agent_id(entry["id"]), entry)
    return out


def default_workspace(agent_id: str) -> str:
    configured = config_value("agents.defaults.workspace", None)
    if agent_id == DEFAULT_AGENT_ID and isinstance(configured, str) and configured.strip():
        return configured.strip()
    return f"{DEFAULT_WORKSPACE_ROOT}/{agent_id}"


def workspace_of(agent_id: str) -> str | None:
    """The agent's workspace, or None when no such agent exists."""
    row = Agent.objects.filter(agent_id=agent_id).first()
    if row is not None:
        return row.workspace
    entry = config_agents().get(agent_id)
    if entry is not None:
        workspace = entry.get("workspace")
        return workspace.strip() if isinstance(workspace, str) and workspace.strip() else default_workspace(agent_id)
    if agent_id == DEFAULT_AGENT_ID:
        return default_workspace(agent_id)
    return None


def exists(agent_id: str) -> bool:
    return workspace_of(agent_id) is not None


def _identity(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    out = {k: raw[k] for k in ("name", "theme", "emoji", "avatar") if isinstance(raw.get(k), str) and raw[k]}
    avatar = out.get("avatar", "")
    if avatar.startswith(("http://", "https://", "data:")):
        out["avatarUrl"] = avatar
    return out or None


def list_agents() -> dict[str, Any]:
    """agents.list: the default agent first, the others by id."""
    listed: dict[str, dict[str, Any]] = {DEFAULT_AGENT_ID: {"id": DEFAULT_AGENT_ID}}
    for agent_id, entry in config_agents().items():
        item: dict[str, Any] = {"id": agent_id}
        if isinstance(entry.get("name"), str) and entry["name"]:
            item["name"] = entry["name"]
        if (identity := _identity(entry.get("identity"))) is not None:
            item["identity"] = identity
        listed[agent_id] = item
    for row in Agent.objects.all():
        item = {"id": row.agent_id, "name": row.name, "workspace": row.workspace}
        if row.model:
            item["model"] = row.model
        if (identity := _identity(row.identity)) is not None:
            item["identity"] = identity
        listed[row.agent_id] = item
    default_id = default_agent_id()
    if default_id not in listed:
        listed[default_id] = {"id": default_id}
    rest = sorted(k for k in listed if k != default_id)
    return {"defaultId": default_id, "mainKey": configured_main_key(),
            "scope": "global" if global_scope() else "per-sender",
            "agents": [listed[default_id]] + [listed[k] for k in rest]}


# --- files ---------------------------------------------------------------------------------------------------

def require_agent(raw_id: str) -> tuple[str, str]:
    """(agentId, workspace); 404 for an agent that does not exist."""
    agent_id = normalize_agent_id(raw_id) if raw_id.strip() else ""
    workspace = workspace_of(agent_id) if agent_id else None
    if workspace is None:
        raise not_found("unknown agent id", details={"agentId": raw_id})
    return agent_id, workspace


def allowed_name(raw: str) -> str:
    name = raw.strip()
    if name not in ALLOWED_FILES:
        raise invalid(f'unsupported file "{raw}"', details={"allowed": list(ALLOWED_FILES)})
    return name


def file_row(workspace: str, name: str, row: AgentFile | None, *, content: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "path": f"{workspace}/{name}"}
    if row is None:
        return {**out, "missing": True}
    out.update({"missing": False, "size": row.size, "updatedAtMs": row.updated_at_ms})
    if content:
        out["content"] = row.content
    return out


def list_files(raw_id: str) -> dict[str, Any]:
    agent_id, workspace = require_agent(raw_id)
    rows = {f.name: f for f in AgentFile.objects.filter(agent_id=agent_id)}
    memory = next((n for n in MEMORY_FILES if n in rows), MEMORY_FILES[0])
    files = [file_row(workspace, n, rows.get(n), content=False) for n in (*BOOTSTRAP_FILES, memory)]
    return {"agentId": agent_id, "workspace": workspace, "files": files}


def get_file(raw_id: str, raw_name: str) -> dict[str, Any]:
    agent_id, workspace = require_agent(raw_id)
    name = allowed_name(raw_name)
    row = AgentFile.objects.filter(agent_id=agent_id, name=name).first()
    return {"agentId": agent_id, "workspace": workspace, "file": file_row(workspace, name, row, content=True)}
