"""anima.mission.import (operations.md §4): a local "coherence protocol" directory, or one
Markdown file from an http(s) URL. Unlike ANIMA a missing source or a bad preset is an error,
never a quiet `ok`. Imported texts become memories and mission files (README D7)."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from django.db import transaction

from gateway.protocol.errors import invalid, unavailable

from . import services

PRESETS = ("auto", "codex", "openclaw", "claude")
PRESET_DIRS = {"codex": ".codex/coherence", "openclaw": ".openclaw/coherence", "claude": ".claude/coherence"}
FETCH_TIMEOUT_S = 15
MAX_FETCH_BYTES = 1024 * 1024


def _read(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return text if text.strip() else None


def _source_dir(source: str | None, preset: str) -> Path:
    if source and source.strip():
        where = Path(source.strip()).expanduser()
        if not where.is_dir():
            raise invalid(f"source not found: {source.strip()}")
        return where
    names = [preset] if preset != "auto" else list(PRESET_DIRS)
    for name in names:
        where = Path.home() / PRESET_DIRS[name]
        if where.is_dir():
            return where
    raise invalid(f"source not found: no coherence directory for preset {preset} "
                  f"(looked in {', '.join('~/' + PRESET_DIRS[n] for n in names)})")


@transaction.atomic
def import_directory(source: str | None, raw_preset: str | None) -> dict[str, Any]:
    preset = (raw_preset or "auto").strip().lower()
    if preset not in PRESETS:
        raise invalid(f"invalid preset: {raw_preset}")
    root = _source_dir(source, preset)
    counts = {"identityFiles": 0, "journalEntries": 0, "wishesImported": 0, "notesImported": 0,
              "archivedFiles": 0, "archivePath": None}
    identity = [t for t in (_read(root / "core" / "IDENTITY.md"), _read(root / "core" / "RELATIONSHIP.md")) if t]
    if identity:
        services.add_memory("semantic", "coherence-identity.md", "\n\n".join(identity))
        counts["identityFiles"] += len(identity)
    if values := _read(root / "core" / "VALUES.md"):
        services.add_memory("semantic", "coherence-values.md", values)
        counts["identityFiles"] += 1
    if life := _read(root / "personal" / "MY_LIFE.md"):
        services.add_memory("episodic", "coherence-my-life.md", life)
        counts["journalEntries"] += 1
    if wishes := _read(root / "personal" / "WISHES.md"):
        services.add_memory("semantic", "coherence-wishes.md", wishes)
        counts["wishesImported"] += 1
    for folder, label in (("notes", "note"), ("tasks", "tasks")):
        for path in sorted((root / folder).glob("*.md")) if (root / folder).is_dir() else []:
            if text := _read(path):
                services.add_memory("episodic", f"coherence-{label}-{path.name}", text)
                counts["notesImported"] += 1
    return {"ok": True, "imported": counts}


def import_url(url: str) -> dict[str, Any]:
    """One Markdown file into mission-control/<basename>; an unreachable URL is 503."""
    parts = urllib.parse.urlparse(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid("url must be an http(s) URL")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(parts.path).name).strip(".-") or "imported.md"
    if not name.endswith((".md", ".txt")):
        name += ".md"
    try:
        with urllib.request.urlopen(url.strip(), timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 (http(s) only)
            body = response.read(MAX_FETCH_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise unavailable(f"mission import failed: {url} answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise unavailable(f"mission import failed: {url} is unreachable: {getattr(exc, 'reason', exc)}") from None
    if len(body) > MAX_FETCH_BYTES:
        raise invalid(f"mission import failed: {url} is larger than {MAX_FETCH_BYTES} bytes")
    result = services.set_file(name, body.decode("utf-8", errors="replace"))
    return {"ok": True, "imported": {"identityFiles": 0, "journalEntries": 0, "wishesImported": 0, "notesImported": 0,
                                     "archivedFiles": 0, "archivePath": None, "missionFile": result["file"]["fileName"]}}
