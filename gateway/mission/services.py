"""Mission control, memory and working-mode writes and reads (operations.md §4). One code path
for the RPC methods and the admin (README D10)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from gateway.models import MemoryEntry, MissionFile, MissionState
from gateway.protocol.errors import invalid
from gateway.protocol.events import now_ms

from . import state as mission_state

DIRECTORY = "db:default/mission-control"
STATE_PATH = f"{DIRECTORY}/state"
DEFAULT_FILES = ("README.md", "self-directives.md", "orchestration-board.md", "inbox.md", "outbox.md",
                 "context-map.md")
FILE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
DEFAULT_CONTENT = {
    "README.md": "# Mission control\n\nShared notes between the operator and the agent.\n",
    "self-directives.md": "# Self-directives\n",
    "orchestration-board.md": "# Orchestration board\n",
    "inbox.md": "# Inbox\n",
    "outbox.md": "# Outbox\n",
    "context-map.md": "# Context map\n",
}


# --- scaffold and state ------------------------------------------------------------------------------------

@transaction.atomic
def ensure_scaffold() -> dict[str, Any]:
    """The default files and the state row, created when missing (every mission call does this)."""
    at = now_ms()
    present = set(MissionFile.objects.filter(file_name__in=DEFAULT_FILES).values_list("file_name", flat=True))
    for name in DEFAULT_FILES:
        if name not in present:
            MissionFile.objects.get_or_create(file_name=name, defaults={
                "content": DEFAULT_CONTENT[name], "created_at_ms": at, "updated_at_ms": at})
    row, _ = MissionState.objects.get_or_create(pk=1, defaults={"state": mission_state.default_state(),
                                                                "updated_at_ms": at})
    return mission_state.with_defaults(row.state)


@transaction.atomic
def update_state(change: Any) -> dict[str, Any]:
    """Apply `change(state) -> state` under the row lock and store the result."""
    ensure_scaffold()
    row = MissionState.objects.select_for_update().get(pk=1)
    new = change(mission_state.with_defaults(row.state))
    row.state, row.updated_at_ms = new, now_ms()
    row.save(update_fields=["state", "updated_at_ms"])
    return new


def patch_state(patch: Any) -> dict[str, Any]:
    """anima.mission.patch."""
    return {"ok": True, "state": update_state(lambda s: mission_state.apply_patch(s, patch))}


# --- files --------------------------------------------------------------------------------------------------

def _title(name: str, content: str) -> str:
    for line in content.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip() or name
    return name


def file_dict(row: MissionFile) -> dict[str, Any]:
    return {"id": row.file_name, "fileName": row.file_name, "title": _title(row.file_name, row.content),
            "path": f"{DIRECTORY}/{row.file_name}", "content": row.content,
            "size": len(row.content.encode("utf-8", "surrogatepass")), "updatedAt": row.updated_at_ms}


def file_name(raw: str | None) -> str:
    name = (raw or "").strip()
    if not name:
        raise invalid("fileName is required", details={"errors": [{"path": "/fileName", "message": "required"}]})
    if not FILE_NAME.match(name) or ".." in name:
        raise invalid("invalid mission-control file name", details={"fileName": raw})
    return name


@transaction.atomic
def set_file(raw_name: str | None, content: str) -> dict[str, Any]:
    """anima.mission.set: write (overwrite) one file."""
    name = file_name(raw_name)
    ensure_scaffold()
    at = now_ms()
    row, created = MissionFile.objects.get_or_create(file_name=name, defaults={
        "content": content, "created_at_ms": at, "updated_at_ms": at})
    if not created:
        row.content, row.updated_at_ms = content, at
        row.save(update_fields=["content", "updated_at_ms"])
    return {"ok": True, "file": file_dict(row)}


def mission() -> dict[str, Any]:
    """anima.mission.get."""
    current = ensure_scaffold()
    rows = {r.file_name: r for r in MissionFile.objects.all()}
    others = sorted((r for n, r in rows.items() if n not in DEFAULT_FILES), key=lambda r: -r.updated_at_ms)
    files = [file_dict(rows[n]) for n in DEFAULT_FILES if n in rows] + [file_dict(r) for r in others]
    return {"directory": DIRECTORY, "statePath": STATE_PATH, "state": current,
            "brainGraph": {"nodes": [], "edges": []},
            "trustGraph": {"path": "db:default/mission-control/trust-graph", "people": current.get("people", [])},
            "files": files, "innerWorld": [], "importantHistory": []}


# --- connect-repo ----------------------------------------------------------------------------------------------

def workspace_dir() -> Path:
    return Path(settings.STATE_DIR) / "workspace"


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=15)


def _set_remote(url: str) -> tuple[bool, str | None]:
    """Point `origin` of the workspace's git work tree at `url` (no clone, no network)."""
    where = workspace_dir()
    try:
        if not where.is_dir() or _git(["rev-parse", "--is-inside-work-tree"], where).returncode != 0:
            return False, f"no git work tree at {where}"
        done = _git(["remote", "set-url", "origin", url], where)
        if done.returncode != 0:
            done = _git(["remote", "add", "origin", url], where)
        if done.returncode != 0:
            return False, (done.stderr or done.stdout).strip() or f"git exited with {done.returncode}"
        return True, None
    except (OSError, subprocess.SubprocessError) as exc:
        return False, str(exc)


def connect_repo(raw_url: str | None, branch: str | None, provider: str | None) -> dict[str, Any]:
    """anima.mission.connect-repo: record the repo in the state; set the workspace's git remote."""
    url = (raw_url or "").strip()
    if not url:
        raise invalid("url is required", details={"errors": [{"path": "/url", "message": "required"}]})
    kind = (provider or "").strip().lower()
    if kind not in ("github", "gitlab", "custom"):
        kind = "gitlab" if "gitlab" in url else "github" if "github" in url else "custom"
    configured, error = _set_remote(url)
    repo: dict[str, Any] = {"provider": kind, "url": url, "preferredTransport": "ssh" if "@" in url else "https",
                            "remoteName": "origin", "connectedAt": mission_state.iso_now(),
                            "remoteConfigured": configured}
    if branch and branch.strip():
        repo["branch"] = branch.strip()
    if error:
        repo["lastError"] = error
    update_state(lambda s: {**s, "repo": repo})
    return {"ok": True, "repo": repo}


# --- working mode -----------------------------------------------------------------------------------------------

MODES = mission_state.WORKING_MODES + mission_state.ACTIVITY_MODES
MODE_ERROR = 'mode must be one of: "read", "write", "active", "idle", "sleep"'


def set_working_mode(raw: str | None) -> dict[str, Any]:
    """anima.runtime.set-working-mode: read/write switch the main session's exec policy (ANIMA);
    active/idle/sleep are the seed's activity modes, only recorded (sleep does not pause the
    heartbeat runner)."""
    from gateway.chat.catalog import default_model_ref
    from gateway.chat.keys import default_agent_id, main_session_key
    from gateway.chat.sessions import patch_session

    mode = (raw or "").strip().lower()
    if mode not in MODES:
        raise invalid(MODE_ERROR, details={"errors": [{"path": "/mode", "message": MODE_ERROR}]})
    if mode in mission_state.ACTIVITY_MODES:
        update_state(lambda s: {**s, "activityMode": mode})
        return {"ok": True, "mode": mode}
    read = mode == "read"
    policy = {"execHost": "gateway", "execSecurity": "deny" if read else "full",
              "execAsk": "off" if read else "on-miss", "elevatedLevel": "off" if read else "ask"}
    with transaction.atomic():
        patched = patch_session(main_session_key(), policy)
        update_state(lambda s: {**s, "workingMode": mode})
    provider, model = patched["resolved"]["modelProvider"], patched["resolved"]["model"]
    if not provider:
        provider, model = default_model_ref(default_agent_id())
    return {"ok": True, "mode": mode, **policy, "modelProvider": provider, "model": model}


# --- memory -------------------------------------------------------------------------------------------------------

KINDS = tuple(MemoryEntry.Kind.values)
KIND_ERROR = 'kind must be one of: "episodic", "semantic", "procedural"'
LIMIT_DEFAULT, LIMIT_MAX = 120, 200


def _excerpt(content: str, query: str) -> str:
    if query:
        at = content.lower().find(query.lower())
        if at >= 0:
            return re.sub(r"\s+", " ", content[max(0, at - 120):at + len(query) + 180]).strip()
    line = next((ln.strip() for ln in content.splitlines() if ln.strip() and not ln.strip().startswith("#")), "")
    return line[:220]


def memory_list(raw_kind: str | None, query: str | None, limit: float | None) -> dict[str, Any]:
    """anima.memory.list: newest first, filtered by a case-insensitive substring of the content."""
    kind = (raw_kind or "").strip().lower()
    if kind not in KINDS:
        raise invalid(KIND_ERROR, details={"errors": [{"path": "/kind", "message": KIND_ERROR}]})
    count = LIMIT_DEFAULT if limit is None else min(LIMIT_MAX, max(1, int(limit // 1)))
    rows = MemoryEntry.objects.filter(kind=kind).exclude(content="")
    text = (query or "").strip()
    if text:
        rows = rows.filter(content__icontains=text)
    entries = []
    for row in rows.order_by("-updated_at_ms", "-id")[:count]:
        path = f"db:default/memory/{kind}/{row.pk}-{row.name}"
        entries.append({"id": path, "name": row.name, "path": path, "updatedAt": row.updated_at_ms,
                        "excerpt": _excerpt(row.content, text), "content": row.content})
    return {"kind": kind, "entries": entries}


def add_memory(kind: str, name: str, content: str) -> MemoryEntry:
    """Store one memory (mission import, the admin)."""
    at = now_ms()
    return MemoryEntry.objects.create(kind=kind, name=name[:200], content=content, created_at_ms=at, updated_at_ms=at)
