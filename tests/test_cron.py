"""cron.* over a real socket (chat-sessions-cron.md §5; README D2, D3, D10): every failure path
answers with its reason (400 with the JSON path of each bad field, 404 for an unknown job, 403
without admin scope), lenient input is normalised, patches merge, an agentTurn job runs through
the chat run machinery (events, transcript), a failing one backs off, a second concurrent
cron.run is refused, and the admin's *Run now* and delete go through the same services."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

from gateway.client import GatewayClient
from tests.support import ADMIN, PROJECT_DIR, READ, GatewayServer, call_error, free_port, gateway_env
from tests.test_admin_pairing import AdminBrowser, create_superuser, in_thread

HOUR = 3_600_000


def uid(prefix: str = "cron") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def iso_in(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def system_job(**extra: Any) -> dict[str, Any]:
    return {"name": uid(), "schedule": {"kind": "every", "everyMs": HOUR}, "sessionTarget": "main",
            "wakeMode": "next-heartbeat", "payload": {"kind": "systemEvent", "text": "hello"}, **extra}


def agent_job(message: str, **extra: Any) -> dict[str, Any]:
    return {"name": uid(), "schedule": {"kind": "every", "everyMs": HOUR},
            "payload": {"kind": "agentTurn", "message": message, **extra}}


async def cron_event(conn: GatewayClient, job_id: str, action: str, timeout: float = 20) -> dict[str, Any]:
    async def wait() -> dict[str, Any]:
        while True:
            event = await conn.events.get()
            payload = event.get("payload") or {}
            if event.get("event") == "cron" and payload.get("jobId") == job_id and payload.get("action") == action:
                return payload
    return await asyncio.wait_for(wait(), timeout)


@pytest.fixture
async def admin(client: Any) -> AsyncIterator[GatewayClient]:
    conn = await client(ADMIN)
    added: list[str] = []
    conn.cleanup = added  # type: ignore[attr-defined]
    yield conn
    for job_id in added:
        await conn.call("cron.remove", {"id": job_id})


async def add(admin: GatewayClient, params: dict[str, Any]) -> dict[str, Any]:
    job = await admin.call("cron.add", params)
    admin.cleanup.append(job["id"])  # type: ignore[attr-defined]
    return job


def paths(error: dict[str, Any]) -> list[str]:
    return [e["path"] for e in (error.get("details") or {}).get("errors", [])]


# --- validation -------------------------------------------------------------------------------------

async def test_add_reports_each_bad_field_with_its_json_path(admin: GatewayClient) -> None:
    params = system_job(name=5, schedule={"kind": "every", "everyMs": "1000"})
    error = await call_error(admin, "cron.add", params)
    assert (error["code"], error["reason"]) == (400, "INVALID_REQUEST"), error
    assert paths(error) == ["/name", "/schedule/everyMs"], error
    assert "at /name:" in error["message"] and "at /schedule/everyMs:" in error["message"], error


@pytest.mark.parametrize(("schedule", "says"), [
    ({"kind": "cron", "expr": "0 9 * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
    ({"kind": "cron", "expr": "61 * * * *"}, "Invalid cron expression"),
    ({"kind": "cron", "expr": "0 0 31 2 *"}, "never matches"),
    ({"kind": "at", "at": "next tuesday"}, "expected ISO-8601"),
    ({"kind": "at", "at": iso_in(-120)}, "in the past"),
    ({"kind": "at", "at": iso_in(11 * 365 * 86400)}, "too far in the future"),
    ({"kind": "every", "everyMs": 0}, "everyMs"),
    ({"kind": "every", "everyMs": 2**63}, "/schedule/everyMs"),  # beyond any column: 400, not 500
    ({"kind": "every", "everyMs": 60_000, "anchorMs": 2**62}, "/schedule/anchorMs"),
    ({"kind": "at", "at": "99999999999999999999"}, "too far in the future"),
    ({"kind": "weekly"}, "schedule"),
])
async def test_add_rejects_bad_schedules(admin: GatewayClient, schedule: dict[str, Any], says: str) -> None:
    name = uid()
    error = await call_error(admin, "cron.add", system_job(name=name, schedule=schedule))
    assert (error["code"], error["reason"]) == (400, "INVALID_REQUEST"), error
    assert says in error["message"], error
    jobs = (await admin.call("cron.list", {"includeDisabled": True}))["jobs"]
    assert all(j["name"] != name for j in jobs)


async def test_add_accepts_an_at_up_to_a_minute_in_the_past(admin: GatewayClient) -> None:
    job = await add(admin, system_job(schedule={"kind": "at", "at": iso_in(-20)}))
    assert job["state"]["nextRunAtMs"] <= int(time.time() * 1000)


@pytest.mark.parametrize(("params", "says"), [
    ({"sessionTarget": "isolated"}, 'isolated cron jobs require payload.kind="agentTurn"'),
    ({"delivery": {"mode": "announce"}}, "only supported for sessionTarget=\"isolated\""),
    ({"wakeMode": "later"}, "/wakeMode"),
    ({"payload": {"kind": "agentTurn", "message": "x", "timeoutSeconds": 0}}, "/payload"),
    ({"payload": {"kind": "agentTurn", "message": "x", "timeoutSeconds": 10**12}}, "/payload"),
    ({"payload": {"kind": "systemEvent", "text": "x" * 100_001}}, "/payload"),
])
async def test_add_rejects_inconsistent_jobs(admin: GatewayClient, params: dict[str, Any], says: str) -> None:
    error = await call_error(admin, "cron.add", system_job(**params))
    assert (error["code"], error["reason"]) == (400, "INVALID_REQUEST"), error
    assert says in error["message"], error


async def test_update_with_an_out_of_range_interval_is_400_and_keeps_the_job(admin: GatewayClient) -> None:
    job = await add(admin, system_job(schedule={"kind": "every", "everyMs": 60_000}))
    error = await call_error(admin, "cron.update", {"id": job["id"],
                                                    "patch": {"schedule": {"kind": "every", "everyMs": 2**63 - 1}}})
    assert (error["code"], error["reason"]) == (400, "INVALID_REQUEST"), error
    listed = [j for j in (await admin.call("cron.list", {"includeDisabled": True}))["jobs"] if j["id"] == job["id"]]
    assert listed and listed[0]["schedule"]["everyMs"] == 60_000


async def test_add_normalises_lenient_input(admin: GatewayClient) -> None:
    at_ms = int(time.time() * 1000) + HOUR
    job = await add(admin, {"job": {"schedule": {"atMs": at_ms}, "text": "Water the plants\nsecond line"}})
    assert job["schedule"]["kind"] == "at" and job["state"]["nextRunAtMs"] == at_ms, job
    assert job["payload"] == {"kind": "systemEvent", "text": "Water the plants\nsecond line"}, job
    assert (job["name"], job["sessionTarget"], job["wakeMode"], job["deleteAfterRun"]) == (
        "Water the plants", "main", "now", True), job

    turn = await add(admin, {"schedule": {"expr": "0 9 * * 1", "tz": "UTC"},
                             "payload": {"kind": "AGENTTURN", "message": "weekly report"}})
    assert turn["schedule"]["kind"] == "cron" and turn["payload"]["kind"] == "agentTurn", turn
    assert turn["sessionTarget"] == "isolated" and turn["delivery"] == {"mode": "announce"}, turn


async def test_reader_cannot_change_jobs(client: Any) -> None:
    reader = await client(READ)
    error = await call_error(reader, "cron.add", system_job())
    assert (error["code"], error["reason"]) == (403, "MISSING_SCOPE"), error
    assert isinstance((await reader.call("cron.list", {}))["jobs"], list)


# --- ids ----------------------------------------------------------------------------------------------

async def test_unknown_and_missing_job_ids(admin: GatewayClient) -> None:
    ghost = str(uuid.uuid4())
    for method, params in (("cron.update", {"jobId": ghost, "patch": {}}), ("cron.run", {"jobId": ghost}),
                           ("cron.run", {"id": "not-a-uuid"})):
        error = await call_error(admin, method, params)
        assert (error["code"], error["reason"]) == (404, "NOT_FOUND"), (method, error)
        assert "unknown cron job id" in error["message"]
    assert await admin.call("cron.remove", {"id": ghost}) == {"ok": True, "removed": False}
    assert await admin.call("cron.runs", {"id": ghost}) == {"entries": []}
    for method, params, path in (("cron.remove", {}, "/jobId"), ("cron.update", {"id": ghost}, "/patch"),
                                 ("cron.runs", {"id": ghost, "limit": 0}, "/limit"),
                                 ("cron.run", {"id": ghost, "mode": "later"}, "/mode")):
        error = await call_error(admin, method, params)
        assert (error["code"], error["reason"]) == (400, "INVALID_REQUEST"), (method, error)
        assert path in error["message"], (method, error)


# --- update ---------------------------------------------------------------------------------------

async def test_update_merges_payload_fields_and_rebuilds_on_kind_change(admin: GatewayClient) -> None:
    job = await add(admin, agent_job("first", model="echo/echo"))
    merged = await admin.call("cron.update", {"id": job["id"], "patch": {"payload": {"message": "second"}}})
    assert merged["payload"] == {"kind": "agentTurn", "message": "second", "model": "echo/echo"}, merged

    error = await call_error(admin, "cron.update", {"id": job["id"], "patch": {"payload": {"kind": "systemEvent"}}})
    assert error["reason"] == "INVALID_REQUEST" and "/payload" in error["message"], error

    to_main = await admin.call("cron.update", {"id": job["id"], "patch": {
        "sessionTarget": "main", "payload": {"kind": "systemEvent", "text": "now a reminder"}}})
    assert to_main["payload"] == {"kind": "systemEvent", "text": "now a reminder"}, to_main
    assert "delivery" not in to_main, "a switch to main drops delivery"

    bad = await call_error(admin, "cron.update",
                           {"id": job["id"], "patch": {"schedule": {"kind": "cron", "expr": "x"}}})
    assert bad["reason"] == "INVALID_REQUEST", bad
    row = next(j for j in (await admin.call("cron.list", {}))["jobs"] if j["id"] == job["id"])
    assert row["schedule"] == to_main["schedule"] and row["updatedAtMs"] == to_main["updatedAtMs"], row


# --- runs -----------------------------------------------------------------------------------------

async def test_agent_turn_job_runs_through_the_chat_run_machinery(admin: GatewayClient, client: Any) -> None:
    reader = await client(READ)
    job = await add(admin, agent_job("status of the garden"))
    assert await admin.call("cron.run", {"jobId": job["id"]}, timeout=60) == {"ok": True, "ran": True}
    finished = await cron_event(reader, job["id"], "finished")
    assert finished["status"] == "ok", finished
    key = finished["sessionKey"]
    assert key.startswith(f"agent:main:cron:{job['id']}:run:") and finished["sessionId"], finished
    assert "status of the garden" in finished["summary"], finished

    history = (await admin.call("chat.history", {"sessionKey": key}))["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"], history
    prompt = history[0]["content"][0]["text"] if isinstance(history[0]["content"], list) else history[0]["content"]
    assert prompt.startswith(f"[cron:{job['id']} {job['name']}] status of the garden"), prompt

    entries = (await reader.call("cron.runs", {"id": job["id"]}))["entries"]
    assert [(e["status"], e["sessionKey"]) for e in entries] == [("ok", key)], entries


async def test_announce_delivers_the_summary_through_an_outbound_channel(admin: GatewayClient) -> None:
    marker = uid()
    job = await add(admin, {**agent_job(f"report {marker}"), "delivery": {"mode": "announce", "channel": "log",
                                                                         "to": "ops-room"}})
    await admin.call("cron.run", {"id": job["id"]}, timeout=60)
    entries = (await admin.call("cron.runs", {"id": job["id"]}))["entries"]
    assert [e["status"] for e in entries] == ["ok"], entries
    lines = (await admin.call("logs.tail", {"limit": 200}))["lines"]
    assert any(marker in line and "ops-room" in line for line in lines), lines[-5:]


@pytest.mark.parametrize(("best_effort", "status"), [(False, "error"), (True, "ok")])
async def test_announce_to_an_unknown_channel_fails_the_job_unless_best_effort(admin: GatewayClient,
                                                                               best_effort: bool,
                                                                               status: str) -> None:
    job = await add(admin, {**agent_job("report"), "delivery": {"mode": "announce", "channel": "nosuchchannel",
                                                                "to": "x", "bestEffort": best_effort}})
    await admin.call("cron.run", {"id": job["id"]}, timeout=60)
    entries = (await admin.call("cron.runs", {"id": job["id"]}))["entries"]
    assert [e["status"] for e in entries] == [status], entries
    if status == "error":
        assert "delivery failed" in entries[0]["error"] and "nosuchchannel" in entries[0]["error"], entries


async def test_failing_agent_turn_counts_an_error_and_backs_off(admin: GatewayClient) -> None:
    job = await add(admin, agent_job("hi", model="nosuch/model"))
    await admin.call("cron.run", {"id": job["id"]}, timeout=60)
    entries = (await admin.call("cron.runs", {"id": job["id"]}))["entries"]
    assert [e["status"] for e in entries] == ["error"] and entries[0].get("error"), entries
    ended = entries[0]["ts"]
    row = next(j for j in (await admin.call("cron.list", {}))["jobs"] if j["id"] == job["id"])
    assert row["state"]["consecutiveErrors"] == 1 and row["state"]["lastStatus"] == "error", row
    assert row["state"]["nextRunAtMs"] >= ended + 30_000, row


async def test_second_concurrent_run_is_refused(admin: GatewayClient, client: Any) -> None:
    reader = await client(READ)
    job = await add(admin, agent_job("slow " * 400))  # the echo backend streams this for ~2.5 s
    first = asyncio.ensure_future(admin.call("cron.run", {"id": job["id"]}, timeout=60))
    await cron_event(reader, job["id"], "started")
    second = await admin.call("cron.run", {"id": job["id"], "mode": "force"})
    assert second == {"ok": True, "ran": False, "reason": "already-running"}, second
    assert await first == {"ok": True, "ran": True}


# --- admin ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def operator(gateway_server: GatewayServer) -> Iterator[AdminBrowser]:
    username, password = f"cron-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    create_superuser(gateway_server, username, password)
    browser = AdminBrowser(gateway_server.http_url)
    browser.login(username, password)
    yield browser


def admin_action(browser: AdminBrowser, action: str, job_id: str) -> Any:
    return browser.open("/admin/cron/cronjob/", {"action": action, "index": 0, "select_across": 0,
                                                 "_selected_action": [job_id]})


async def test_admin_run_now_and_delete_go_through_the_services(operator: AdminBrowser, admin: GatewayClient,
                                                                client: Any) -> None:
    reader = await client(READ)
    job = await add(admin, system_job())
    page = await in_thread(admin_action, operator, "run_now", job["id"])
    assert page.status == 200 and f"{job['name']}: ran" in [m.lower() for m in page.said("success")], page.messages
    assert (await cron_event(reader, job["id"], "finished"))["status"] == "ok"
    assert [e["status"] for e in (await reader.call("cron.runs", {"id": job["id"]}))["entries"]] == ["ok"]

    page = await in_thread(operator.open, f"/admin/cron/cronjob/{job['id']}/change/")
    assert page.status == 200 and job["name"] in page.text

    page = await in_thread(admin_action, operator, "delete_jobs", job["id"])
    assert page.status == 200, page.text[:500]
    await cron_event(reader, job["id"], "removed")
    assert await admin.call("cron.remove", {"id": job["id"]}) == {"ok": True, "removed": False}


def change_form(browser: AdminBrowser, job: dict[str, Any], **changes: str) -> Any:
    data = {"name": job["name"], "description": "", "agent_id": "", "enabled": "on", "delete_after_run": "unknown",
            "schedule": json.dumps(job["schedule"]), "session_target": job["sessionTarget"],
            "wake_mode": job["wakeMode"], "payload": json.dumps(job["payload"]), "delivery": "", "_save": "Save",
            **changes}
    return browser.open(f"/admin/cron/cronjob/{job['id']}/change/", data)


async def test_admin_edit_validates_and_emits_updated(operator: AdminBrowser, admin: GatewayClient,
                                                      client: Any) -> None:
    reader = await client(READ)
    job = await add(admin, system_job())
    bad = {"schedule": json.dumps({"kind": "cron", "expr": "99 * * * *"})}
    page = await in_thread(lambda: change_form(operator, job, **bad))
    assert page.status == 200 and "Invalid cron expression" in page.text, page.text[-2000:]

    schedule = {"kind": "cron", "expr": "15 7 * * *", "tz": "Europe/Berlin"}
    good = {"schedule": json.dumps(schedule), "description": "from the admin"}
    page = await in_thread(lambda: change_form(operator, job, **good))
    assert page.status == 200 and page.url.endswith("/admin/cron/cronjob/"), page.text[-2000:]
    event = await cron_event(reader, job["id"], "updated")
    row = next(j for j in (await reader.call("cron.list", {}))["jobs"] if j["id"] == job["id"])
    assert row["schedule"] == schedule and row["description"] == "from the admin", row
    assert event["nextRunAtMs"] == row["state"]["nextRunAtMs"]


# --- the scheduler under plain daphne, with no client (README D11) -------------------------------------

SEED_JOBS = """
from cron import services
from cron.models import CronJob
from gateway.protocol.events import now_ms
now = now_ms()
missed = services.add_job({"name": "missed", "schedule": {"kind": "every", "everyMs": 3600000},
                           "payload": {"kind": "systemEvent", "text": "missed"}}, now - 4 * 3600000)
CronJob.objects.filter(pk=missed.pk).update(next_run_at_ms=now - 3 * 3600000)  # three slots missed while down
services.add_job({"name": "soon", "schedule": {"kind": "at", "at": str(now + 2000)},
                  "payload": {"kind": "systemEvent", "text": "soon"}}, now)
"""

READ_RUNS = """
import json
from cron.models import CronJob, CronRun
runs = [(r.job_id.hex, r.status) for r in CronRun.objects.all()]
jobs = {j.id.hex: [j.name, j.next_run_at_ms] for j in CronJob.objects.all()}
print(json.dumps({"runs": runs, "jobs": jobs}))
"""


def manage_shell(env: dict[str, str], code: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=PROJECT_DIR, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


async def test_plain_daphne_fires_due_jobs_once_with_no_client_connected(tmp_path: Path) -> None:
    env = gateway_env(tmp_path, secrets.token_hex(16))
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=PROJECT_DIR, env=env,
                   capture_output=True, timeout=120, check=True)
    manage_shell(env, SEED_JOBS)
    port = free_port()
    with open(tmp_path / "daphne.out", "wb") as out:
        daphne = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                                   "anima_site.asgi:application"], cwd=PROJECT_DIR, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 40
        while True:
            state = json.loads(manage_shell(env, READ_RUNS).strip().splitlines()[-1])
            if len(state["runs"]) >= 2 or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        await asyncio.sleep(2)  # a catch-up per missed slot would show up now
        state = json.loads(manage_shell(env, READ_RUNS).strip().splitlines()[-1])
    finally:
        daphne.terminate()
        daphne.wait(15)
    names = {job_id: name for job_id, (name, _) in state["jobs"].items()}
    assert sorted(status for _, status in state["runs"]) == ["ok", "ok"], (state, (tmp_path / "daphne.out").read_text())
    assert [names.get(job_id, "soon (deleted)") for job_id, _ in state["runs"]].count("missed") == 1, state
    assert list(names.values()) == ["missed"], "the one-shot is deleted after its run"
    missed_next = next(nxt for name, nxt in state["jobs"].values() if name == "missed")
    assert missed_next > time.time() * 1000 + 3_000_000, "re-armed from now, not from the first missed slot"


async def test_agent_turn_over_its_time_limit_is_aborted_and_counted_as_an_error(admin: GatewayClient,
                                                                                 client: Any) -> None:
    reader = await client(READ)
    job = await add(admin, agent_job("slow " * 2000, timeoutSeconds=1))  # ~12 s of echo streaming
    assert await admin.call("cron.run", {"id": job["id"]}, timeout=60) == {"ok": True, "ran": True}
    seen: dict[str, dict[str, Any]] = {}

    async def collect() -> None:  # the run is aborted before the job's finished event: read both in one pass
        while len(seen) < 2:
            event = await reader.events.get()
            payload = event.get("payload") or {}
            if event.get("event") == "cron" and payload.get("jobId") == job["id"] and payload["action"] == "finished":
                seen["finished"] = payload
            elif event.get("event") == "chat.run.failed" and f":cron:{job['id']}:run:" in payload.get("sessionKey", ""):
                seen["failed"] = payload
    await asyncio.wait_for(collect(), 20)
    assert (seen["finished"]["status"], seen["finished"]["error"]) == ("error", "cron: job execution timed out")
    assert (seen["failed"]["state"], seen["failed"]["stopReason"]) == ("aborted", "timeout"), seen


async def test_run_survives_its_caller_disconnecting(client: Any, admin: GatewayClient) -> None:
    reader = await client(READ)
    caller = await client(ADMIN)
    job = await add(admin, agent_job("slow " * 300))  # ~2 s of echo streaming
    pending = asyncio.ensure_future(caller.request("cron.run", {"id": job["id"]}, timeout=60))
    await cron_event(reader, job["id"], "started")
    await caller.close()
    pending.cancel()
    finished = await cron_event(reader, job["id"], "finished")
    assert finished["status"] == "ok", finished


async def test_admin_run_now_of_an_agent_turn_is_run_by_the_gateway(operator: AdminBrowser, admin: GatewayClient,
                                                                    client: Any) -> None:
    reader = await client(READ)
    job = await add(admin, agent_job("from the console"))
    page = await in_thread(admin_action, operator, "run_now", job["id"])
    assert f"{job['name']}: ran" in [m.lower() for m in page.said("success")], page.messages
    finished = await cron_event(reader, job["id"], "finished")
    assert finished["status"] == "ok" and "from the console" in finished["summary"], finished
