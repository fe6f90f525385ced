"""sessions.* and usage.* over a real socket (chat-sessions-cron.md §1, operations.md §6): the
listing and its filters, previews, resolving keys, every patch field with its aliases and its
errors, reset/delete/compact with their archives (rows are kept, only marked), usage from the
echo backend's transcript usage, a 10,000-entry transcript paged from the index, and the
sessions in the Django admin."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import sqlite3
import time
import uuid
from contextlib import closing
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest

from gateway.chat import messages as msg
from gateway.chat import usage
from gateway.chat.keys import canonical_key
from gateway.client import GatewayClient
from tests.support import ADMIN, READ, WRITE, GatewayServer, call_error
from tests.test_admin_pairing import AdminBrowser, create_superuser


def uid(prefix: str = "s") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_key() -> str:
    return f"agent:main:{uid()}"


async def chat_round(conn: GatewayClient, key: str, text: str, timeout: float = 15) -> str:
    """One echo run to its end; returns the runId."""
    run_id = uid("run")
    ack = await conn.call("chat.send", {"sessionKey": key, "message": text, "idempotencyKey": run_id})
    assert ack == {"runId": run_id, "status": "started"}, ack
    await wait_run_event(conn, run_id, ("chat.run.completed",), timeout)
    return run_id


async def wait_run_event(conn: GatewayClient, run_id: str, names: tuple[str, ...], timeout: float = 15) -> dict:
    async def wait() -> dict:
        while True:
            event = await conn.events.get()
            if event.get("event") in names and (event.get("payload") or {}).get("runId") == run_id:
                return event["payload"]
    return await asyncio.wait_for(wait(), timeout)


async def rows(conn: GatewayClient, **params: Any) -> dict[str, dict]:
    listing = await conn.call("sessions.list", params)
    return {row["key"]: row for row in listing["sessions"]}


def error_of(err: dict) -> tuple[int, str, str]:
    return err["code"], err["reason"], err["message"]


@pytest.fixture
async def admin(client) -> GatewayClient:
    return await client(ADMIN)


@pytest.fixture
def gateway_db(gateway_server: GatewayServer) -> Iterator[sqlite3.Connection]:
    """The gateway's own database, to see what the methods leave behind (archived rows)."""
    with closing(sqlite3.connect(gateway_server.state_dir / "db.sqlite3", timeout=10)) as conn:
        yield conn


def transcript_rows(db: sqlite3.Connection, session_id: str) -> list[tuple[int, str, str | None]]:
    """(seq, role, archived_reason) of every entry of a transcript, archived or not."""
    return db.execute("SELECT seq, role, archived_reason FROM gateway_transcriptentry WHERE session_id = ? "
                      "ORDER BY seq", (uuid.UUID(session_id).hex,)).fetchall()


# --- sessions.list -------------------------------------------------------------------------------------

async def test_list_rows_carry_the_entry_fields(admin) -> None:
    key, label = new_key(), uid("label")
    await admin.call("sessions.patch", {"key": key, "label": label, "thinkingLevel": "low", "sendPolicy": "allow"})
    listing = await admin.call("sessions.list", {"search": key.rsplit(":", 1)[-1]})
    assert listing["path"] == "db:default/sessions" and listing["count"] == 1
    assert listing["defaults"]["modelProvider"] == "echo" and listing["defaults"]["model"] == "echo"
    (row,) = listing["sessions"]
    assert row["key"] == key and row["kind"] == "direct" and row["label"] == label
    assert row["displayName"] == label  # no stored displayName: the label stands in
    assert row["thinkingLevel"] == "low" and row["sendPolicy"] == "allow"
    assert (row["modelProvider"], row["model"]) == ("echo", "echo")
    assert (row["inputTokens"], row["outputTokens"], row["totalTokens"], row["totalTokensFresh"]) == (0, 0, 0, True)
    assert row["systemSent"] is False and row["abortedLastRun"] is False
    uuid.UUID(row["sessionId"])
    assert "derivedTitle" not in row and "lastMessagePreview" not in row


async def test_list_filters_by_label_agent_search_activity_and_limit(admin) -> None:
    tag = uid("tag")
    mine, other_agent = f"agent:main:{tag}-a", f"agent:ops:{tag}-b"
    await admin.call("sessions.patch", {"key": mine, "label": f"{tag}-label"})
    await admin.call("sessions.patch", {"key": other_agent})
    assert set(await rows(admin, search=tag)) == {mine, other_agent}
    assert set(await rows(admin, search=tag.upper())) == {mine, other_agent}, "search ignores case"
    assert set(await rows(admin, search=tag, agentId="OPS")) == {other_agent}
    assert set(await rows(admin, label=f"{tag}-label")) == {mine}
    assert set(await rows(admin, search=f"{tag}-label")) == {mine}, "search matches labels"
    newest_first = list(await rows(admin, search=tag))
    assert newest_first == [other_agent, mine]
    assert list(await rows(admin, search=tag, limit=1)) == [other_agent]
    assert set(await rows(admin, search=tag, activeMinutes=1)) == {mine, other_agent}
    session_id = (await rows(admin, search=tag))[mine]["sessionId"]
    assert list(await rows(admin, search=session_id)) == [mine], "search matches the sessionId"


async def test_list_hides_cron_runs_and_special_keys_unless_asked(admin) -> None:
    job = uid("job")
    await admin.call("sessions.patch", {"key": f"agent:main:cron:{job}"})
    await admin.call("sessions.patch", {"key": f"agent:main:cron:{job}:run:{uuid.uuid4()}"})
    await admin.call("sessions.patch", {"key": "global"})
    assert list(await rows(admin, search=job)) == [f"agent:main:cron:{job}"]
    assert "global" not in await rows(admin)
    with_global = await rows(admin, includeGlobal=True)
    assert with_global["global"]["kind"] == "global"


async def test_list_derived_title_and_last_message_come_from_the_transcript(admin) -> None:
    key = new_key()
    text = "Plan   the quarterly   review of the gateway, then write up every finding in detail please"
    await chat_round(admin, key, text)
    row = (await rows(admin, search=key.rsplit(":", 1)[-1], includeDerivedTitles=True, includeLastMessage=True))[key]
    collapsed = " ".join(text.split())
    assert row["derivedTitle"].endswith("…") and len(row["derivedTitle"]) <= 61
    assert collapsed.startswith(row["derivedTitle"][:-1]) and not row["derivedTitle"][:-1].endswith(" ")
    assert row["lastMessagePreview"] == collapsed
    assert (row["inputTokens"], row["outputTokens"]) == (len(text.split()), len(text.split()))

    empty = new_key()
    await admin.call("sessions.patch", {"key": empty})
    row = (await rows(admin, search=empty.rsplit(":", 1)[-1], includeDerivedTitles=True))[empty]
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert row["derivedTitle"] == f"{row['sessionId'][:8]} ({today})"


# --- sessions.preview ------------------------------------------------------------------------------------

async def test_preview_statuses_limits_and_clipping(admin) -> None:
    key, empty, missing = new_key(), new_key(), new_key()
    await chat_round(admin, key, "first question")
    await chat_round(admin, key, "second question that is rather long")
    await admin.call("sessions.patch", {"key": empty})
    as_given = key.upper()
    res = await admin.call("sessions.preview", {"keys": [as_given, empty, missing, "  "]})
    previews = {p["key"]: p for p in res["previews"]}
    assert set(previews) == {as_given, empty, missing}, "keys are echoed as given; blank ones dropped"
    assert [(i["role"], i["text"]) for i in previews[as_given]["items"]] == [
        ("user", "first question"), ("assistant", "first question"),
        ("user", "second question that is rather long"), ("assistant", "second question that is rather long")]
    assert previews[empty] == {"key": empty, "status": "empty", "items": []}
    assert previews[missing] == {"key": missing, "status": "missing", "items": []}

    clipped = await admin.call("sessions.preview", {"keys": [key], "limit": 0, "maxChars": 1})
    assert clipped["previews"][0]["items"] == [{"role": "assistant", "text": "second question t..."}], \
        "limit is clamped to 1 and maxChars to 20"
    err = await call_error(admin, "sessions.preview", {"keys": []})
    assert err["code"] == 400


def test_preview_text_of_tool_calls_media_and_envelopes() -> None:
    calls = {"role": "assistant", "content": [{"type": "toolCall", "id": "1", "name": "read", "arguments": {}},
                                              {"type": "toolCall", "id": "2", "name": "write", "arguments": {}},
                                              {"type": "toolCall", "id": "3", "name": "exec", "arguments": {}}]}
    assert msg.preview_role(calls) == "tool" and msg.preview_text(calls) == "call read, write +1"
    image = {"role": "user", "content": [{"type": "image", "data": "AAAA", "mimeType": "image/png"}]}
    assert msg.preview_text(image) == "[image]"
    enveloped = {"role": "user", "content": "[WebChat 2025-01-31 12:00 UTC] hello there\n[message_id: abc]"}
    assert msg.preview_text(enveloped) == "hello there"
    assert msg.preview_role({"role": "toolResult", "content": "ok"}) == "tool"
    assert msg.preview_role({"role": "custom", "content": "x"}) == "other"
    assert msg.clip("x" * 30, 20) == "x" * 17 + "..."


# --- sessions.resolve -------------------------------------------------------------------------------------

async def test_resolve_by_key_session_id_and_label(admin) -> None:
    await admin.call("sessions.patch", {"key": "main"})
    for alias in ("main", "MAIN", " agent:main:main ", "agent:MAIN:Main"):
        assert await admin.call("sessions.resolve", {"key": alias}) == {"ok": True, "key": "agent:main:main"}
    bare, label = uid(), uid("label")
    created = await admin.call("sessions.patch", {"key": bare, "label": label})
    key = f"agent:main:{bare}"
    assert (await admin.call("sessions.resolve", {"key": bare.upper()}))["key"] == key
    assert (await admin.call("sessions.resolve", {"label": label}))["key"] == key
    assert (await admin.call("sessions.resolve", {"sessionId": created["entry"]["sessionId"]}))["key"] == key
    assert (await admin.call("sessions.resolve", {"sessionId": key}))["key"] == key, "a key also matches"


async def test_resolve_errors_are_verbatim(admin) -> None:
    err = await call_error(admin, "sessions.resolve", {"key": "main", "sessionId": "x"})
    assert error_of(err) == (400, "INVALID_REQUEST", "Provide either key, sessionId, or label (not multiple)")
    err = await call_error(admin, "sessions.resolve", {"key": "  "})
    assert error_of(err) == (400, "INVALID_REQUEST", "Either key, sessionId, or label is required")
    missing = uid("nosuch")
    err = await call_error(admin, "sessions.resolve", {"key": missing})
    assert error_of(err) == (404, "NOT_FOUND", f"No session found: {missing}")
    err = await call_error(admin, "sessions.resolve", {"label": missing})
    assert error_of(err) == (404, "NOT_FOUND", f"No session found with label: {missing}")
    err = await call_error(admin, "sessions.resolve", {"sessionId": str(uuid.uuid4())})
    assert err["code"] == 404

    label = uid("shared")  # unique per agent, so two agents may both use it
    first, second = f"agent:main:{uid()}", f"agent:ops:{uid()}"
    await admin.call("sessions.patch", {"key": first, "label": label})
    await admin.call("sessions.patch", {"key": second, "label": label})
    err = await call_error(admin, "sessions.resolve", {"label": label})
    assert err["code"] == 400 and err["message"].startswith(f"Multiple sessions found with label: {label} (")
    assert first in err["message"] and second in err["message"]
    assert (await admin.call("sessions.resolve", {"label": label, "agentId": "ops"}))["key"] == second


# --- sessions.patch --------------------------------------------------------------------------------------

async def test_patch_normalises_aliases_and_null_clears(admin) -> None:
    key = new_key()
    res = await admin.call("sessions.patch", {
        "key": key, "thinkingLevel": "ON", "verboseLevel": True, "reasoningLevel": "show", "responseUsage": "on",
        "elevatedLevel": "off", "execHost": "Gateway", "execSecurity": "allowlist", "execAsk": "on-miss",
        "execNode": " mac ", "sendPolicy": "deny", "groupActivation": "mention"})
    entry = res["entry"]
    assert (entry["thinkingLevel"], entry["verboseLevel"], entry["reasoningLevel"], entry["responseUsage"]) == \
        ("low", "on", "on", "tokens")
    assert (entry["elevatedLevel"], entry["execHost"], entry["execSecurity"], entry["execAsk"], entry["execNode"]) == \
        ("off", "gateway", "allowlist", "on-miss", "mac")
    assert (entry["sendPolicy"], entry["groupActivation"]) == ("deny", "mention")
    assert res["resolved"] == {"modelProvider": "echo", "model": "echo"} and res["path"] == "db:default/sessions"

    for raw, level in (("think", "minimal"), ("max", "high"), ("ultra", "high"), ("MEDIUM", "medium")):
        assert (await admin.call("sessions.patch", {"key": key, "thinkingLevel": raw}))["entry"]["thinkingLevel"] == level
    res = await admin.call("sessions.patch", {"key": key, "reasoningLevel": "off", "responseUsage": "off",
                                              "verboseLevel": "all"})
    assert "reasoningLevel" not in res["entry"] and "responseUsage" not in res["entry"]
    assert res["entry"]["verboseLevel"] == "full"
    res = await admin.call("sessions.patch", {"key": key, "thinkingLevel": None, "sendPolicy": None,
                                              "execNode": None, "elevatedLevel": None})
    for field in ("thinkingLevel", "sendPolicy", "execNode", "elevatedLevel"):
        assert field not in res["entry"], field
    assert res["entry"]["execHost"] == "gateway", "absent fields stay as they were"


async def test_patch_invalid_values_are_400_and_change_nothing(admin) -> None:
    key = new_key()
    before = (await admin.call("sessions.patch", {"key": key, "thinkingLevel": "low"}))["entry"]
    cases = {
        "thinkingLevel": ("bogus", "invalid thinkingLevel (use off|minimal|low|medium|high)"),
        "verboseLevel": ("loud", 'invalid verboseLevel (use "on"|"off")'),
        "reasoningLevel": ("maybe", 'invalid reasoningLevel (use "on"|"off"|"stream")'),
        "responseUsage": ("lots", 'invalid responseUsage (use "off"|"tokens"|"full")'),
        "elevatedLevel": ("root", 'invalid elevatedLevel (use "on"|"off"|"ask"|"full")'),
        "execHost": ("cloud", 'invalid execHost (use "sandbox"|"gateway"|"node")'),
        "execSecurity": ("none", 'invalid execSecurity (use "deny"|"allowlist"|"full")'),
        "execAsk": ("never", 'invalid execAsk (use "off"|"on-miss"|"always")'),
        "execNode": ("  ", "invalid execNode: empty"),
        "sendPolicy": ("block", 'invalid sendPolicy (use "allow"|"deny")'),
        "groupActivation": ("never", 'invalid groupActivation (use "mention"|"always")'),
        "thinkingLevel ": ("xhigh", 'thinkingLevel "xhigh" is only supported for openai/gpt-5.x and */gpt-5.x-codex models'),
    }
    for field, (value, message) in cases.items():
        err = await call_error(admin, "sessions.patch", {"key": key, field.strip(): value, "label": uid("never")})
        assert error_of(err) == (400, "INVALID_REQUEST", message), field
    err = await call_error(admin, "sessions.patch", {"key": key, "thinkingLevel": 3})
    assert err["code"] == 400 and "/thinkingLevel" in err["message"]
    after = (await rows(admin, search=key.rsplit(":", 1)[-1]))[key]
    assert after["thinkingLevel"] == "low" and "label" not in after and after["updatedAt"] == before["updatedAt"]


async def test_patch_label_rules(admin) -> None:
    first, second, label = new_key(), new_key(), uid("label")
    await admin.call("sessions.patch", {"key": first, "label": f"  {label}  "})
    assert (await admin.call("sessions.resolve", {"label": label}))["key"] == first, "labels are trimmed"
    err = await call_error(admin, "sessions.patch", {"key": second, "label": label})
    assert error_of(err) == (409, "CONFLICT", f"label already in use: {label}")
    assert second not in await rows(admin, search=second.rsplit(":", 1)[-1]), "a refused patch creates nothing"
    assert (await admin.call("sessions.patch", {"key": first, "label": label}))["ok"], "its own label again is fine"
    assert (await admin.call("sessions.patch", {"key": f"agent:ops:{uid()}", "label": label}))["ok"], \
        "another agent may use the same label"
    err = await call_error(admin, "sessions.patch", {"key": second, "label": "   "})
    assert error_of(err) == (400, "INVALID_REQUEST", "invalid label: empty")
    err = await call_error(admin, "sessions.patch", {"key": second, "label": "x" * 65})
    assert error_of(err) == (400, "INVALID_REQUEST", "invalid label: too long (max 64)")
    await admin.call("sessions.patch", {"key": first, "label": None})
    assert (await admin.call("sessions.patch", {"key": second, "label": label}))["entry"]["label"] == label, \
        "a cleared label is free again"


async def test_patch_model_is_checked_against_the_catalog(admin) -> None:
    key = new_key()
    res = await admin.call("sessions.patch", {"key": key, "model": "openai/gpt-4o-mini"})
    assert (res["entry"]["providerOverride"], res["entry"]["modelOverride"]) == ("openai", "gpt-4o-mini")
    assert res["resolved"] == {"modelProvider": "openai", "model": "gpt-4o-mini"}
    row = (await rows(admin, search=key.rsplit(":", 1)[-1]))[key]
    assert (row["modelProvider"], row["model"]) == ("openai", "gpt-4o-mini")

    for bad, message in (("nosuch/model", 'model not allowed: nosuch/model (unknown provider "nosuch"; use echo, '
                                          'openai, ollama, vllm, llamacpp, anthropic)'),
                         ("gpt-4o", 'invalid model "gpt-4o": use provider/model (providers: echo, openai, ollama, '
                                    'vllm, llamacpp, anthropic)'),
                         ("  ", "invalid model: empty")):
        err = await call_error(admin, "sessions.patch", {"key": key, "model": bad})
        assert error_of(err) == (400, "INVALID_REQUEST", message), bad

    res = await admin.call("sessions.patch", {"key": key, "model": "openai/gpt-5.2", "thinkingLevel": "xhigh"})
    assert res["entry"]["thinkingLevel"] == "xhigh"
    res = await admin.call("sessions.patch", {"key": key, "model": "echo/echo"})
    assert "modelOverride" not in res["entry"] and "providerOverride" not in res["entry"], "the default clears"
    assert res["entry"]["thinkingLevel"] == "high", "an unsupported stored xhigh becomes high"
    await admin.call("sessions.patch", {"key": key, "model": "ollama/llama3.1"})
    res = await admin.call("sessions.patch", {"key": key, "model": None})
    assert "modelOverride" not in res["entry"] and res["resolved"] == {"modelProvider": "echo", "model": "echo"}


async def test_patch_lineage_only_for_subagent_sessions(admin) -> None:
    plain, child = new_key(), f"agent:main:subagent:{uid()}"
    err = await call_error(admin, "sessions.patch", {"key": plain, "spawnedBy": "agent:main:main"})
    assert err["message"] == "spawnedBy is only supported for subagent:* sessions"
    res = await admin.call("sessions.patch", {"key": child, "spawnedBy": "agent:main:main", "spawnDepth": 1})
    assert res["entry"]["spawnedBy"] == "agent:main:main" and res["entry"]["spawnDepth"] == 1
    err = await call_error(admin, "sessions.patch", {"key": child, "spawnedBy": "agent:main:other"})
    assert err["message"] == "spawnedBy cannot be changed once set"
    err = await call_error(admin, "sessions.patch", {"key": child, "spawnedBy": None})
    assert err["message"] == "spawnedBy cannot be cleared once set"
    assert list(await rows(admin, spawnedBy="agent:main:main", search=child.rsplit(":", 1)[-1])) == [child]


async def test_patch_creates_an_unknown_key_and_needs_admin(client, admin) -> None:
    bare = uid()
    res = await admin.call("sessions.patch", {"key": f"  {bare.upper()}  "})
    assert res["key"] == f"agent:main:{bare}" and res["entry"]["totalTokensFresh"] is True
    reader = await client(READ)
    err = await call_error(reader, "sessions.patch", {"key": bare})
    assert (err["code"], err["reason"]) == (403, "MISSING_SCOPE")
    err = await call_error(admin, "sessions.patch", {})
    assert err["code"] == 400


# --- sessions.reset ----------------------------------------------------------------------------------------

async def test_reset_swaps_the_transcript_and_archives_the_old_one(admin, gateway_db) -> None:
    key = new_key()
    await chat_round(admin, key, "remember this")
    patched = await admin.call("sessions.patch", {"key": key, "label": uid("label"), "thinkingLevel": "high",
                                                  "model": "openai/gpt-4o", "elevatedLevel": "on"})
    old_id = patched["entry"]["sessionId"]
    res = await admin.call("sessions.reset", {"key": key.upper(), "reason": "new"})
    entry = res["entry"]
    assert res["ok"] is True and res["key"] == key and entry["sessionId"] != old_id
    assert entry["label"] == patched["entry"]["label"] and entry["thinkingLevel"] == "high"
    assert "modelOverride" not in entry and "elevatedLevel" not in entry, "overrides and elevated are dropped"
    assert entry["model"] == "echo", "the model the last run used is kept"
    assert (entry["inputTokens"], entry["outputTokens"], entry["totalTokens"], entry["totalTokensFresh"]) == \
        (0, 0, 0, True)
    assert (await admin.call("chat.history", {"sessionKey": key}))["messages"] == []
    assert [(role, reason) for _, role, reason in transcript_rows(gateway_db, old_id)] == \
        [("user", "reset"), ("assistant", "reset")], "the rows are kept, marked archived"
    err = await call_error(admin, "sessions.reset", {"key": key, "reason": "later"})
    assert err["code"] == 400


async def test_reset_aborts_the_active_run_first(admin, gateway_db) -> None:
    key = new_key()
    run_id = uid("run")
    text = "word " * 4000  # 20,000 characters: about 25 s of echo at the default pace
    await admin.call("chat.send", {"sessionKey": key, "message": text, "idempotencyKey": run_id})
    await wait_run_event(admin, run_id, ("chat.delta",))
    old_id = (await admin.call("chat.history", {"sessionKey": key}))["sessionId"]
    started = time.monotonic()
    res = await admin.call("sessions.reset", {"key": key})
    assert time.monotonic() - started < 10
    failed = await wait_run_event(admin, run_id, ("chat.run.failed",))
    assert failed["state"] == "aborted"
    assert res["entry"]["sessionId"] != old_id
    assert (await admin.call("chat.history", {"sessionKey": key}))["messages"] == []
    archived = transcript_rows(gateway_db, old_id)
    assert [(role, reason) for _, role, reason in archived] == [("user", "reset"), ("assistant", "reset")], \
        "the partial reply was stored before the transcript was archived"


# --- sessions.delete -----------------------------------------------------------------------------------------

async def test_delete_archives_and_refuses_the_main_session(admin, gateway_db) -> None:
    for alias in ("main", "MAIN", "agent:main:main"):
        err = await call_error(admin, "sessions.delete", {"key": alias})
        assert error_of(err) == (400, "INVALID_REQUEST", "Cannot delete the main session (agent:main:main).")
    key = new_key()
    await chat_round(admin, key, "delete me")
    session_id = (await admin.call("chat.history", {"sessionKey": key}))["sessionId"]
    res = await admin.call("sessions.delete", {"key": key})
    assert res == {"ok": True, "key": key, "deleted": True, "archived": [session_id]}
    assert key not in await rows(admin, search=key.rsplit(":", 1)[-1])
    assert {reason for _, _, reason in transcript_rows(gateway_db, session_id)} == {"deleted"}
    assert (await admin.call("sessions.delete", {"key": key}))["deleted"] is False

    kept = new_key()
    await chat_round(admin, kept, "keep my transcript")
    kept_id = (await admin.call("chat.history", {"sessionKey": kept}))["sessionId"]
    res = await admin.call("sessions.delete", {"key": kept, "deleteTranscript": False})
    assert res["deleted"] is True and res["archived"] == []
    assert {reason for _, _, reason in transcript_rows(gateway_db, kept_id)} == {None}


# --- sessions.compact -----------------------------------------------------------------------------------------

async def test_compact_keeps_the_newest_entries(admin, gateway_db) -> None:
    missing, empty, key = new_key(), new_key(), new_key()
    assert await admin.call("sessions.compact", {"key": missing}) == \
        {"ok": True, "key": missing, "compacted": False, "reason": "no sessionId"}
    await admin.call("sessions.patch", {"key": empty})
    assert (await admin.call("sessions.compact", {"key": empty}))["reason"] == "no transcript"
    for n in range(3):
        await chat_round(admin, key, f"turn {n}")
    assert await admin.call("sessions.compact", {"key": key, "maxLines": 6}) == \
        {"ok": True, "key": key, "compacted": False, "kept": 6}
    res = await admin.call("sessions.compact", {"key": key, "maxLines": 3})
    assert res == {"ok": True, "key": key, "compacted": True, "archived": 3, "kept": 3}
    history = (await admin.call("chat.history", {"sessionKey": key}))["messages"]
    assert [m["role"] for m in history] == ["assistant", "user", "assistant"]
    assert msg.text_of(history[-1]) == "turn 2"
    session_id = (await admin.call("chat.history", {"sessionKey": key}))["sessionId"]
    assert [reason for _, _, reason in transcript_rows(gateway_db, session_id)] == ["bak"] * 3 + [None] * 3
    row = (await rows(admin, search=key.rsplit(":", 1)[-1]))[key]
    assert "inputTokens" not in row and "totalTokens" not in row and row["totalTokensFresh"] is False, \
        "the counters no longer describe the context"
    err = await call_error(admin, "sessions.compact", {"key": key, "maxLines": 0})
    assert err["code"] == 400


# --- usage ------------------------------------------------------------------------------------------------------

async def test_sessions_usage_of_one_session(admin) -> None:
    key = new_key()
    first, second = "one two three", "four five"
    await chat_round(admin, key, first)
    await chat_round(admin, key, second)
    res = await admin.call("sessions.usage", {"key": key})
    (row,) = res["sessions"]
    assert row["key"] == key and row["agentId"] == "main" and row["model"] == "echo"
    u = row["usage"]
    assert (u["input"], u["output"], u["totalTokens"]) == (5, 5, 10)
    assert u["missingCostEntries"] == 2 and u["totalCost"] == 0, "echo reports no cost"
    assert u["messageCounts"] == {"total": 4, "user": 2, "assistant": 2, "toolCalls": 0, "toolResults": 0, "errors": 0}
    assert u["latency"]["count"] == 2 and u["firstActivity"] <= u["lastActivity"]
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert u["activityDates"] == [today] and u["dailyBreakdown"] == [{"date": today, "tokens": 10, "cost": 0.0}]
    assert u["modelUsage"][0]["provider"] == "echo" and u["modelUsage"][0]["count"] == 2
    assert res["totals"]["totalTokens"] == 10
    assert res["aggregates"]["byAgent"] == [{"agentId": "main", "totals": res["totals"]}]
    assert res["aggregates"]["daily"][0]["messages"] == 4

    past = (datetime.now(timezone.utc) - timedelta(days=40)).strftime("%Y-%m-%d")
    older = await admin.call("sessions.usage", {"key": key, "startDate": past, "endDate": past})
    assert (older["startDate"], older["endDate"]) == (past, past) and older["sessions"][0]["usage"] is None
    assert (await admin.call("sessions.usage", {"key": new_key()}))["sessions"] == []


async def test_usage_timeseries_and_logs(admin) -> None:
    key = new_key()
    await chat_round(admin, key, "alpha beta")
    await chat_round(admin, key, "gamma")
    series = await admin.call("sessions.usage.timeseries", {"key": key})
    assert [(p["totalTokens"], p["cumulativeTokens"]) for p in series["points"]] == [(4, 4), (2, 6)]
    assert series["sessionId"] == (await admin.call("chat.history", {"sessionKey": key}))["sessionId"]
    logs = (await admin.call("sessions.usage.logs", {"key": key, "limit": 3}))["logs"]
    assert [(e["role"], e["content"]) for e in logs] == [("assistant", "alpha beta"), ("user", "gamma"),
                                                          ("assistant", "gamma")]
    assert logs[-1]["tokens"] == 2 and "cost" not in logs[-1] and "tokens" not in logs[1]

    err = await call_error(admin, "sessions.usage.timeseries", {})
    assert error_of(err) == (400, "INVALID_REQUEST", "key is required for timeseries")
    err = await call_error(admin, "sessions.usage.logs", {"key": ""})
    assert error_of(err) == (400, "INVALID_REQUEST", "key is required for logs")
    missing = new_key()
    err = await call_error(admin, "sessions.usage.timeseries", {"key": missing})
    assert error_of(err) == (404, "NOT_FOUND", f"No transcript found for session: {missing}")
    assert (await admin.call("sessions.usage.logs", {"key": missing})) == {"logs": []}


async def test_usage_cost_and_status(client) -> None:
    reader, writer = await client(READ), await client(WRITE + READ)
    await chat_round(writer, new_key(), "six seven eight")
    cost = await reader.call("usage.cost", {"days": "7"})
    assert cost["days"] == 7 and cost["totals"]["output"] >= 3 and cost["totals"]["missingCostEntries"] >= 1
    today = datetime.now().strftime("%Y-%m-%d")
    assert cost["daily"][-1]["date"] == today
    ranged = await reader.call("usage.cost", {"startDate": "2020-01-01", "endDate": "2020-01-03"})
    assert ranged["days"] == 3 and ranged["daily"] == [] and ranged["totals"]["totalTokens"] == 0
    err = await call_error(reader, "usage.cost", {"days": "soon"})
    assert err["code"] == 400
    status = await reader.call("usage.status", {})
    assert status["providers"] == [] and isinstance(status["updatedAt"], int)


def test_usage_reads_every_usage_spelling_and_prices_explicit_costs() -> None:
    assert usage.normalize_usage({"prompt_tokens": 3, "completion_tokens": 4}) == \
        {"input": 3, "output": 4, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 7}
    assert usage.normalize_usage({"nothing": 1}) is None
    message = {"role": "assistant", "usage": {"input": 1000, "output": 10,
                                              "cost": {"input": 0.5, "output": 0.25, "total": 0.75}}}
    assert usage.Pricing().cost(message, usage.normalize_usage(message["usage"]))["total"] == 0.75
    t0 = 1_700_000_000_000
    tally = usage.Tally().feed([
        ({"role": "user", "content": "hi"}, t0),
        ({"role": "assistant", "content": [{"type": "toolCall", "id": "1", "name": "exec", "arguments": {}}],
          "usage": message["usage"], "stopReason": "toolUse"}, t0 + 1500),
        ({"role": "toolResult", "toolName": "exec", "isError": True, "content": "boom"}, t0 + 1600),
        ({"role": "assistant", "content": "sorry", "stopReason": "error"}, t0 + 1700),
    ], usage.Pricing())
    cost = tally.session_cost()
    assert cost["messageCounts"] == {"total": 4, "user": 1, "assistant": 2, "toolCalls": 1, "toolResults": 1,
                                     "errors": 2}
    assert cost["toolUsage"] == {"totalCalls": 1, "uniqueTools": 1, "tools": [{"name": "exec", "count": 1}]}
    assert cost["latency"] == {"count": 1, "avgMs": 1500, "p95Ms": 1500, "minMs": 1500, "maxMs": 1500}
    assert cost["totalCost"] == 0.75 and cost["missingCostEntries"] == 0


# --- keys ---------------------------------------------------------------------------------------------------------

def test_canonical_keys() -> None:
    def canon(raw: str, **kw: Any) -> str:
        return canonical_key(raw, main=kw.get("main", "main"), default_agent="main",
                             scope_global=kw.get("scope_global", False))

    for alias in ("main", "MAIN", " main ", "agent:main:main", "AGENT:Main:MAIN"):
        assert canon(alias) == "agent:main:main", alias
    assert canon("Work") == "agent:main:work"
    assert canon("agent:Ops:Telegram:Group:42") == "agent:ops:telegram:group:42"
    assert canon("agent:ops:main") == "agent:ops:main"
    assert canon("home", main="home") == "agent:main:home" and canon("agent:ops:main", main="home") == "agent:ops:home"
    assert canon("main", scope_global=True) == "global" and canon("GLOBAL") == "global" and canon("Unknown") == "unknown"


# --- a long transcript ------------------------------------------------------------------------------------------

async def test_a_page_of_a_10000_entry_transcript_is_fast(admin, gateway_db) -> None:
    key = new_key()
    session_id = (await admin.call("sessions.patch", {"key": key}))["entry"]["sessionId"]
    now = int(time.time() * 1000)
    entries = []
    for seq in range(1, 10_001):
        role = "user" if seq % 2 else "assistant"
        message = {"role": role, "content": [{"type": "text", "text": f"message {seq} " + "x" * 200}], "timestamp": now}
        entries.append((secrets.token_hex(8), uuid.UUID(session_id).hex, "", seq, "message", role,
                        json.dumps(message), "", now))
    with gateway_db:
        gateway_db.executemany("INSERT INTO gateway_transcriptentry (entry_id, session_id, parent_id, seq, type, role, "
                       "message, run_id, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", entries)
    await admin.call("chat.history", {"sessionKey": key, "limit": 50})  # warm up
    started = time.monotonic()
    history = await admin.call("chat.history", {"sessionKey": key, "limit": 50})
    preview = await admin.call("sessions.preview", {"keys": [key], "limit": 50})
    logs = await admin.call("sessions.usage.logs", {"key": key, "limit": 50})
    elapsed = time.monotonic() - started
    assert [msg.text_of(m).split()[1] for m in history["messages"]] == [str(n) for n in range(9951, 10_001)]
    assert len(preview["previews"][0]["items"]) == 50 and len(logs["logs"]) == 50
    assert elapsed < 1.0, f"three 50-entry pages took {elapsed:.2f}s"


@pytest.mark.django_db
def test_transcript_pages_are_read_from_the_index() -> None:
    from django.db import connection

    from gateway.chat.queries import live_messages
    from gateway.models import TranscriptEntry

    if connection.vendor != "sqlite":
        pytest.skip("the plan text checked here is SQLite's")
    sid = uuid.uuid4()
    plans = [
        TranscriptEntry.objects.filter(session_id=sid, archived_reason__isnull=True).order_by("-seq")[:50].explain(),
        live_messages(sid).order_by("-seq").values_list("message", flat=True)[:12].explain(),
        live_messages(sid).filter(role="user").order_by("seq")[:1].explain(),
    ]
    for plan in plans:
        assert "USING INDEX transcript_page" in plan and "TEMP B-TREE" not in plan, plan


# --- the Django admin --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def operator(gateway_server: GatewayServer) -> AdminBrowser:
    username, password = f"op-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    create_superuser(gateway_server, username, password)
    browser = AdminBrowser(gateway_server.http_url)
    browser.login(username, password)
    return browser


async def test_admin_shows_sessions_transcripts_and_runs_read_only(admin, operator) -> None:
    key = new_key()
    run_id = await chat_round(admin, key, "visible in the admin <b>")
    history = await admin.call("chat.history", {"sessionKey": key})
    session_id = history["sessionId"]

    listing = await asyncio.to_thread(operator.open, f"/admin/gateway/session/?q={key}")
    assert listing.status == 200 and key in listing.text
    pk = re.search(r"/admin/gateway/session/(\d+)/change/", listing.text).group(1)
    page = await asyncio.to_thread(operator.open, f"/admin/gateway/session/{pk}/change/")
    assert page.status == 200 and "visible in the admin &lt;b&gt;" in page.text, "the transcript, escaped"
    assert f"session_id__exact={session_id}" in page.text and 'name="_save"' not in page.text

    entries = await asyncio.to_thread(operator.open, f"/admin/gateway/transcriptentry/?session_id__exact={session_id}")
    assert entries.status == 200 and entries.text.count("visible in the admin") == 2
    runs = await asyncio.to_thread(operator.open, f"/admin/gateway/run/?q={run_id}")
    assert runs.status == 200 and run_id in runs.text
    for model in ("session", "transcriptentry", "run"):
        assert (await asyncio.to_thread(operator.open, f"/admin/gateway/{model}/add/")).status == 403
    search = await asyncio.to_thread(operator.open, "/admin/gateway/transcriptentry/?q=not-a-uuid")
    assert search.status == 200
