"""The provider key store (chat-sessions-cron.md §4.2): an ordered list of providers
`{id, name, apiKey, enabled, priority}` plus `activeProvider`, `autoRotation` and
`rotationStrategy`, in the database (ProviderKey rows, one ProviderSettings row). Keys are
encrypted at rest and leave this module only masked, except through `keys_for`, which hands
a backend the key it is about to use.

A stored entry serves the backend of a provider when its id is that provider (`openai`,
`anthropic`, `ollama`, …) or starts with it and a colon (`openai:work`, `openai:spare`): several
keys for one provider, tried active first, then by ascending priority."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from gateway.models import ProviderKey, ProviderSettings
from gateway.protocol.errors import conflict, invalid

from .crypto import decrypt, encrypt, is_masked, mask

INVALID_LIST = "providers must be an array of { id, name, apiKey, enabled, priority }"


@dataclass(frozen=True)
class StoredKey:
    """A stored key a backend may use: the entry's id, the key in clear, its optional base URL."""

    entry_id: str
    api_key: str | None  # None: stored, but it cannot be decrypted (SECRET_KEY changed)
    base_url: str


def _settings(*, lock: bool = False) -> ProviderSettings:
    rows = ProviderSettings.objects.select_for_update() if lock else ProviderSettings.objects
    row = rows.filter(pk=1).first()
    if row is None:
        row, _ = ProviderSettings.objects.get_or_create(pk=1)
    return row


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _wire(entry: ProviderKey) -> dict[str, Any]:
    key = decrypt(entry.api_key_encrypted)
    out: dict[str, Any] = {"id": entry.provider_id, "name": entry.name, "apiKey": "***" if key is None else mask(key),
                           "enabled": entry.enabled, "priority": _number(entry.priority)}
    if entry.base_url:
        out["baseUrl"] = entry.base_url
    return out


def _entries() -> list[ProviderKey]:
    return list(ProviderKey.objects.order_by("position", "id"))


def _active(settings_row: ProviderSettings) -> str | None:
    return settings_row.active_provider or None


def snapshot() -> dict[str, Any]:
    """anima.providers.get: the whole store, keys masked."""
    row = _settings()
    return {"providers": [_wire(e) for e in _entries()], "activeProvider": _active(row),
            "autoRotation": row.auto_rotation, "rotationStrategy": row.rotation_strategy}


def _checked(items: Any) -> list[dict[str, Any]]:
    """Exactly `[{id: str, name: str, apiKey: str, enabled: bool, priority: number}]`, else 400."""
    if not isinstance(items, list):
        raise invalid(INVALID_LIST)
    out, seen = [], set()
    for item in items:
        if not isinstance(item, dict):
            raise invalid(INVALID_LIST)
        pid, name, key, enabled, priority = (item.get(k) for k in ("id", "name", "apiKey", "enabled", "priority"))
        base_url = item.get("baseUrl")
        if not (isinstance(pid, str) and pid.strip() and isinstance(name, str) and isinstance(key, str)
                and isinstance(enabled, bool) and isinstance(priority, (int, float)) and not isinstance(priority, bool)
                and math.isfinite(priority) and (base_url is None or isinstance(base_url, str))):
            raise invalid(INVALID_LIST)
        pid = pid.strip()
        if pid in seen:
            raise invalid(f"{INVALID_LIST} (duplicate id {pid!r})")
        seen.add(pid)
        out.append({"id": pid, "name": name, "apiKey": key, "enabled": enabled, "priority": float(priority),
                    "baseUrl": (base_url or "").strip()})
    return out


def replace(items: Any) -> dict[str, Any]:
    """anima.providers.set: replace the whole list. A masked echo keeps the stored key of its id;
    the active provider is kept while listed, else the first enabled one, else none."""
    wanted = _checked(items)
    with transaction.atomic():
        row = _settings(lock=True)
        stored = {e.provider_id: e for e in ProviderKey.objects.select_for_update()}
        ProviderKey.objects.exclude(provider_id__in=[w["id"] for w in wanted]).delete()
        for position, w in enumerate(wanted):
            entry = stored.get(w["id"]) or ProviderKey(provider_id=w["id"])
            if not is_masked(w["apiKey"]):
                entry.api_key_encrypted = encrypt(w["apiKey"])
            elif entry.pk is None:
                entry.api_key_encrypted = ""  # a masked value with nothing stored behind it
            entry.name, entry.enabled, entry.priority = w["name"], w["enabled"], w["priority"]
            entry.base_url, entry.position = w["baseUrl"], position
            entry.save()
        ids = [w["id"] for w in wanted]
        if row.active_provider not in ids:
            row.active_provider = next((w["id"] for w in wanted if w["enabled"]), "")
            row.save(update_fields=["active_provider"])
    result = snapshot()
    return {"ok": True, "providers": result["providers"], "activeProvider": result["activeProvider"]}


def _rotation_order(entries: list[ProviderKey]) -> list[ProviderKey]:
    return sorted((e for e in entries if e.enabled), key=lambda e: (e.priority, e.position, e.id))


def _next_after(order: list[ProviderKey], current: str | None) -> ProviderKey:
    ids = [e.provider_id for e in order]
    return order[(ids.index(current) + 1) % len(order)] if current in ids else order[0]


def rotate(auto_rotation: bool | None) -> dict[str, Any]:
    """anima.providers.rotate: with `autoRotation` only set that flag (ANIMA); without it move the
    active provider to the next enabled one by ascending priority, wrapping round (the seed)."""
    with transaction.atomic():
        row = _settings(lock=True)
        entries = list(ProviderKey.objects.select_for_update().order_by("position", "id"))
        if auto_rotation is not None:
            row.auto_rotation = auto_rotation
            row.save(update_fields=["auto_rotation"])
        else:
            order = _rotation_order(entries)
            if not order:
                raise conflict("no enabled providers")
            row.active_provider = _next_after(order, _active(row)).provider_id
            row.save(update_fields=["active_provider"])
        active = next((e for e in entries if e.provider_id == row.active_provider), None)
    return {"ok": True, "activeProvider": _active(row), "autoRotation": row.auto_rotation,
            "rotationStrategy": row.rotation_strategy, "provider": _wire(active) if active else None}


def _serves(entry_id: str, provider: str) -> bool:
    return entry_id == provider or entry_id.startswith(provider + ":")


def keys_for(provider: str) -> list[StoredKey]:
    """The enabled stored keys of a backend provider, in the order to try them: the active entry
    first, then ascending priority."""
    row = _settings()
    order = [e for e in _rotation_order(_entries()) if _serves(e.provider_id, provider)]
    order.sort(key=lambda e: e.provider_id != row.active_provider)  # stable: active first
    return [StoredKey(e.provider_id, decrypt(e.api_key_encrypted), e.base_url) for e in order]


def rotate_after_rate_limit(provider: str, failed_id: str) -> StoredKey | None:
    """After `failed_id` hit a rate limit: when autoRotation is on and the provider has another
    enabled key, make it the active provider and return it (the run retries once with it)."""
    with transaction.atomic():
        row = _settings(lock=True)
        if not row.auto_rotation:
            return None
        order = [e for e in _rotation_order(list(ProviderKey.objects.select_for_update()))
                 if _serves(e.provider_id, provider)]
        if len(order) < 2 or failed_id not in [e.provider_id for e in order]:
            return None
        nxt = _next_after(order, failed_id)
        row.active_provider = nxt.provider_id
        row.save(update_fields=["active_provider"])
    return StoredKey(nxt.provider_id, decrypt(nxt.api_key_encrypted), nxt.base_url)
