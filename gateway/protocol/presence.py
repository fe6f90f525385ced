"""Presence (protocol.md §5.4) and the stateVersion counters (§4.5), kept in the Django cache so
that every gateway process lists the same clients (README D7).

Each process writes only its own slot (`presence:slot:<n>`, a dict of the entries it owns), so
no two processes ever overwrite each other's entries; a listing merges the live slots."""

from __future__ import annotations

import platform
import socket
import sys
from typing import Any

from django.core.cache import cache

from .events import now_ms

TTL_MS = 5 * 60 * 1000
MAX_ENTRIES = 200
SLOT_TTL_S = 6 * 60          # a dead process's slot disappears after this
SLOTS_SCANNED = 64           # the newest slots read by a listing
PRESENCE, HEALTH = "presence", "health"
MAX_TEXT = 2000   # presence is in every hello-ok: bound what one entry may hold
MAX_FIELD = 200

# Cache calls below are synchronous on purpose: LocMem is in-process, and a loopback Redis
# round trip is far cheaper than the thread hop Django's async cache methods would add.


def _primary_ipv4() -> str | None:
    try:
        ip = socket.gethostbyname(socket.gethostname())
        return ip if not ip.startswith("127.") else None
    except OSError:
        return None


class StateVersions:
    """Two shared counters that start at 1 and only go up."""

    KEYS = {PRESENCE: "state:presence", HEALTH: "state:health"}

    def ensure(self) -> None:
        for key in self.KEYS.values():
            cache.add(key, 1, timeout=None)

    def bump(self, which: str) -> None:
        key = self.KEYS[which]
        try:
            cache.incr(key)
        except ValueError:  # evicted: start again above any value a client may hold
            cache.add(key, now_ms() // 1000, timeout=None)

    def current(self) -> dict[str, int]:
        got = cache.get_many(list(self.KEYS.values()))
        return {name: int(got.get(key) or 1) for name, key in self.KEYS.items()}


class ProcessSlots:
    """Per-process views shared through the cache: process n writes only `<name>:slot:<n>`;
    readers merge the newest slots. No two processes ever write the same key."""

    def __init__(self) -> None:
        self.slot = 0

    def claim(self) -> int:
        cache.add("gateway:slots", 0, timeout=None)
        self.slot = cache.incr("gateway:slots")
        return self.slot

    def publish(self, name: str, data: dict[str, Any]) -> None:
        cache.set(f"{name}:slot:{self.slot}", data, timeout=SLOT_TTL_S)

    def gather(self, name: str) -> list[dict[str, Any]]:
        top = int(cache.get("gateway:slots") or self.slot or 1)
        keys = [f"{name}:slot:{n}" for n in range(max(1, top - SLOTS_SCANNED + 1), top + 1)]
        return [v for v in cache.get_many(keys).values() if v]


class PresenceStore:
    def __init__(self, version: str, slots: ProcessSlots):
        self.version = version
        self.host = socket.gethostname()
        self.ip = _primary_ipv4()
        self.slots = slots
        self.local: dict[str, dict[str, Any]] = {}

    def _flush(self) -> None:
        cutoff = now_ms() - TTL_MS
        self.local = {k: v for k, v in self.local.items() if v.get("ts", 0) >= cutoff}
        self.slots.publish("presence", self.local)

    def refresh(self) -> None:
        """Keep this process's slot alive (called from the background loop)."""
        self._flush()

    def self_entry(self) -> dict[str, Any]:
        ip = f" ({self.ip})" if self.ip else ""
        entry = {"host": self.host, "version": self.version, "platform": sys.platform,
                 "deviceFamily": platform.system(), "modelIdentifier": platform.machine(), "mode": "gateway",
                 "reason": "self", "ts": now_ms(),
                 "text": f"Gateway: {self.host}{ip} · app {self.version} · mode gateway · reason self"}
        if self.ip:
            entry["ip"] = self.ip
        return entry

    def upsert(self, key: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Merge `fields` into the entry under `key` (roles/scopes are unioned); ts = now."""
        key = key.strip().lower()
        entry = dict(self.local.get(key) or {})
        fields = {k: (v[:MAX_TEXT] if k == "text" else v[:MAX_FIELD]) if isinstance(v, str) else v
                  for k, v in fields.items()}
        for name in ("roles", "scopes"):
            if name in fields:
                fields = {**fields, name: sorted(set(entry.get(name) or []) | set(fields[name] or []))}
        entry.update({k: v for k, v in fields.items() if v is not None})
        entry["ts"] = now_ms()
        self.local[key] = entry
        self._flush()
        return entry

    def listing(self) -> list[dict[str, Any]]:
        """Every live entry, newest first, the gateway's own entry included."""
        merged: dict[str, dict[str, Any]] = {}
        for slot in self.slots.gather("presence"):
            for key, entry in slot.items():
                if key not in merged or entry.get("ts", 0) > merged[key].get("ts", 0):
                    merged[key] = entry
        for key, entry in self.local.items():  # our own view is always current
            merged[key] = entry
        cutoff = now_ms() - TTL_MS
        entries = [e for e in merged.values() if e.get("ts", 0) >= cutoff]
        entries.append(self.self_entry())
        entries.sort(key=lambda e: e.get("ts", 0), reverse=True)
        return entries[:MAX_ENTRIES]
