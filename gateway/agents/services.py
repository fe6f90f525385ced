"""Writes: create, update, delete agents and write their files. The RPC methods, the admin and
the wizard all call these (README D10)."""

from __future__ import annotations

import re
from typing import Any

from django.db import IntegrityError, transaction

from gateway.chat.catalog import PROVIDERS, split_ref
from gateway.chat.keys import normalize_agent_id
from gateway.models import Agent, AgentFile
from gateway.protocol.errors import conflict, invalid, not_found
from gateway.protocol.events import now_ms
from gateway.queries import DEFAULT_AGENT_ID

from . import queries

IDENTITY_FILE = "IDENTITY.md"


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _model(raw: str | None) -> str:
    """`provider/model` with a provider that has a backend (README D9); "" keeps the default."""
    value = (raw or "").strip()
    if not value:
        return ""
    provider, model = split_ref(value)
    if provider not in PROVIDERS or not model:
        raise invalid(f'invalid model "{value}" (use provider/model with provider one of: {", ".join(PROVIDERS)})')
    return f"{provider}/{model}"


def _append_identity(agent_id: str, lines: list[str], at: int) -> None:
    row = AgentFile.objects.select_for_update().filter(agent_id=agent_id, name=IDENTITY_FILE).first()
    text = (row.content if row else "").rstrip("\n")
    text = "\n".join(([text] if text else []) + lines) + "\n"
    write_file_row(agent_id, IDENTITY_FILE, text, at)


@transaction.atomic
def create_agent(name: str, workspace: str, *, emoji: str | None = None, avatar: str | None = None,
                 model: str | None = None) -> dict[str, Any]:
    """agents.create: id = the normalised name; `main` is reserved; a taken id is 409."""
    display = name.strip()
    if not display:
        raise invalid("name is required", details={"errors": [{"path": "/name", "message": "required"}]})
    if not re.search(r"[A-Za-z0-9]", display):
        raise invalid("name must contain a letter or a digit")
    place = workspace.strip()
    if not place:
        raise invalid("workspace is required", details={"errors": [{"path": "/workspace", "message": "required"}]})
    agent_id = normalize_agent_id(display)
    if agent_id == DEFAULT_AGENT_ID:
        raise invalid(f'"{DEFAULT_AGENT_ID}" is reserved')
    if agent_id in queries.config_agents():
        raise conflict(f'agent "{agent_id}" already exists')
    at = now_ms()
    identity = {k: v.strip() for k, v in (("emoji", emoji), ("avatar", avatar)) if v and v.strip()}
    try:
        with transaction.atomic():
            Agent.objects.create(agent_id=agent_id, name=display, workspace=place, model=_model(model),
                                 identity={"name": display, **identity}, created_at_ms=at, updated_at_ms=at)
    except IntegrityError:
        raise conflict(f'agent "{agent_id}" already exists') from None
    lines = [f"- Name: {_one_line(display)}"]
    lines += [f"- {label}: {_one_line(identity[key])}" for key, label in (("emoji", "Emoji"), ("avatar", "Avatar"))
              if key in identity]
    _append_identity(agent_id, lines, at)
    return {"ok": True, "agentId": agent_id, "name": display, "workspace": place}


@transaction.atomic
def update_agent(raw_id: str, *, name: str | None = None, workspace: str | None = None, model: str | None = None,
                 avatar: str | None = None) -> dict[str, Any]:
    """agents.update: only the fields given change. `main` gets a row of its own on its first update."""
    agent_id = normalize_agent_id(raw_id) if raw_id.strip() else ""
    row = Agent.objects.select_for_update().filter(agent_id=agent_id).first() if agent_id else None
    if row is None:
        if agent_id in queries.config_agents():
            raise invalid(f'agent "{agent_id}" is defined in the config document; change it with config.patch')
        if agent_id != DEFAULT_AGENT_ID:
            raise not_found(f'agent "{raw_id}" not found')
        at = now_ms()
        row = Agent(agent_id=agent_id, name="Main", workspace=queries.default_workspace(agent_id),
                    created_at_ms=at, updated_at_ms=at)
    at = now_ms()
    if name is not None:
        if not name.strip():
            raise invalid("name must not be empty")
        row.name = name.strip()
        row.identity = {**(row.identity or {}), "name": row.name}
    if workspace is not None:
        if not workspace.strip():
            raise invalid("workspace must not be empty")
        row.workspace = workspace.strip()
    if model is not None:
        row.model = _model(model)
    if avatar is not None and avatar.strip():
        row.identity = {**(row.identity or {}), "avatar": avatar.strip()}
    row.updated_at_ms = at
    row.save()
    if avatar is not None and avatar.strip():
        _append_identity(agent_id, [f"- Avatar: {_one_line(avatar)}"], at)
    return {"ok": True, "agentId": agent_id}


@transaction.atomic
def delete_agent(raw_id: str, *, delete_files: bool = True) -> dict[str, Any]:
    """agents.delete: `main` cannot go; files go with the agent unless deleteFiles is false."""
    agent_id = normalize_agent_id(raw_id) if raw_id.strip() else ""
    if agent_id == DEFAULT_AGENT_ID:
        raise invalid(f'"{DEFAULT_AGENT_ID}" cannot be deleted')
    deleted, _ = Agent.objects.filter(agent_id=agent_id).delete() if agent_id else (0, {})
    if not deleted:
        if agent_id in queries.config_agents():
            raise invalid(f'agent "{agent_id}" is defined in the config document; remove it with config.patch')
        raise not_found(f'agent "{raw_id}" not found')
    if delete_files:
        AgentFile.objects.filter(agent_id=agent_id).delete()
    # Channel bindings live in the config document (bindings[]); they are not changed here.
    return {"ok": True, "agentId": agent_id, "removedBindings": 0}


def write_file_row(agent_id: str, name: str, content: str, at: int) -> AgentFile:
    size = len(content.encode("utf-8"))
    row, _ = AgentFile.objects.update_or_create(agent_id=agent_id, name=name,
                                                defaults={"content": content, "size": size, "updated_at_ms": at})
    return row


@transaction.atomic
def set_file(raw_id: str, raw_name: str, content: str) -> dict[str, Any]:
    """agents.files.set: the whole file, at most 1 MiB of UTF-8."""
    agent_id, workspace = queries.require_agent(raw_id)
    name = queries.allowed_name(raw_name)
    try:
        size = len(content.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate escaped in the JSON text
        raise invalid("content is not valid UTF-8") from None
    if size > queries.MAX_FILE_BYTES:
        raise invalid(f"file too large (max {queries.MAX_FILE_BYTES} bytes)")
    row = write_file_row(agent_id, name, content, now_ms())
    return {"ok": True, "agentId": agent_id, "workspace": workspace,
            "file": queries.file_row(workspace, name, row, content=True)}
