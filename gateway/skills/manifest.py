"""SKILL.md front matter: `name`, `description`, `homepage`, and a `metadata` JSON object whose
`anima` (or `noxsoft`) block gives always, skillKey, primaryEnv, emoji, os, requires and install.
A small reader (no YAML dependency): `key: value` lines, values may be quoted; a value that opens
a JSON object or array runs until its brackets balance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import json5

SKILL_FILE = "SKILL.md"


class ManifestError(ValueError):
    pass


@dataclass
class Manifest:
    name: str
    description: str
    homepage: str
    metadata: dict[str, Any] = field(default_factory=dict)


def front_matter(text: str) -> dict[str, Any]:
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        raise ManifestError("SKILL.md has no front matter (--- block)")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise ManifestError("SKILL.md front matter is not closed (---)") from None
    out: dict[str, Any] = {}
    i = 1
    while i < end:
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#") or ":" not in line or line[0].isspace():
            continue
        key, _, value = line.partition(":")
        value = value.strip()
        if value[:1] in ("{", "["):
            while _depth(value) > 0 and i < end:
                value += "\n" + lines[i]
                i += 1
            try:
                out[key.strip()] = json5.loads(value)
            except ValueError as exc:
                raise ManifestError(f"SKILL.md front matter: {key.strip()} is not valid JSON: {exc}") from None
        else:
            out[key.strip()] = _scalar(value)
    return out


def _depth(text: str) -> int:
    depth, quote, escaped = 0, "", False
    for ch in text:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
    return depth


def _scalar(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parse(text: str) -> Manifest:
    data = front_matter(text)
    name = str(data.get("name") or "").strip()
    if not name:
        raise ManifestError("SKILL.md front matter needs a name")
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    block = meta.get("anima") if isinstance(meta.get("anima"), dict) else meta.get("noxsoft")
    return Manifest(name=name, description=str(data.get("description") or ""),
                    homepage=str(data.get("homepage") or ""), metadata=block if isinstance(block, dict) else {})
