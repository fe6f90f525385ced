"""The provider key store (anima.providers.get|set|rotate, chat-sessions-cron.md §4.2): keys
encrypted at rest and only ever shown masked, a masked echo keeps the stored key, the active
provider follows the list and rotates by priority; and models.list (§4.3)."""

from __future__ import annotations

import uuid

import pytest

from gateway.client import RpcError
from gateway.models import ProviderKey
from gateway.protocol.errors import GatewayError
from gateway.providers import crypto, services
from tests.support import READ, WRITE

LONG_KEY = "sk-test-abcdefghijklmnopqrstuvwxyz-9876"
SHORT_KEY = "short-key"


def entry(pid: str, key: str = LONG_KEY, *, enabled: bool = True, priority: float = 1, name: str | None = None,
          **extra: object) -> dict:
    return {"id": pid, "name": name or pid.upper(), "apiKey": key, "enabled": enabled, "priority": priority, **extra}


# --- masking and encryption ----------------------------------------------------------------------

@pytest.mark.parametrize("key, masked", [
    (LONG_KEY, "sk-test...9876"), ("123456789012", "1234567...9012"), ("12345678901", "***"), ("", "***")])
def test_mask_shows_first_seven_and_last_four_or_stars(key, masked):
    assert crypto.mask(key) == masked


@pytest.mark.django_db
def test_keys_are_encrypted_at_rest_and_never_returned_in_clear():
    result = services.replace([entry("openai")])
    row = ProviderKey.objects.get(provider_id="openai")
    assert LONG_KEY not in row.api_key_encrypted and row.api_key_encrypted
    assert crypto.decrypt(row.api_key_encrypted) == LONG_KEY
    assert LONG_KEY not in str(result) and LONG_KEY not in str(services.snapshot())
    assert services.snapshot()["providers"] == [entry("openai", "sk-test...9876")]


@pytest.mark.django_db
def test_a_key_that_cannot_be_decrypted_is_shown_as_stars(settings):
    services.replace([entry("openai")])
    settings.SECRET_KEY = "another-secret-key-entirely"
    assert services.snapshot()["providers"][0]["apiKey"] == "***"
    assert services.keys_for("openai")[0].api_key is None


# --- set -------------------------------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("echo", ["sk-test...9876", "***", "whatever...it shows"])
def test_masked_echo_keeps_the_stored_key(echo):
    services.replace([entry("openai")])
    services.replace([entry("openai", echo, name="Renamed", priority=5)])
    [stored] = services.keys_for("openai")
    assert stored.api_key == LONG_KEY
    assert services.snapshot()["providers"] == [entry("openai", "sk-test...9876", name="Renamed", priority=5)]


@pytest.mark.django_db
def test_a_new_key_replaces_the_stored_one_and_the_list_is_replaced_whole():
    services.replace([entry("openai"), entry("anthropic")])
    services.replace([entry("openai", "sk-new-key-000000000000")])
    assert [k.api_key for k in services.keys_for("openai")] == ["sk-new-key-000000000000"]
    assert [p["id"] for p in services.snapshot()["providers"]] == ["openai"]


@pytest.mark.django_db
@pytest.mark.parametrize("bad", [
    None, {}, "x", [1], [{"id": "a"}], [entry("a", enabled="yes")], [entry("a", priority=True)],
    [entry("a", priority="1")], [{**entry("a"), "apiKey": None}], [entry("")], [entry("a"), entry("a")]])
def test_a_malformed_list_is_invalid_request(bad):
    with pytest.raises(GatewayError) as caught:
        services.replace(bad)
    assert caught.value.reason == "INVALID_REQUEST"
    assert caught.value.message.startswith("providers must be an array of { id, name, apiKey, enabled, priority }")


@pytest.mark.django_db
def test_active_provider_is_kept_while_listed_else_first_enabled_else_none():
    res = services.replace([entry("a", enabled=False), entry("b"), entry("c")])
    assert res["activeProvider"] == "b"
    assert services.replace([entry("c"), entry("b")])["activeProvider"] == "b"
    assert services.replace([entry("d", enabled=False), entry("c")])["activeProvider"] == "c"
    assert services.replace([entry("d", enabled=False)])["activeProvider"] is None
    assert services.replace([])["activeProvider"] is None


# --- rotate -------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_rotate_moves_to_the_next_enabled_provider_by_priority_and_wraps():
    services.replace([entry("b", priority=3), entry("a", priority=1), entry("c", enabled=False, priority=2)])
    assert services.snapshot()["activeProvider"] == "b"
    assert services.rotate(None)["activeProvider"] == "a"  # after b (3) comes nothing: wrap to a (1)
    res = services.rotate(None)
    assert res["activeProvider"] == "b" and res["provider"]["id"] == "b"
    assert res["provider"]["apiKey"] == "sk-test...9876"
    assert res["autoRotation"] is True and res["rotationStrategy"] == "on-rate-limit"


@pytest.mark.django_db
def test_rotate_with_auto_rotation_only_sets_the_flag():
    services.replace([entry("a", priority=1), entry("b", priority=2)])
    res = services.rotate(False)
    assert res["autoRotation"] is False and res["activeProvider"] == "a"
    assert services.snapshot()["autoRotation"] is False
    assert services.rotate(False)["autoRotation"] is False  # never toggled implicitly


@pytest.mark.django_db
def test_rotate_without_enabled_providers_is_conflict():
    services.replace([entry("a", enabled=False)])
    with pytest.raises(GatewayError) as caught:
        services.rotate(None)
    assert caught.value.reason == "CONFLICT" and caught.value.message == "no enabled providers"


# --- keys for a backend ------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_backend_keys_are_the_providers_entries_active_first_then_by_priority():
    services.replace([entry("anthropic", "sk-ant-000000000000", priority=0),
                      entry("openai:spare", "sk-spare-0000000", priority=2),
                      entry("openai", "sk-main-00000000000", priority=1), entry("openai:off", enabled=False),
                      entry("openaix", "sk-other-provider-0", priority=5)])
    assert [k.entry_id for k in services.keys_for("openai")] == ["openai", "openai:spare"]
    services.rotate(None)  # anthropic -> openai
    services.rotate(None)  # openai -> openai:spare
    assert [k.entry_id for k in services.keys_for("openai")] == ["openai:spare", "openai"]


@pytest.mark.django_db
def test_rate_limit_rotates_to_the_next_key_of_the_same_provider_when_auto_rotation_is_on():
    services.replace([entry("openai", "sk-main-00000000000", priority=1),
                      entry("openai:spare", "sk-spare-0000000000", priority=2)])
    nxt = services.rotate_after_rate_limit("openai", "openai")
    assert nxt is not None and nxt.entry_id == "openai:spare" and nxt.api_key == "sk-spare-0000000000"
    assert services.snapshot()["activeProvider"] == "openai:spare"
    services.rotate(False)
    assert services.rotate_after_rate_limit("openai", "openai:spare") is None


@pytest.mark.django_db
def test_stored_key_and_base_url_win_over_the_environment(monkeypatch):
    from gateway.providers.credentials import endpoint

    monkeypatch.setenv("VLLM_API_KEY", "from-env-000000000")
    monkeypatch.setenv("VLLM_BASE_URL", "http://10.0.0.1:8000/v1")
    assert (endpoint("vllm").api_key, endpoint("vllm").key_source) == ("from-env-000000000", "env")
    services.replace([entry("vllm", "from-store-00000000", baseUrl="http://127.0.0.1:9999/v1/")])
    ep = endpoint("vllm")
    assert (ep.api_key, ep.key_source, ep.base_url) == ("from-store-00000000", "store:vllm", "http://127.0.0.1:9999/v1")
    assert services.snapshot()["providers"][0]["baseUrl"] == "http://127.0.0.1:9999/v1/"


# --- over the wire -------------------------------------------------------------------------------------------

async def test_providers_round_trip_over_the_wire_with_masking(client):
    admin, reader = await client(WRITE + READ), await client(READ)
    saved = await reader.call("anima.providers.get", {})
    a, b = f"test-{uuid.uuid4().hex[:8]}", f"test-{uuid.uuid4().hex[:8]}"
    try:
        res = await admin.call("anima.providers.set", {"providers": saved["providers"] + [
            entry(a, LONG_KEY, priority=1001), entry(b, SHORT_KEY, priority=1002)]})
        assert res["ok"] is True and LONG_KEY not in str(res)
        got = await reader.call("anima.providers.get", {})
        assert {p["id"]: p["apiKey"] for p in got["providers"] if p["id"] in (a, b)} == {a: "sk-test...9876", b: "***"}
        assert set(got) == {"providers", "activeProvider", "autoRotation", "rotationStrategy"}

        with pytest.raises(RpcError) as caught:
            await reader.call("anima.providers.set", {"providers": []})
        assert caught.value.reason == "MISSING_SCOPE"
        with pytest.raises(RpcError) as caught:
            await admin.call("anima.providers.set", {"providers": [{"id": a}]})
        assert caught.value.reason == "INVALID_REQUEST"
        assert caught.value.error["message"] == "providers must be an array of { id, name, apiKey, enabled, priority }"
    finally:
        await admin.call("anima.providers.set", {"providers": saved["providers"]})


async def test_models_list_always_offers_echo(client):
    reader = await client(READ)
    models = (await reader.call("models.list", {}))["models"]
    echo = [m for m in models if m["provider"] == "echo"]
    assert [m["id"] for m in echo] == ["echo"] and isinstance(echo[0]["name"], str)
