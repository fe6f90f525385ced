"""config.* (operations.md §2–§3, README D10, D13): the document round-trips through get, set (key
and whole-document forms), patch and apply; every write needs the current baseHash (stale → 409);
unknown keys are refused with their JSON pointer; secrets never leave the gateway and the
redaction sentinel keeps them; the schema is a draft-07 JSON Schema; a write is visible at once
on every connection and every process, and nothing restarts or closes a socket.

The document operations (merge by id, `${VAR}`, redaction, defaults) are unit-tested first."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sqlite3
import time
import uuid
from typing import Any, AsyncIterator, Iterator

import pytest

from gateway.client import GatewayClient
from gateway.config import document as doc
from gateway.config.schema import base_schema, validate
from tests.support import ADMIN, READ, WRITE, GatewayServer, call_error, start_gateway, still_usable

SENTINEL = "__ANIMA_REDACTED__"
EMPTY_HASH = hashlib.sha256(b"").hexdigest()


def dig(value: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


# --- the document, without a gateway ----------------------------------------------------------------------------

def test_merge_patch_merges_lists_of_objects_by_id() -> None:
    base = {"agents": {"list": [{"id": "main", "name": "Main"}, {"id": "ops"}]}, "ui": {"seamColor": "#000000"}}
    patch = {"agents": {"list": [{"id": "ops", "name": "Ops"}, {"id": "new"}]}, "ui": {"seamColor": None}}
    merged = doc.merge_patch(base, patch)
    assert merged == {"agents": {"list": [{"id": "main", "name": "Main"}, {"id": "ops", "name": "Ops"}, {"id": "new"}]},
                      "ui": {}}
    assert doc.merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}, "other lists replace"
    assert doc.merge_patch({"a": [{"id": "x"}]}, {"a": []}) == {"a": []}, "an empty list clears"


def test_echoed_defaults_are_not_stored() -> None:
    effective = {"agents": {"defaults": {"echo": {"chunkChars": 16, "chunkDelayMs": 20}}}, "talk": {"voiceId": "v"}}
    stored = {"talk": {"voiceId": "v"}}
    new = {"agents": {"defaults": {"echo": {"chunkChars": 4, "chunkDelayMs": 20}}}, "talk": {"voiceId": "v"}}
    assert doc.strip_echoed_defaults(new, stored, effective) == {"agents": {"defaults": {"echo": {"chunkChars": 4}}},
                                                                 "talk": {"voiceId": "v"}}


def test_env_references_resolve_and_survive_a_write() -> None:
    stored = {"gateway": {"auth": {"token": "${CFG_TEST_TOKEN}"}}, "talk": {"voiceId": "$${LITERAL}"}}
    resolved, issues = doc.substitute(stored, {"CFG_TEST_TOKEN": "s3cret"})
    assert not issues and resolved == {"gateway": {"auth": {"token": "s3cret"}}, "talk": {"voiceId": "${LITERAL}"}}
    _, issues = doc.substitute(stored, {})
    assert issues and issues[0]["path"] == "gateway.auth.token" and "CFG_TEST_TOKEN" in issues[0]["message"]
    written = doc.restore_env_refs({**resolved, "ui": {"seamColor": "#101010"}}, stored, resolved)
    assert written["gateway"]["auth"]["token"] == "${CFG_TEST_TOKEN}", "the secret itself is never stored"
    assert doc.redact(stored)["gateway"]["auth"]["token"] == "${CFG_TEST_TOKEN}", "references stay visible"


def test_redaction_uses_the_schema_and_names_in_open_sections() -> None:
    document = {"models": {"providers": {"local": {"apiKey": "k1", "baseUrl": "http://127.0.0.1"}}},
                "channels": {"telegram": {"secretToken": "k2", "maxTokens": 5}},
                "agents": {"defaults": {"contextTokens": 1000}}}
    redacted = doc.redact(document)
    assert redacted["models"]["providers"]["local"] == {"apiKey": SENTINEL, "baseUrl": "http://127.0.0.1"}
    assert redacted["channels"]["telegram"] == {"secretToken": SENTINEL, "maxTokens": 5}
    assert redacted["agents"] == document["agents"]
    text = doc.redact_text(doc.serialize(redacted), doc.secrets_in(document))
    assert "k1" not in text and "k2" not in text
    restored = doc.restore_sentinels(redacted, document)
    assert restored == document
    with pytest.raises(doc.DocumentError, match="talk.apiKey"):
        doc.restore_sentinels({"talk": {"apiKey": SENTINEL}}, document)


def test_validation_names_unknown_keys_by_pointer() -> None:
    problems = validate({"agents": {"defaults": {"echo": {"chunkChars": 0, "chunkSize": 3}}}, "gateway": {"prot": 1},
                         "agents2": {}})
    by_pointer = {p["pointer"]: p["message"] for p in problems}
    assert by_pointer["/agents/defaults/echo/chunkSize"] == "unknown key"
    assert by_pointer["/gateway/prot"] == "unknown key"
    assert by_pointer["/agents2"] == "unknown key"
    assert "/agents/defaults/echo/chunkChars" in by_pointer
    assert validate({"talk": {"voiceId": None}})[0]["pointer"] == "/talk/voiceId", "null is not a value"
    assert validate({"$schema": "x", "agents": {"list": [{"id": "a"}], "defaults": {"echo": {"chunkDelayMs": 0}}},
                     "channels": {"whatsapp": {"anything": True}}}) == [], "other channel ids stay open"
    # the built-in adapters' keys are checked: a typo or a wrong value is named, not ignored
    by_pointer = {p["pointer"]: p["message"] for p in validate(
        {"channels": {"log": {"enabeld": False}, "webhook": {"url": "not a url", "retries": 9, "timeoutMs": "x"}}})}
    assert by_pointer["/channels/log/enabeld"] == "unknown key"
    assert {"/channels/webhook/url", "/channels/webhook/retries", "/channels/webhook/timeoutMs"} <= set(by_pointer)


def test_schema_references_resolve() -> None:
    schema = base_schema()
    refs = {v for _, v in doc._walk(schema) if isinstance(v, str) and v.startswith("#/")}
    for ref in refs:
        node: Any = schema
        for part in ref[2:].split("/"):
            node = node[part]
        assert isinstance(node, dict), ref
    assert "$defs" not in json.dumps(schema)


# --- one gateway ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def config_gateway() -> Iterator[GatewayServer]:
    """A gateway of this module's own: its config starts empty and the other modules never see it."""
    server = start_gateway()
    yield server
    server.stop()


@pytest.fixture
async def connect(config_gateway: GatewayServer) -> AsyncIterator[Any]:
    opened: list[GatewayClient] = []

    async def make(scopes: list[str] = ADMIN, url: str | None = None) -> GatewayClient:
        conn = await GatewayClient.connect(url or config_gateway.url, token=config_gateway.token, scopes=scopes)
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        await conn.close()


def stored_row(server: GatewayServer) -> dict[str, Any]:
    """What the database holds (the test reads the gateway's SQLite file directly)."""
    with sqlite3.connect(server.state_dir / "db.sqlite3") as db:
        raw, hash_ = db.execute("SELECT raw, hash FROM gateway_configdocument").fetchone()
    return {"raw": raw, "hash": hash_, "document": json.loads(raw)}


async def set_key(conn: GatewayClient, path: str, value: Any) -> dict[str, Any]:
    snap = await conn.call("config.get")
    return await conn.call("config.set", {"path": path, "value": value, "baseHash": snap["hash"]})


async def test_get_before_any_write_shows_defaults_and_the_empty_hash(fresh_gateway_server) -> None:
    reader = await GatewayClient.connect(fresh_gateway_server.url, token=fresh_gateway_server.token, scopes=READ)
    try:
        snap = await reader.call("config.get")
        assert (snap["exists"], snap["hash"], snap["path"], snap["valid"]) == (False, EMPTY_HASH, "db:default/config",
                                                                                True)
        assert (snap["raw"], snap["parsed"], snap["resolved"], snap["issues"]) == (None, {}, {}, [])
        assert dig(snap["config"], "agents.defaults.echo") == {"chunkChars": 16, "chunkDelayMs": 20}
        assert dig(snap["config"], "session.mainKey") == "main"
        # the environment's token is the effective one (README Clarifications), and stays secret
        assert dig(snap["config"], "gateway.auth.token") == SENTINEL
        assert dig(snap["config"], "gateway.auth.mode") == "token"
        assert fresh_gateway_server.token not in json.dumps(snap)
    finally:
        await reader.close()


async def test_set_path_form_writes_reads_and_deletes_one_key(connect) -> None:
    admin, reader = await connect(), await connect(READ)
    voice = f"voice-{uuid.uuid4().hex[:6]}"
    res = await set_key(admin, "talk.voiceId", voice)
    assert res["ok"] is True and res["restartRequired"] is False and res["path"] == "db:default/config"
    assert dig(res["config"], "talk.voiceId") == voice and "talk.voiceId" in res["changedPaths"]
    got = await reader.call("config.get", {"path": "talk.voiceId"})
    assert got["value"] == voice and got["hash"] == res["hash"]
    await set_key(admin, "talk.voiceId", None)
    got = await reader.call("config.get", {"path": "talk.voiceId"})
    assert got["value"] is None and dig(got["parsed"], "talk") is None, "an emptied object goes too"


async def test_raw_form_replaces_the_document_and_accepts_json5(connect, config_gateway) -> None:
    admin = await connect()
    snap = await admin.call("config.get")
    raw = "{\n  // JSON5: comments, unquoted keys, trailing commas\n  ui: {seamColor: '#0a0b0c',},\n}\n"
    res = await admin.call("config.set", {"raw": raw, "baseHash": snap["hash"] if snap["exists"] else None})
    assert dig(res["config"], "ui.seamColor") == "#0a0b0c"
    got = await admin.call("config.get")
    assert got["hash"] == res["hash"] == hashlib.sha256(got["raw"].encode()).hexdigest()
    assert json.loads(got["raw"]) == got["parsed"], "stored as plain JSON"
    assert stored_row(config_gateway)["hash"] == got["hash"]


async def test_every_write_needs_the_current_base_hash(connect, config_gateway) -> None:
    admin = await connect()
    await set_key(admin, "ui.seamColor", "#111111")  # a config exists from here on
    snap = await admin.call("config.get")
    stale = "0" * 64
    for method, params in (("config.set", {"raw": "{}", "baseHash": stale}),
                           ("config.set", {"path": "ui.seamColor", "value": "#222222", "baseHash": stale}),
                           ("config.patch", {"raw": '{"ui": {"seamColor": "#222222"}}', "baseHash": stale}),
                           ("config.apply", {"raw": "{}", "baseHash": stale})):
        err = await call_error(admin, method, params)
        assert (err["code"], err["reason"]) == (409, "CONFLICT"), (method, err)
    for method, params in (("config.set", {"raw": "{}"}), ("config.patch", {"raw": "{}"}),
                           ("config.apply", {"config": {}})):
        err = await call_error(admin, method, params)
        assert (err["code"], err["reason"]) == (400, "INVALID_REQUEST"), (method, err)
        assert "base hash required" in err["message"]
    assert (await admin.call("config.get"))["hash"] == snap["hash"] == stored_row(config_gateway)["hash"]


async def test_concurrent_writers_with_one_base_hash_exactly_one_wins(connect) -> None:
    admins = [await connect() for _ in range(4)]
    snap = await admins[0].call("config.get")
    frames = await asyncio.gather(*(a.request("config.patch", {"patch": {"talk": {"voiceId": f"racer-{i}"}},
                                                               "baseHash": snap["hash"]})
                                    for i, a in enumerate(admins)))
    winners = [f for f in frames if f["ok"]]
    assert len(winners) == 1, frames
    assert all(f["error"]["reason"] == "CONFLICT" for f in frames if not f["ok"])
    assert dig((await admins[0].call("config.get"))["config"], "talk.voiceId") == \
        dig(winners[0]["payload"]["config"], "talk.voiceId")


async def test_unknown_keys_and_bad_values_are_refused_with_their_pointer(connect) -> None:
    admin = await connect()
    snap = await admin.call("config.get")
    bad = {"agents": {"defaults": {"echo": {"chunkSize": 4}}}}
    for method, params in (("config.set", {"raw": json.dumps(bad)}), ("config.apply", {"config": bad}),
                           ("config.patch", {"patch": bad})):
        err = await call_error(admin, method, {**params, "baseHash": snap["hash"]})
        assert (err["code"], err["reason"]) == (400, "INVALID_REQUEST"), err
        assert "/agents/defaults/echo/chunkSize" in err["message"], err
        assert {"path": "/agents/defaults/echo/chunkSize", "message": "unknown key"} in err["details"]["errors"]
        assert {"path": "agents.defaults.echo.chunkSize", "message": "unknown key"} in err["details"]["issues"]
    err = await call_error(admin, "config.set", {"path": "agents.defaults.echo.chunkChars", "value": 0,
                                                 "baseHash": snap["hash"]})
    assert err["details"]["errors"][0]["path"] == "/agents/defaults/echo/chunkChars"
    err = await call_error(admin, "config.set", {"path": "bogus", "value": 1, "baseHash": snap["hash"]})
    assert err["details"]["errors"] == [{"path": "/bogus", "message": "unknown key"}]
    for params in ({}, {"raw": "{}", "path": "a", "value": 1}, {"path": "ui.seamColor"}, {"raw": "  "}):
        err = await call_error(admin, "config.set", params)
        assert err["reason"] == "INVALID_REQUEST", params
    err = await call_error(admin, "config.patch", {"raw": "[1]", "baseHash": snap["hash"]})
    assert err["message"] == "config.patch raw must be an object"
    err = await call_error(admin, "config.set", {"raw": "{oops", "baseHash": snap["hash"]})
    assert err["message"].startswith("JSON5 parse failed")
    assert (await admin.call("config.get"))["hash"] == snap["hash"], "a refused write changed the config"


async def test_secrets_are_redacted_and_the_sentinel_keeps_the_stored_value(connect, config_gateway) -> None:
    admin, reader = await connect(), await connect(READ)
    secret, provider_key = f"sk-talk-{uuid.uuid4().hex}", f"sk-prov-{uuid.uuid4().hex}"
    snap = await admin.call("config.get")
    await admin.call("config.patch", {"patch": {"talk": {"apiKey": secret},
                                                "models": {"providers": {"local": {"baseUrl": "http://127.0.0.1:9",
                                                                                   "apiKey": provider_key}}}},
                                      "baseHash": snap["hash"]})
    snap = await reader.call("config.get")
    text = json.dumps(snap)
    assert secret not in text and provider_key not in text and config_gateway.token not in text
    for part in ("config", "parsed", "resolved"):
        assert dig(snap[part], "talk.apiKey") == SENTINEL, part
        assert dig(snap[part], "models.providers.local.apiKey") == SENTINEL, part
    assert snap["raw"].count(SENTINEL) == 2
    assert (await reader.call("config.get", {"path": "talk.apiKey"}))["value"] == SENTINEL

    # write the redacted document back with one other change: the secrets stay as they were
    document = snap["parsed"]
    document["talk"]["voiceId"] = "kept-secret"
    res = await admin.call("config.set", {"raw": json.dumps(document), "baseHash": snap["hash"]})
    assert secret not in json.dumps(res)
    stored = stored_row(config_gateway)["document"]
    assert dig(stored, "talk.apiKey") == secret and dig(stored, "models.providers.local.apiKey") == provider_key
    assert dig(stored, "talk.voiceId") == "kept-secret"
    assert "gateway" not in stored, "the environment's token echoed back in `config` is not stored"

    # a sentinel with nothing behind it is refused
    err = await call_error(admin, "config.set", {"path": "ui.assistant.name", "value": SENTINEL,
                                                 "baseHash": res["hash"]})
    assert err["reason"] == "INVALID_REQUEST" and "ui.assistant.name" in err["message"]
    await admin.call("config.patch", {"patch": {"talk": None, "models": None}, "baseHash": res["hash"]})


async def test_patch_merges_agents_by_id_and_apply_takes_a_config_object(connect) -> None:
    admin = await connect()
    snap = await admin.call("config.get")
    res = await admin.call("config.patch", {"raw": json.dumps({"agents": {"list": [{"id": "main", "name": "Main"},
                                                                                   {"id": "ops"}]}}),
                                            "baseHash": snap["hash"]})
    res = await admin.call("config.patch", {"patch": {"agents": {"list": [{"id": "ops", "name": "Ops"}]}},
                                            "baseHash": res["hash"], "restartDelayMs": 0, "note": "rename"})
    assert dig(res["config"], "agents.list") == [{"id": "main", "name": "Main"}, {"id": "ops", "name": "Ops"}]
    assert res["restartRequired"] is False and "restart" not in res and "sentinel" not in res

    document = (await admin.call("config.get"))["parsed"]
    document["agents"]["list"] = [{"id": "solo", "default": True}]
    res = await admin.call("config.apply", {"config": document, "baseHash": res["hash"]})
    assert dig(res["config"], "agents.list") == [{"id": "solo", "default": True}]
    snap = await admin.call("config.get")
    assert dig(snap["config"], "agents.list.0.id") == "solo"
    err = await call_error(admin, "config.apply", {"config": {"agents": {"list": [{"id": "a"}, {"id": "a"}]}},
                                                   "baseHash": snap["hash"]})
    assert "duplicate agent id" in err["message"]
    await admin.call("config.patch", {"patch": {"agents": None}, "baseHash": snap["hash"]})


async def test_schema_is_a_draft07_json_schema_for_admins_only(connect) -> None:
    admin, writer = await connect(), await connect(WRITE + READ)
    res = await admin.call("config.schema")
    schema = res["schema"]
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#" and schema["title"] == "AnimaConfig"
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert "$schema" not in schema["properties"] and {"gateway", "agents", "talk", "cron", "session"} <= set(
        schema["properties"])
    echo = schema["definitions"]["Echo"]["properties"]
    assert echo["chunkChars"]["minimum"] == 1 and echo["chunkDelayMs"]["minimum"] == 0
    assert schema["definitions"]["Echo"]["additionalProperties"] is False
    assert res["uiHints"]["gateway.auth.token"]["sensitive"] is True
    assert res["uiHints"]["models.providers.*.apiKey"]["sensitive"] is True
    assert isinstance(res["version"], str) and res["generatedAt"].endswith("Z")
    err = await call_error(writer, "config.schema")
    assert (err["code"], err["reason"]) == (403, "MISSING_SCOPE")
    for method in ("config.set", "config.patch", "config.apply"):
        err = await call_error(writer, method, {"raw": "{}"})
        assert err["reason"] == "MISSING_SCOPE", method


async def test_a_write_is_visible_at_once_and_closes_no_socket(connect) -> None:
    admin, reader, bystander = await connect(), await connect(READ), await connect(READ)
    before = await reader.call("config.get")
    res = await set_key(admin, "ui.assistant.name", "Anima")
    seen = await reader.call("config.get")
    assert seen["hash"] == res["hash"] != before["hash"]
    assert dig(seen["config"], "ui.assistant.name") == "Anima"
    await asyncio.sleep(2.5)  # past ANIMA's default restart delay (2 s)
    for conn in (admin, reader, bystander):
        await still_usable(conn)
        assert conn.ws.close_code is None
        events = []
        while not conn.events.empty():
            events.append(conn.events.get_nowait()["event"])
        assert "shutdown" not in events, events
    await set_key(admin, "ui.assistant", None)


async def echo_pieces(conn: GatewayClient, text: str) -> list[str]:
    """Send `text` to the echo backend; the assistant deltas of the run, in order."""
    run_id = f"cfg-{uuid.uuid4().hex[:10]}"
    await conn.call("chat.send", {"sessionKey": f"cfg-{run_id}", "message": text, "idempotencyKey": run_id})
    pieces: list[str] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        frame = await conn.next_event(timeout=deadline - time.monotonic())
        payload = frame.get("payload") or {}
        if payload.get("runId") != run_id:
            continue
        if frame["event"] == "agent" and payload.get("stream") == "assistant":
            pieces.append(payload["data"]["delta"])
        if frame["event"] in ("chat.run.completed", "chat.run.failed"):
            assert frame["event"] == "chat.run.completed", frame
            return pieces
    raise AssertionError(f"run {run_id} did not finish; pieces so far {pieces!r}")


async def test_echo_backend_follows_config_writes_live(connect) -> None:
    admin = await connect()
    text = "abcdefghijklmnopqrst"  # 20 characters
    await set_key(admin, "agents.defaults.echo", {"chunkChars": 5, "chunkDelayMs": 0})
    try:
        assert await echo_pieces(admin, text) == ["abcde", "fghij", "klmno", "pqrst"]
        await set_key(admin, "agents.defaults.echo.chunkChars", 10)
        assert await echo_pieces(admin, text) == ["abcdefghij", "klmnopqrst"]
    finally:
        await set_key(admin, "agents.defaults.echo", None)
    assert len(await echo_pieces(admin, text)) == 2, "back to the default of 16 characters"


# --- the Django admin goes through the same service (README D10) -------------------------------------------------

async def test_admin_form_writes_through_the_config_service(connect, config_gateway) -> None:
    from tests.test_admin_pairing import AdminBrowser, create_superuser

    admin = await connect()
    secret = f"sk-admin-{uuid.uuid4().hex}"
    await set_key(admin, "talk.apiKey", secret)
    username, password = f"cfg-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    await asyncio.to_thread(create_superuser, config_gateway, username, password)
    browser = AdminBrowser(config_gateway.http_url)
    await asyncio.to_thread(browser.login, username, password)

    page = await asyncio.to_thread(browser.open, "/admin/gateway/configdocument/")
    pk = re.search(r"/admin/gateway/configdocument/(\d+)/change/", page.text).group(1)
    form = await asyncio.to_thread(browser.open, f"/admin/gateway/configdocument/{pk}/change/")
    assert form.status == 200 and secret not in form.text and SENTINEL in form.text
    snap = await admin.call("config.get")
    edited = dict(snap["parsed"], ui={"seamColor": "#abcdef"})

    stale = await asyncio.to_thread(browser.open, f"/admin/gateway/configdocument/{pk}/change/",
                                    {"text": json.dumps(edited), "base_hash": "0" * 64})
    assert "changed since this page was loaded" in stale.text
    bad = await asyncio.to_thread(browser.open, f"/admin/gateway/configdocument/{pk}/change/",
                                  {"text": json.dumps({**edited, "bogus": 1}), "base_hash": snap["hash"]})
    assert "unknown key" in bad.text and "/bogus" in bad.text
    assert (await admin.call("config.get"))["hash"] == snap["hash"]

    done = await asyncio.to_thread(browser.open, f"/admin/gateway/configdocument/{pk}/change/",
                                   {"text": json.dumps(edited), "base_hash": snap["hash"]})
    assert done.said("success"), done.messages
    after = await admin.call("config.get")
    assert dig(after["config"], "ui.seamColor") == "#abcdef"
    assert dig(stored_row(config_gateway)["document"], "talk.apiKey") == secret, "the sentinel kept the secret"
    revisions = await asyncio.to_thread(browser.open, "/admin/gateway/configrevision/")
    assert f"admin:{username}" in revisions.text and "ui" in revisions.text and secret not in revisions.text
    await set_key(admin, "talk", None)


# --- several processes (PostgreSQL + Redis) ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Any]:
    from tests.multiproc_util import running_cluster

    yield from running_cluster(request)


@pytest.mark.multiprocess
async def test_a_write_on_one_process_applies_on_the_other_at_once(cluster) -> None:
    a, b = cluster.gateways
    on_a = await GatewayClient.connect(a.url, token=cluster.token, scopes=ADMIN)
    on_b = await GatewayClient.connect(b.url, token=cluster.token, scopes=ADMIN)
    try:
        text = "abcdefghijklmnopqrst"
        assert len(await echo_pieces(on_b, text)) == 2, "B has read the default (16) before the write"
        await set_key(on_a, "agents.defaults.echo", {"chunkChars": 4, "chunkDelayMs": 0})
        await asyncio.sleep(0.2)  # the channel-layer hop to B
        assert await echo_pieces(on_b, text) == ["abcd", "efgh", "ijkl", "mnop", "qrst"]
        assert (await on_b.call("config.get"))["hash"] == (await on_a.call("config.get"))["hash"]

        # two processes, one baseHash: exactly one write wins
        snap = await on_a.call("config.get")
        frames = await asyncio.gather(*(conn.request("config.set", {"path": "ui.seamColor", "value": color,
                                                                    "baseHash": snap["hash"]})
                                        for conn, color in ((on_a, "#aaaaaa"), (on_b, "#bbbbbb"))))
        assert sorted(bool(f["ok"]) for f in frames) == [False, True], frames
        assert [f["error"]["reason"] for f in frames if not f["ok"]] == ["CONFLICT"]
        await still_usable(on_a)
        await still_usable(on_b)
    finally:
        await on_a.close()
        await on_b.close()
