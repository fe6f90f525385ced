"""skills.install and skills.update (operations.md §7). Installing copies a skill from a local
directory into the database. Installer recipes a skill declares (brew, node, go, uv, download)
all need the network and are answered 503: this gateway does not fetch software."""

from __future__ import annotations

import os
from typing import Any

from django.db import transaction

from gateway.config import services as config_services
from gateway.config.document import SENTINEL
from gateway.models import Skill
from gateway.protocol.errors import GatewayError, invalid, not_found, unavailable
from gateway.protocol.events import now_ms

from .manifest import SKILL_FILE, ManifestError, parse

MAX_SKILL_BYTES = 256 * 1024
NETWORK_KINDS = {"brew", "node", "go", "uv", "download"}


def _result(message: str, *, ok: bool = True) -> dict[str, Any]:
    return {"ok": ok, "message": message, "stdout": "", "stderr": "", "code": 0 if ok else None}


def read_skill_dir(path: str) -> tuple[str, str]:
    """(absolute directory, SKILL.md text); 400 for anything that is not a readable skill directory."""
    directory = os.path.abspath(os.path.expanduser(path))
    file = os.path.join(directory, SKILL_FILE)
    if not os.path.isdir(directory):
        raise invalid(f"skill directory not found: {path}")
    if not os.path.isfile(file):
        raise invalid(f"no {SKILL_FILE} in {path}")
    if os.path.getsize(file) > MAX_SKILL_BYTES:
        raise invalid(f"{SKILL_FILE} is larger than {MAX_SKILL_BYTES} bytes")
    try:
        with open(file, encoding="utf-8") as fh:
            return directory, fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise invalid(f"cannot read {SKILL_FILE}: {exc}") from None


@transaction.atomic
def install_from_path(path: str, name: str | None) -> dict[str, Any]:
    """Install (or reinstall) the skill in `path`; `name`, when given, must match its manifest."""
    directory, text = read_skill_dir(path)
    try:
        manifest = parse(text)
    except ManifestError as exc:
        raise invalid(str(exc)) from None
    if name and name.strip() != manifest.name:
        raise invalid(f"the skill in {path} is named {manifest.name!r}, not {name.strip()!r}")
    at = now_ms()
    skill_key = str(manifest.metadata.get("skillKey") or manifest.name)
    _, created = Skill.objects.update_or_create(name=manifest.name, defaults={
        "skill_key": skill_key, "description": manifest.description, "homepage": manifest.homepage,
        "metadata": manifest.metadata, "content": text, "source_path": directory, "updated_at_ms": at},
        create_defaults={"skill_key": skill_key, "description": manifest.description, "homepage": manifest.homepage,
                         "metadata": manifest.metadata, "content": text, "source_path": directory,
                         "installed_at_ms": at, "updated_at_ms": at})
    return {**_result(f"{'Installed' if created else 'Updated'} skill {manifest.name} from {directory}"),
            "skill": {"name": manifest.name, "skillKey": skill_key}}


def run_installer(name: str, install_id: str) -> dict[str, Any]:
    """A declared installer recipe: every kind fetches software from the network → 503."""
    skill = Skill.objects.filter(name=name).first()
    if skill is None:
        raise not_found(f"Skill not found: {name}")
    recipes = skill.metadata.get("install") if isinstance(skill.metadata.get("install"), list) else []
    recipe = next((r for i, r in enumerate(recipes) if isinstance(r, dict)
                   and str(r.get("id") or f"{r.get('kind')}-{i}") == install_id), None)
    if recipe is None:
        raise not_found(f"Installer not found: {install_id}")
    kind = str(recipe.get("kind") or "unknown")
    message = (f"{kind} installers need the network, which this gateway does not use to fetch software; "
               f"install the tool with your package manager, then check skills.status")
    raise unavailable(message, payload=_result(message, ok=False), details={"kind": kind})


def update_entry(skill_key: str, enabled: bool | None, api_key: str | None, env: dict[str, str] | None,
                 actor: str) -> dict[str, Any]:
    """Write `skills.entries.<skillKey>` through the config service (no baseHash asked of the caller)."""
    key = skill_key.strip()
    if not key or "." in key:
        raise invalid("skillKey must be a non-empty name without dots")
    for attempt in range(3):
        snapshot = config_services.load()
        current = config_services.value_at(snapshot, f"skills.entries.{key}")
        entry = dict(current) if isinstance(current, dict) else {}
        if enabled is not None:
            entry["enabled"] = enabled
        if api_key is not None:
            if api_key.strip():
                entry["apiKey"] = api_key.strip()
            else:
                entry.pop("apiKey", None)
        if env is not None:
            merged = dict(entry.get("env") or {})
            for name, value in env.items():
                if value.strip():
                    merged[name] = value
                else:
                    merged.pop(name, None)
            entry["env"] = merged
        try:
            base_hash = snapshot.hash if snapshot.exists else None
            config_services.set_key(f"skills.entries.{key}", entry, base_hash=base_hash, actor=actor,
                                    source="skills.update")
            break
        except GatewayError as exc:
            if exc.reason != "CONFLICT" or attempt == 2:
                raise
    shown = dict(entry)
    if "apiKey" in shown:
        shown["apiKey"] = SENTINEL
    return {"ok": True, "skillKey": key, "config": shown}
