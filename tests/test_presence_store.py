"""The presence store and the stateVersion counters (protocol.md §4.5, §5.4), which live in the
Django cache so every process sees the same values (README D7)."""

from __future__ import annotations

from typing import Iterator

import pytest
from django.core.cache import cache

from gateway.protocol import presence as presence_module
from gateway.protocol.events import now_ms
from gateway.protocol.presence import PresenceStore, StateVersions


@pytest.fixture(autouse=True)
def clean_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def store(settings) -> PresenceStore:
    """A process's store as its runtime builds it (no background loops are started)."""
    from gateway.runtime import GatewayRuntime

    settings.ANIMA_VERSION = "9.9.9"
    return GatewayRuntime().presence


def test_counters_start_at_one_and_only_go_up() -> None:
    versions = StateVersions()
    versions.ensure()
    assert versions.current() == {"presence": 1, "health": 1}
    versions.bump("presence")
    versions.bump("presence")
    versions.bump("health")
    assert versions.current() == {"presence": 3, "health": 2}
    versions.ensure()  # a second process starting does not reset them
    assert versions.current() == {"presence": 3, "health": 2}


def test_an_evicted_counter_restarts_above_any_value_seen() -> None:
    versions = StateVersions()
    versions.ensure()
    for _ in range(5):
        versions.bump("presence")
    cache.delete(StateVersions.KEYS["presence"])
    versions.bump("presence")
    assert versions.current()["presence"] > 6


def test_listing_always_has_the_gateway_self_entry(store: PresenceStore) -> None:
    listing = store.listing()
    assert len(listing) == 1
    entry = listing[0]
    assert (entry["mode"], entry["reason"], entry["version"]) == ("gateway", "self", "9.9.9")
    assert entry["text"].startswith(f"Gateway: {store.host}")


def test_upsert_merges_fields_and_unions_roles_and_scopes(store: PresenceStore) -> None:
    store.upsert("Device-1", {"host": "phone", "roles": ["operator"], "scopes": ["operator.read"], "ip": None})
    entry = store.upsert("  device-1 ", {"roles": ["node"], "scopes": ["operator.read", "operator.write"],
                                         "reason": "connect"})
    assert entry["host"] == "phone", "fields not given are kept"
    assert entry["roles"] == ["node", "operator"]
    assert entry["scopes"] == ["operator.read", "operator.write"]
    assert "ip" not in entry, "None values are not stored"
    hosts = [e.get("host") for e in store.listing()]
    assert hosts.count("phone") == 1, "keys are trimmed and lower-cased"


def test_listing_is_newest_first(store: PresenceStore) -> None:
    store.upsert("a", {"host": "a"})
    store.upsert("b", {"host": "b"})
    store.local["a"]["ts"] = now_ms() - 10_000
    listing = store.listing()
    assert [e["ts"] for e in listing] == sorted((e["ts"] for e in listing), reverse=True)


def test_entries_older_than_five_minutes_are_pruned(store: PresenceStore) -> None:
    store.upsert("old", {"host": "old"})
    store.local["old"]["ts"] = now_ms() - presence_module.TTL_MS - 1000
    assert all(e.get("host") != "old" for e in store.listing())


def test_at_most_200_entries(store: PresenceStore) -> None:
    for n in range(250):
        store.local[f"k{n}"] = {"host": f"h{n}", "ts": now_ms() - n}
    store.refresh()
    assert len(store.listing()) == presence_module.MAX_ENTRIES
