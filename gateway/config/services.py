"""Reading and writing the config document (operations.md §2.2–§2.4, §3). Every writer — the
config.* methods, the Django admin, a management command — goes through `write()` (README D10):
baseHash check under a row lock, sentinels restored, validated, stored with a revision, and after
commit every gateway process is told to reload (README D13: live, no restart, no socket closed)."""

from __future__ import annotations

import copy
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from django.conf import settings
from django.db import IntegrityError, transaction

from gateway.models import ConfigDocument, ConfigRevision
from gateway.protocol.errors import GatewayError, conflict, invalid
from gateway.protocol.events import now_ms, publish_after_commit

from . import document as doc
from .defaults import effective
from .schema import issue, validate

log = logging.getLogger("gateway.config")

PATH = "db:default/config"
NAME = "default"
CHANGED = "gateway.config_changed"  # channel-layer message: every process reloads its copy

BASE_HASH_REQUIRED = "config base hash required; re-run config.get and retry"
BASE_HASH_STALE = "config changed since last load; re-run config.get and retry"

# One writer at a time within a process (operations.md §2.3 step 8); the row lock and the
# conditional update below do the same across processes.
_write_lock = threading.Lock()


@dataclass(frozen=True)
class Snapshot:
    """The stored document and what follows from it (operations.md §2.2), unredacted."""

    exists: bool
    raw: str | None
    parsed: dict[str, Any]      # the stored document, `${VAR}` references as written
    resolved: dict[str, Any]    # references substituted, no defaults
    config: dict[str, Any]      # resolved + environment values + runtime defaults (best effort when invalid)
    hash: str
    valid: bool
    issues: list[dict[str, str]] = field(default_factory=list)
    revision: int = 0
    updated_at_ms: int | None = None


def build_snapshot(raw: str | None, *, revision: int = 0, updated_at_ms: int | None = None) -> Snapshot:
    """Everything config.get reports, from the stored text."""
    parsed: Any = {}
    issues: list[dict[str, str]] = []
    if raw is not None:
        try:
            parsed = doc.parse(raw)
        except doc.DocumentError as exc:
            issues.append(issue((), exc.message))
    if not isinstance(parsed, dict):
        issues.append(issue((), "the config must be an object"))
        parsed = {}
    resolved, env_issues = doc.substitute(parsed, os.environ)
    issues += env_issues
    if not issues:
        issues += validate(resolved)
    return Snapshot(exists=raw is not None, raw=raw, parsed=parsed, resolved=resolved, config=effective(resolved),
                    hash=doc.content_hash(raw), valid=not issues, issues=issues, revision=revision,
                    updated_at_ms=updated_at_ms)


def _snapshot_of(row: ConfigDocument | None) -> Snapshot:
    if row is None:
        return build_snapshot(None)
    return build_snapshot(row.raw, revision=row.revision, updated_at_ms=row.updated_at_ms)


def load() -> Snapshot:
    """The current snapshot, straight from the database."""
    return _snapshot_of(ConfigDocument.objects.filter(name=NAME).first())


def stored_hash() -> str | None:
    """The current hash (None when there is no config): a cheap freshness check."""
    return ConfigDocument.objects.filter(name=NAME).values_list("hash", flat=True).first()


# --- what clients see ------------------------------------------------------------------------------------------

def public(snapshot: Snapshot) -> dict[str, Any]:
    """config.get's payload: the snapshot with every secret replaced by the sentinel (§2.4)."""
    base = {"path": PATH, "exists": snapshot.exists, "hash": snapshot.hash, "valid": snapshot.valid,
            "issues": list(snapshot.issues), "warnings": [], "legacyIssues": []}
    if not snapshot.valid:  # never an unredacted text of a document that failed to load
        return {**base, "raw": None, "parsed": None, "resolved": {}, "config": {}}
    secrets = doc.secrets_in(snapshot.parsed) | doc.secrets_in(snapshot.resolved) | doc.secrets_in(snapshot.config)
    raw = None if snapshot.raw is None else doc.redact_text(doc.serialize(doc.redact(snapshot.parsed)), secrets)
    return {**base, "raw": raw, "parsed": doc.redact(snapshot.parsed), "resolved": doc.redact(snapshot.resolved),
            "config": doc.redact(snapshot.config)}


def value_at(snapshot: Snapshot, path: str) -> Any:
    """The redacted effective value at a dot path (None when absent), for config.get {path}."""
    try:
        value = doc.get_path(snapshot.config, doc.split_path(path))
    except doc.DocumentError as exc:
        raise invalid(exc.message) from None
    if value is doc.MISSING:
        return None
    return doc.redact(value, tuple(int(p) if p.isdigit() else p for p in doc.split_path(path)))


# --- writing ------------------------------------------------------------------------------------------------------

Build = Callable[[Snapshot], Any]


def invalid_config(issues: list[dict[str, str]]) -> GatewayError:
    """400 naming each problem by its JSON pointer (README) and, in details.issues, ANIMA's dot path."""
    text = "; ".join(f"at {i['pointer'] if i['pointer'] != '/' else 'root'}: {i['message']}" for i in issues)
    return invalid(f"invalid config: {text}",
                   details={"issues": [{"path": i["path"], "message": i["message"]} for i in issues],
                            "errors": [{"path": i["pointer"], "message": i["message"]} for i in issues]})


def _locked_row() -> ConfigDocument | None:
    return ConfigDocument.objects.select_for_update().filter(name=NAME).first()


def write(build: Build, *, base_hash: str | None, actor: str, source: str,
          require_valid: bool = False) -> tuple[Snapshot, list[str]]:
    """Check `base_hash`, build the new document from the current snapshot, store it. Returns the
    new snapshot and the changed paths. Raises GatewayError (400, 409)."""
    with _write_lock:
        for attempt in range(3):
            try:
                return _write_once(build, base_hash=base_hash, actor=actor, source=source,
                                   require_valid=require_valid)
            except IntegrityError:  # two processes created the first config at once: check again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


@transaction.atomic
def _write_once(build: Build, *, base_hash: str | None, actor: str, source: str,
                require_valid: bool) -> tuple[Snapshot, list[str]]:
    row = _locked_row()
    current = _snapshot_of(row)
    if row is not None:
        if not (base_hash or "").strip():
            raise invalid(BASE_HASH_REQUIRED)
        if base_hash.strip() != row.hash:
            raise conflict(BASE_HASH_STALE, details={"hash": row.hash})
    if require_valid and not current.valid:
        raise invalid("invalid config; fix before patching", details={"issues": current.issues})
    try:
        new = build(current)
        if not isinstance(new, dict):
            raise doc.DocumentError("the config must be an object")
        new = doc.restore_sentinels(new, current.config)
    except doc.DocumentError as exc:
        raise invalid(exc.message) from None
    if current.valid:
        new = doc.restore_env_refs(new, current.parsed, current.resolved)
        new = doc.strip_echoed_defaults(new, current.parsed, current.config)
    resolved, problems = doc.substitute(new, os.environ)
    problems = problems or validate(resolved)
    if problems:
        raise invalid_config(problems)
    changed = [p for p in doc.changed_paths(current.parsed, new) if p != "meta" and not p.startswith("meta.")]
    new = _stamp(new)
    raw = doc.serialize(new)
    new_hash = doc.content_hash(raw)
    at = now_ms()
    revision = ConfigRevision.objects.create(created_at_ms=at, actor=actor[:200], source=source[:30],
                                             previous_hash=current.hash, hash=new_hash, document=new,
                                             changed_paths=changed)
    if row is None:
        row = ConfigDocument.objects.create(name=NAME, raw=raw, document=new, hash=new_hash,
                                            revision=revision.pk, updated_at_ms=at)
    else:
        # Conditional on the hash we checked: a writer the row lock does not stop (SQLite) still loses.
        updated = ConfigDocument.objects.filter(pk=row.pk, hash=row.hash).update(
            raw=raw, document=new, hash=new_hash, revision=revision.pk, updated_at_ms=at)
        if not updated:
            raise conflict(BASE_HASH_STALE)
    snapshot = build_snapshot(raw, revision=revision.pk, updated_at_ms=at)
    _after_commit(snapshot, changed)
    log.info("config written by %s (%s): %s", actor, source, ", ".join(changed) or "no change")
    return snapshot, changed


def _stamp(document: dict[str, Any]) -> dict[str, Any]:
    """meta.lastTouchedVersion / lastTouchedAt (operations.md §2.3 step 4)."""
    out = copy.deepcopy(document)
    meta = out.get("meta") if isinstance(out.get("meta"), dict) else {}
    out["meta"] = {**meta, "lastTouchedVersion": settings.ANIMA_VERSION,
                   "lastTouchedAt": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")}
    return out


def _after_commit(snapshot: Snapshot, changed: list[str]) -> None:
    from .live import CACHE

    transaction.on_commit(lambda: CACHE.store(snapshot))
    publish_after_commit({"type": CHANGED, "hash": snapshot.hash, "revision": snapshot.revision,
                          "changedPaths": changed})


# --- the write forms -----------------------------------------------------------------------------------------------

def parse_object(raw: str, what: str = "config") -> dict[str, Any]:
    try:
        value = doc.parse(raw)
    except doc.DocumentError as exc:
        raise invalid(exc.message) from None
    if not isinstance(value, dict):
        raise invalid(f"{what} must be an object")
    return value


def replace(raw_or_document: str | dict[str, Any], *, base_hash: str | None, actor: str,
            source: str) -> tuple[Snapshot, list[str]]:
    """The whole document (config.set {raw}, config.apply, the admin form)."""
    new = parse_object(raw_or_document) if isinstance(raw_or_document, str) else raw_or_document
    return write(lambda current: copy.deepcopy(new), base_hash=base_hash, actor=actor, source=source)


def set_key(path: str, value: Any, *, base_hash: str | None, actor: str, source: str = "config.set"
            ) -> tuple[Snapshot, list[str]]:
    """One key (config.set {path, value}); None deletes it."""
    try:
        parts = doc.split_path(path)
    except doc.DocumentError as exc:
        raise invalid(exc.message) from None

    def build(current: Snapshot) -> dict[str, Any]:
        # On the stored document (not the effective one): `${VAR}` references and absent defaults stay so.
        if value is None:
            return doc.delete_path(current.parsed, parts)
        return doc.set_path(current.parsed, parts, value)

    return write(build, base_hash=base_hash, actor=actor, source=source)


def patch(merge: dict[str, Any], *, base_hash: str | None, actor: str, source: str = "config.patch"
          ) -> tuple[Snapshot, list[str]]:
    """A JSON merge patch on the effective config; lists of objects with ids merge by id."""
    return write(lambda current: doc.merge_patch(current.config, merge), base_hash=base_hash, actor=actor,
                 source=source, require_valid=True)
