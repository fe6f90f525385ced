"""The exec-approvals policy document (auth-and-pairing.md §6.3), stored in the database.
Writes are guarded by `baseHash` (stale -> 409 CONFLICT) inside a row lock, so concurrent
writers on several processes cannot overwrite each other. The socket token is never returned."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

import orjson
from django.db import transaction

from gateway.protocol.errors import GatewayError, conflict
from gateway.protocol.events import now_ms

from .models import ExecApprovalPolicy

PATH = "db:default/exec-approvals"
SECURITY = {"deny", "allowlist", "full"}
ASK = {"off", "on-miss", "always"}
SETTING_VALUES = {"security": SECURITY, "ask": ASK, "askFallback": SECURITY}


def _hash(document: dict[str, Any] | None) -> str:
    # Sorted keys: PostgreSQL's jsonb does not keep key order, the hash must not depend on it.
    text = b"" if document is None else orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()


def _invalid(path: str, message: str) -> GatewayError:
    return GatewayError("INVALID_REQUEST", f"invalid exec approvals file: at {path}: {message}",
                        details={"errors": [{"path": path, "message": message}]})


def _settings(raw: Any, path: str, *, with_allowlist: bool) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _invalid(path, "must be an object")
    out: dict[str, Any] = {}
    for key, allowed in SETTING_VALUES.items():
        if raw.get(key) is not None:
            if raw[key] not in allowed:
                raise _invalid(f"{path}/{key}", f"must be one of {', '.join(sorted(allowed))}")
            out[key] = raw[key]
    if raw.get("autoAllowSkills") is not None:
        if not isinstance(raw["autoAllowSkills"], bool):
            raise _invalid(f"{path}/autoAllowSkills", "must be a boolean")
        out["autoAllowSkills"] = raw["autoAllowSkills"]
    if with_allowlist and raw.get("allowlist") is not None:
        if not isinstance(raw["allowlist"], list):
            raise _invalid(f"{path}/allowlist", "must be an array")
        entries = []
        for i, item in enumerate(raw["allowlist"]):
            entry = {"pattern": item} if isinstance(item, str) else item
            if not isinstance(entry, dict) or not isinstance(entry.get("pattern"), str):
                raise _invalid(f"{path}/allowlist/{i}", "must be a pattern string or {pattern}")
            if not entry["pattern"].strip():
                continue  # blank patterns are dropped
            entries.append({**{k: v for k, v in entry.items() if k in (
                "id", "pattern", "lastUsedAt", "lastUsedCommand", "lastResolvedPath")},
                "id": entry.get("id") or str(uuid.uuid4())})
        out["allowlist"] = entries
    return out


def normalize(file: Any) -> dict[str, Any]:
    if not isinstance(file, dict):
        raise _invalid("root", "must be an object")
    out: dict[str, Any] = {"version": 1}
    socket = file.get("socket")
    if isinstance(socket, dict) and isinstance(socket.get("path"), str) and socket["path"].strip():
        out["socket"] = {"path": socket["path"].strip()}
    if file.get("defaults") is not None:
        out["defaults"] = _settings(file["defaults"], "/defaults", with_allowlist=False)
    agents = file.get("agents")
    if agents is not None:
        if not isinstance(agents, dict):
            raise _invalid("/agents", "must be an object")
        normalized = {name: _settings(value, f"/agents/{name}", with_allowlist=True) for name, value in agents.items()}
        legacy = normalized.pop("default", None)
        if legacy:  # a legacy `default` agent is merged into `main`
            main = normalized.setdefault("main", {})
            for key, value in legacy.items():
                if key == "allowlist":
                    main["allowlist"] = main.get("allowlist", []) + value
                else:
                    main.setdefault(key, value)
        out["agents"] = normalized
    return out


def _public(row: ExecApprovalPolicy | None) -> dict[str, Any]:
    document = row.document if row is not None else None
    return {"path": PATH, "exists": row is not None, "hash": _hash(document),
            "file": dict(document) if document else {"version": 1}}


def get_policy() -> dict[str, Any]:
    return _public(ExecApprovalPolicy.objects.order_by("id").first())


@transaction.atomic
def set_policy(file: Any, base_hash: str | None) -> dict[str, Any]:
    row = ExecApprovalPolicy.objects.select_for_update().order_by("id").first()
    if row is not None:
        if not base_hash:
            raise GatewayError("INVALID_REQUEST",
                               "exec approvals base hash required; re-run exec.approvals.get and retry")
        if base_hash != _hash(row.document):
            raise conflict("exec approvals changed since last load; re-run exec.approvals.get and retry")
    document = normalize(file)
    if row is None:
        row = ExecApprovalPolicy(socket_token=secrets.token_urlsafe(24))
    if "socket" not in document and isinstance(row.document.get("socket"), dict):
        document["socket"] = row.document["socket"]  # kept unless supplied
    row.document = document
    row.updated_at_ms = now_ms()
    row.save()
    return _public(row)
