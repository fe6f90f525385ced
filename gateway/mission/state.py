"""The mission state document: its defaults and the normalisation of anima.mission.patch
(operations.md §4). Pure functions; no database."""

from __future__ import annotations

import copy
import math
from datetime import datetime, timezone
from typing import Any

from gateway.protocol.errors import invalid

COLLECTIONS = ("goals", "features", "people")
REMOVE_KEYS = {"goals": "goalIdsToRemove", "features": "featureIdsToRemove", "people": "personIdsToRemove"}
WORKING_MODES = ("read", "write")
ACTIVITY_MODES = ("active", "idle", "sleep")
MINUTE_FIELDS = ("heartbeatMinutes", "focusBlockMinutes", "checkpointIntervalMinutes", "contractTargetMinutes")
AFFECT_FIELDS = ("joy", "frustration", "curiosity", "confidence", "care", "fatigue")
AUTO_TOGGLES = ("workingMode", "speech", "voiceWake", "heartbeat", "providers", "missionRepo", "missionState",
                "memory", "rawConfig")


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def default_state() -> dict[str, Any]:
    now = iso_now()
    return {
        "version": 1,
        "workingMode": "write",
        "activityMode": "active",
        "repo": {},
        "speech": {"recognition": "browser", "autoSpeak": False, "continuous": True, "lang": "en-US",
                   "rate": 1, "pitch": 1},
        "goals": [{"id": "keep-anima-coherent", "title": "Keep ANIMA coherent", "status": "active",
                   "priority": "high", "updatedAt": now}],
        "features": [{"id": "anima-6-foundation", "title": "ANIMA 6 foundation", "status": "in-progress",
                      "risk": "medium", "testStatus": "unknown", "lastTouchedAt": now}],
        "people": [{"id": "operator", "name": "Operator", "relationship": "operator", "trust": 1}],
        "chronos": {"heartbeatMinutes": 30, "focusBlockMinutes": 45, "checkpointIntervalMinutes": 15,
                    "contractTargetMinutes": 45, "contractElapsedMinutes": 0, "checkpointCount": 0,
                    "driftMinutes": -45, "updatedAt": now},
        "affect": {"joy": 0.6, "frustration": 0.1, "curiosity": 0.9, "confidence": 0.6, "care": 0.9,
                   "fatigue": 0.2, "updatedAt": now},
        "autoToggle": {name: name in ("heartbeat", "missionState", "memory") for name in AUTO_TOGGLES},
    }


def with_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored document completed with the defaults of anything it lacks."""
    out = default_state()
    for key, value in (stored or {}).items():
        if isinstance(out.get(key), dict) and isinstance(value, dict) and key not in ("repo",):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _trimmed(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        return {k: _trimmed(v) for k, v in value.items()}
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise invalid(f"{where} must be a number", details={"errors": [{"path": "/patch/" + where.replace(".", "/"),
                                                                          "message": "expected a number"}]})
    return value


def _clamp01(value: Any, where: str) -> float:
    return min(1.0, max(0.0, float(_number(value, where))))


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{where} must be an object", details={"errors": [{"path": f"/patch/{where}",
                                                                          "message": "expected an object"}]})
    return value


def _items(value: Any, name: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(i, dict) and isinstance(i.get("id"), str)
                                              and i["id"].strip() for i in value):
        raise invalid(f"{name} must be an array of objects with an id",
                      details={"errors": [{"path": f"/patch/{name}", "message": "expected [{id, …}]"}]})
    return value


def _ids(value: Any, name: str) -> set[str]:
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise invalid(f"{name} must be an array of strings",
                      details={"errors": [{"path": f"/patch/{name}", "message": "expected [string]"}]})
    return {i.strip() for i in value}


def _normalise_item(name: str, item: dict[str, Any], now: str) -> dict[str, Any]:
    item = _trimmed(item)
    if name == "people" and "trust" in item:
        item["trust"] = _clamp01(item["trust"], "people.trust")
    stamp = "lastTouchedAt" if name == "features" else "updatedAt"
    if name != "people" and not item.get(stamp):
        item[stamp] = now
    return item


def apply_patch(state: dict[str, Any], patch: Any) -> dict[str, Any]:
    """anima.mission.patch: the new state (the argument is not changed)."""
    if not isinstance(patch, dict):
        raise invalid("patch object required", details={"errors": [{"path": "/patch", "message": "expected an object"}]})
    out = copy.deepcopy(state)
    now = iso_now()
    if "workingMode" in patch:
        mode = patch["workingMode"]
        if not isinstance(mode, str) or mode.strip().lower() not in WORKING_MODES:
            raise invalid('workingMode must be "read" or "write"')
        out["workingMode"] = mode.strip().lower()
    for key in ("repo", "speech"):
        if key in patch:
            out[key] = {**out.get(key, {}), **_trimmed(_object(patch[key], key))}
    replace = patch.get("replaceCollections") or []
    if not isinstance(replace, list) or any(r not in COLLECTIONS for r in replace):
        raise invalid(f"replaceCollections must name some of: {', '.join(COLLECTIONS)}")
    for name in COLLECTIONS:
        current = list(out.get(name) or [])
        if name in patch:
            incoming = [_normalise_item(name, i, now) for i in _items(patch[name], name)]
            if name in replace:
                current = incoming
            else:
                index = {i.get("id"): n for n, i in enumerate(current)}
                for item in incoming:
                    if item["id"] in index:
                        current[index[item["id"]]] = {**current[index[item["id"]]], **item}
                    else:
                        index[item["id"]] = len(current)
                        current.append(item)
        if REMOVE_KEYS[name] in patch:
            gone = _ids(patch[REMOVE_KEYS[name]], REMOVE_KEYS[name])
            current = [i for i in current if i.get("id") not in gone]
        out[name] = current
    if "chronos" in patch:
        chronos = {**out.get("chronos", {}), **_trimmed(_object(patch["chronos"], "chronos"))}
        for key in MINUTE_FIELDS:
            if key in chronos:
                chronos[key] = max(1, math.floor(_number(chronos[key], f"chronos.{key}")))
        if "driftMinutes" not in patch["chronos"]:
            chronos["driftMinutes"] = (chronos.get("contractElapsedMinutes") or 0) - chronos.get("contractTargetMinutes", 45)
        if "updatedAt" not in patch["chronos"]:
            chronos["updatedAt"] = now
        out["chronos"] = chronos
    if "affect" in patch:
        affect = {**out.get("affect", {}), **_object(patch["affect"], "affect")}
        for key in AFFECT_FIELDS:
            if key in affect:
                affect[key] = _clamp01(affect[key], f"affect.{key}")
        if "updatedAt" not in patch["affect"]:
            affect["updatedAt"] = now
        out["affect"] = affect
    if "autoToggle" in patch:
        toggles = _object(patch["autoToggle"], "autoToggle")
        if any(not isinstance(v, bool) for v in toggles.values()):
            raise invalid("autoToggle values must be booleans")
        out["autoToggle"] = {**out.get("autoToggle", {}), **toggles}
    return out
