"""skills.status and skills.bins (operations.md §7): each installed skill with its requirements
checked against this machine (bins on PATH, env, config keys, OS) and its config entry."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from django.conf import settings

from gateway.chat.keys import normalize_agent_id
from gateway.queries import DEFAULT_AGENT_ID
from gateway.config import config_value
from gateway.models import Skill

MANAGED_SKILLS_DIR = "db:default/skills"  # skills live in the database (README D7)
INSTALL_PREFERENCE = ("uv", "node", "brew", "go")


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value if isinstance(v, (str, int))] if isinstance(value, list) else []


def this_os() -> str:
    return {"darwin": "darwin", "win32": "win32"}.get(sys.platform, "linux" if sys.platform.startswith("linux")
                                                       else sys.platform)


def agent_known(agent_id: str) -> bool:
    """`main` or an entry of config agents.list (agents are config entries, chat-sessions-cron.md §6)."""
    wanted = normalize_agent_id(agent_id)
    entries = config_value("agents.list", []) or []
    listed = {normalize_agent_id(str(a.get("id") or "")) for a in entries if isinstance(a, dict)}
    return wanted == DEFAULT_AGENT_ID or wanted in listed


def workspace_dir() -> str:
    return str(config_value("agents.defaults.workspace") or (settings.STATE_DIR / "workspace"))


def install_options(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The preferred installer (uv > node > brew > go; brew first with preferBrew), or all of them
    when they are all downloads; none when the OS does not match."""
    recipes = [r for r in meta.get("install") or [] if isinstance(r, dict)] if isinstance(meta.get("install"),
                                                                                            list) else []
    options = [{"id": str(r.get("id") or f"{r.get('kind')}-{i}"), "kind": str(r.get("kind") or ""),
                "label": str(r.get("label") or r.get("kind") or ""), "bins": _strings(r.get("bins")),
                "os": _strings(r.get("os"))} for i, r in enumerate(recipes)]
    options = [o for o in options if not o["os"] or this_os() in o["os"]]
    if not options or all(o["kind"] == "download" for o in options):
        return [{k: o[k] for k in ("id", "kind", "label", "bins")} for o in options]
    brew_first = bool(config_value("skills.install.preferBrew")) and shutil.which("brew") is not None
    order = (("brew",) if brew_first else ()) + INSTALL_PREFERENCE
    ranked = sorted(options, key=lambda o: order.index(o["kind"]) if o["kind"] in order else len(order))
    return [{k: ranked[0][k] for k in ("id", "kind", "label", "bins")}]


def skill_status(skill: Skill) -> dict[str, Any]:
    meta = skill.metadata or {}
    key = skill.skill_key or skill.name
    entry = config_value(f"skills.entries.{key}", {}) if "." not in key else {}
    entry = entry if isinstance(entry, dict) else {}
    req = meta.get("requires") if isinstance(meta.get("requires"), dict) else {}
    requirements = {"bins": _strings(req.get("bins")), "anyBins": _strings(req.get("anyBins")),
                    "env": _strings(req.get("env")), "config": _strings(req.get("config")),
                    "os": _strings(meta.get("os"))}
    primary_env = meta.get("primaryEnv") if isinstance(meta.get("primaryEnv"), str) else None
    entry_env = entry.get("env") if isinstance(entry.get("env"), dict) else {}

    def env_ok(name: str) -> bool:
        return bool(os.environ.get(name) or entry_env.get(name) or (name == primary_env and entry.get("apiKey")))

    missing = {"bins": [b for b in requirements["bins"] if not shutil.which(b)],
               "anyBins": (requirements["anyBins"] if requirements["anyBins"]
                           and not any(shutil.which(b) for b in requirements["anyBins"]) else []),
               "env": [e for e in requirements["env"] if not env_ok(e)],
               "config": [c for c in requirements["config"] if not config_value(c)],
               "os": requirements["os"] if requirements["os"] and this_os() not in requirements["os"] else []}
    disabled = entry.get("enabled") is False
    out: dict[str, Any] = {
        "name": skill.name, "description": skill.description, "source": "anima-managed", "bundled": False,
        "filePath": f"{MANAGED_SKILLS_DIR}/{skill.name}/SKILL.md", "baseDir": f"{MANAGED_SKILLS_DIR}/{skill.name}",
        "skillKey": key, "always": meta.get("always") is True, "disabled": disabled,
        "blockedByAllowlist": False,  # the allowlist (skills.allowBundled) applies to bundled skills: none here
        "eligible": not disabled and not any(missing.values()), "requirements": requirements, "missing": missing,
        "configChecks": [{"path": c, "satisfied": bool(config_value(c))} for c in requirements["config"]],
        "install": install_options(meta), "installedAt": skill.installed_at_ms, "sourcePath": skill.source_path}
    for field_name, value in (("primaryEnv", primary_env), ("emoji", meta.get("emoji")),
                              ("homepage", skill.homepage or meta.get("homepage"))):
        if value:
            out[field_name] = value
    return out


def status() -> dict[str, Any]:
    return {"workspaceDir": workspace_dir(), "managedSkillsDir": MANAGED_SKILLS_DIR,
            "skills": [skill_status(s) for s in Skill.objects.all()]}


def bins() -> list[str]:
    """Every executable the installed skills name (requires.bins, anyBins, installer bins)."""
    found: set[str] = set()
    for meta in Skill.objects.values_list("metadata", flat=True):
        req = meta.get("requires") if isinstance(meta, dict) and isinstance(meta.get("requires"), dict) else {}
        found.update(_strings(req.get("bins")) + _strings(req.get("anyBins")))
        for recipe in (meta.get("install") if isinstance(meta, dict) and isinstance(meta.get("install"), list) else []):
            if isinstance(recipe, dict):
                found.update(_strings(recipe.get("bins")))
    return sorted(b for b in found if b)
