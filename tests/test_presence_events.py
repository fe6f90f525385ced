"""Presence, stateVersion, per-connection seq and status redaction over a real socket
(protocol.md §4.3-4.5, §5.2, §5.4, §5.6)."""

from __future__ import annotations

import uuid
from typing import Any

from gateway.client import GatewayClient
from tests.support import ADMIN, PAIRING, READ, REMOTE, DeviceKey, device_handshake, still_usable


def marker() -> str:
    return f"probe-{uuid.uuid4().hex[:10]}"


async def presence_event_with(client: GatewayClient, predicate: Any, timeout: float = 10) -> dict:
    """The next presence.changed whose listing has an entry matching `predicate`."""
    while True:
        frame = await client.next_event("presence.changed", timeout=timeout)
        if any(predicate(e) for e in frame["payload"]["presence"]):
            return frame


async def test_system_event_broadcasts_presence_with_a_higher_state_version(client) -> None:
    watcher = await client(READ)
    admin = await client(ADMIN)
    before = watcher.hello["snapshot"]["stateVersion"]["presence"]
    host = marker()
    assert await admin.call("system-event", {"text": f"Node: {host} (10.1.2.3) · app 9.9 · mode test · reason probe"}) \
        == {"ok": True}
    frame = await presence_event_with(watcher, lambda e: e.get("host") == host)
    assert frame["stateVersion"]["presence"] > before
    assert set(frame["stateVersion"]) == {"presence", "health"}
    entry = next(e for e in frame["payload"]["presence"] if e.get("host") == host)
    assert (entry["ip"], entry["version"], entry["mode"], entry["reason"]) == ("10.1.2.3", "9.9", "test", "probe")
    listing = await watcher.call("system-presence")
    assert any(e.get("host") == host for e in listing)


async def test_system_event_explicit_fields_win_over_parsed_ones(client) -> None:
    admin = await client(ADMIN)
    host = marker()
    await admin.call("system-event", {"text": f"Node: {host} · mode parsed", "mode": "explicit",
                                      "lastInputSeconds": 12, "roles": ["operator"], "tags": ["x"],
                                      "platform": 42})  # a wrongly-typed optional is ignored
    entry = next(e for e in await admin.call("system-presence") if e.get("host") == host)
    assert entry["mode"] == "explicit" and entry["lastInputSeconds"] == 12 and entry["roles"] == ["operator"]
    assert "platform" not in entry or entry["platform"] != 42


async def test_seq_starts_at_one_and_increases_without_gaps(client) -> None:
    watcher = await client(READ)
    admin = await client(ADMIN)
    texts = [marker() for _ in range(4)]
    for text in texts:
        await admin.call("system-event", {"text": text})
    events = []
    while not any(e.get("text") == texts[-1] for e in (events[-1]["payload"].get("presence", []) if events else [])):
        events.append(await watcher.next_event())
    seqs = [e["seq"] for e in events]
    assert seqs[0] == 1
    assert seqs == list(range(1, len(seqs) + 1)), "strictly increasing, no gap for a healthy consumer"


async def test_cli_mode_client_gets_no_presence_entry(client) -> None:
    name = marker()
    cli = await client(READ, display_name=name)  # GatewayClient connects as client id/mode "cli"
    listing = await cli.call("system-presence")
    assert not any(e.get("host") == name for e in listing)


async def test_tracked_client_is_listed_and_marked_on_disconnect(client) -> None:
    watcher = await client(READ)
    name = marker()
    ui = await client(READ, display_name=name, client_id="webchat", mode="ui")
    entry = next(e for e in await watcher.call("system-presence") if e.get("host") == name)
    assert entry["mode"] == "ui" and entry["reason"] == "connect"
    assert entry["roles"] == ["operator"] and entry["scopes"] == READ
    assert "ip" not in entry, "a local client's address is not reported"
    before = (await presence_event_with(watcher, lambda e: e.get("host") == name))["stateVersion"]["presence"]
    await ui.close()
    frame = await presence_event_with(watcher, lambda e: e.get("host") == name and e.get("reason") == "disconnect")
    assert frame["stateVersion"]["presence"] > before


async def test_connect_snapshot_includes_the_new_connection(client) -> None:
    name = marker()
    ui = await client(READ, display_name=name, client_id="webchat", mode="ui")
    assert any(e.get("host") == name for e in ui.hello["snapshot"]["presence"])


async def test_presence_listing_is_newest_first_with_the_gateway_self_entry(client) -> None:
    reader = await client(READ)
    listing = await reader.call("system-presence")
    assert isinstance(listing, list)
    assert [e["ts"] for e in listing] == sorted((e["ts"] for e in listing), reverse=True)
    assert sum(1 for e in listing if e.get("reason") == "self" and e.get("mode") == "gateway") == 1


async def test_status_is_redacted_for_a_read_only_client(client) -> None:
    reader = await client(READ)
    admin = await client(ADMIN)
    redacted = await reader.call("status")
    sessions = redacted["sessions"]
    assert sessions["paths"] == []
    assert sessions["defaults"] == {"model": None, "contextTokens": None}
    assert sessions["recent"] == []
    assert sessions["byAgent"] and all(a["path"] == "[redacted]" and a["recent"] == [] for a in sessions["byAgent"])

    full = await admin.call("status")
    assert full["sessions"]["paths"] and all(not p.startswith("/") for p in full["sessions"]["paths"])
    assert all(a["path"] != "[redacted]" for a in full["sessions"]["byAgent"])
    assert full["sessions"]["defaults"]["model"] == "echo", "an admin sees the default model"
    assert full["sessions"]["count"] == sessions["count"], "counts stay visible"
    assert full["heartbeat"] == redacted["heartbeat"]


async def test_status_needs_read_scope(client) -> None:
    pairer = await client(PAIRING)
    frame = await pairer.request("status")
    assert (frame["error"]["code"], frame["error"]["message"]) == (403, "missing scope: operator.read")


async def test_health_call_refreshes_and_broadcasts_health(client) -> None:
    reader = await client(READ)
    summary = await reader.call("health", {"probe": True})
    assert summary["ok"] is True and summary["defaultAgentId"] == "main"
    frame = await reader.next_event("health.changed")
    assert frame["stateVersion"]["health"] >= 1
    assert frame["payload"]["ok"] is True


async def test_presence_events_do_not_reach_connections_without_read_scopes(gateway_server, client) -> None:
    pairer = await client(PAIRING)
    admin = await client(ADMIN)
    await admin.call("system-event", {"text": marker()})
    # A later event the pairer is entitled to acts as a barrier: events reach a connection in order.
    attempt = await device_handshake(gateway_server.url, DeviceKey(), token=gateway_server.token, scopes=READ,
                                     headers=REMOTE)
    request_id = attempt.error["details"]["requestId"]
    await attempt.ws.close()
    seen = []
    while True:
        frame = await pairer.next_event()
        seen.append(frame["event"])
        if frame["event"] == "device.pair.requested" and frame["payload"]["requestId"] == request_id:
            break
    assert "presence.changed" not in seen and "health.changed" not in seen
    await still_usable(admin)


async def test_last_heartbeat_and_set_heartbeats(client) -> None:
    admin = await client(ADMIN)
    assert await admin.call("last-heartbeat") is None or "ts" in await admin.call("last-heartbeat")
    assert await admin.call("set-heartbeats", {"enabled": False}) == {"ok": True, "enabled": False}
    result = await admin.call("set-heartbeats", {"every": "45m"})
    assert result["every"] == "45m" and result["enabled"] is False, "enabled is left unchanged"
    assert (await admin.call("status"))["heartbeat"]["agents"][0]["everyMs"] == 45 * 60_000
    health = await admin.call("health", {"probe": True})  # health and status tell the same story
    assert health["agents"][0]["heartbeat"]["everyMs"] == 45 * 60_000
    assert health["agents"][0]["heartbeat"]["enabled"] is False and health["heartbeatSeconds"] == 0
    assert (await admin.call("set-heartbeats", {"enabled": True, "every": "30m"}))["enabled"] is True
    assert (await admin.call("health", {"probe": True}))["heartbeatSeconds"] == 1800
    error = (await admin.request("set-heartbeats", {"every": "soon"}))["error"]
    assert error["code"] == 400 and "/every" in error["message"]


async def test_v3_clients_receive_presence_under_its_v3_name(client) -> None:
    watcher = await client(READ, v3=True)
    admin = await client(ADMIN)
    host = marker()
    await admin.call("system-event", {"text": f"Node: {host} · mode test"})
    while True:
        frame = await watcher.next_event()
        assert frame["type"] == "event"
        assert frame["event"] != "presence.changed"
        if frame["event"] == "presence" and any(e.get("host") == host for e in frame["payload"]["presence"]):
            break
    assert frame["stateVersion"]["presence"] >= 1 and frame["seq"] >= 1


async def test_plain_system_event_is_queued_for_the_main_session(client) -> None:
    admin = await client(ADMIN)
    reader = await client(READ)
    text = f"deploy finished {marker()}"
    await admin.call("system-event", {"text": text})
    assert text in (await reader.call("status"))["queuedSystemEvents"], "visible to readers too"


async def test_device_connection_is_listed_under_its_device_id(gateway_server, client) -> None:
    from tests.support import DeviceKey, device_handshake

    device = DeviceKey()
    attempt = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ)
    assert attempt.ok
    entry = next(e for e in attempt.hello["snapshot"]["presence"] if e.get("deviceId") == device.id)
    assert entry["instanceId"] == device.id and entry["roles"] == ["operator"]
    await attempt.ws.close()
