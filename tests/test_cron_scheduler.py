"""The cron scheduler driven by a fake clock (chat-sessions-cron.md §5.2-§5.4, §5.8): due jobs
run once per slot, missed slots after downtime fire once, one-shots never loop, failures back
off, runs time out, claims are exclusive, expired leases are reaped and a late result is fenced
out; and across the daylight-saving changes of Europe/Berlin a daily 02:30 job and an hourly job
run at the documented wall-clock times (cron/schedules.py), none skipped or doubled."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from typing import Any, AsyncIterator
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from cron import services
from cron.models import CronJob, CronRun
from cron.scheduler import CronScheduler, execute
from cron.services import BACKOFF_MS, RunResult
from gateway.models import SystemEvent
from gateway.protocol.events import GROUP

pytestmark = pytest.mark.django_db(transaction=True)

BERLIN = ZoneInfo("Europe/Berlin")
MINUTE, HOUR = 60_000, 3_600_000
T0 = 1_780_000_000_000  # 2026-05-28, an ordinary day


class FakeClock:
    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=BERLIN).timestamp() * 1000)


def system_job(schedule: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "job", "schedule": schedule, "sessionTarget": "main", "wakeMode": "next-heartbeat",
            "payload": {"kind": "systemEvent", "text": "tick"}, **extra}


async def add(clock: FakeClock, schedule: dict[str, Any], **extra: Any) -> CronJob:
    return await sync_to_async(services.add_job)(system_job(schedule, **extra), clock.now)


async def reload(job: CronJob) -> CronJob | None:
    return await sync_to_async(CronJob.objects.filter(pk=job.pk).first)()


async def runs_of(job: CronJob) -> list[CronRun]:
    return await sync_to_async(lambda: list(CronRun.objects.filter(job_id=job.pk).order_by("ts", "id")))()


@pytest.fixture
async def events() -> AsyncIterator[list[dict]]:
    """The `cron` events the services emit (collected from the in-memory channel layer)."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(GROUP, channel)
    seen: list[dict] = []

    async def collect() -> None:
        while True:
            message = await layer.receive(channel)
            if message.get("event") == "cron":
                seen.append(message["payload"])

    task = asyncio.get_running_loop().create_task(collect())
    yield seen
    task.cancel()
    await layer.group_discard(GROUP, channel)


async def test_due_job_runs_once_per_slot_then_rearms(events: list[dict]) -> None:
    clock = FakeClock(T0)
    job = await add(clock, {"kind": "every", "everyMs": MINUTE})
    sched = CronScheduler(clock=clock)
    assert await sched.tick() == T0 + MINUTE and await runs_of(job) == []  # not due yet
    clock.now = T0 + MINUTE
    assert await sched.tick() == T0 + 2 * MINUTE
    assert await sched.tick() == T0 + 2 * MINUTE  # the same instant again: no second run
    runs = await runs_of(job)
    assert [(r.status, r.run_at_ms) for r in runs] == [("ok", T0 + MINUTE)]
    assert await sync_to_async(SystemEvent.objects.filter(text="tick").count)() == 1
    await asyncio.sleep(0.2)
    actions = [e["action"] for e in events if e["jobId"] == str(job.pk)]
    assert actions == ["added", "started", "finished"], actions


async def test_missed_slots_after_downtime_fire_once() -> None:
    clock = FakeClock(T0)
    job = await add(clock, {"kind": "every", "everyMs": MINUTE})
    sched = CronScheduler(clock=clock)
    clock.now = T0 + 90 * MINUTE + 30_000  # down for 90 slots
    wake = await sched.tick()
    assert len(await runs_of(job)) == 1
    assert wake == T0 + 91 * MINUTE  # re-armed to the next slot from now, not the first missed one


async def test_at_job_runs_once_and_is_deleted() -> None:
    clock = FakeClock(T0)
    job = await add(clock, {"kind": "at", "at": "2026-05-28T21:00:00Z"})
    sched = CronScheduler(clock=clock)
    clock.now = job.next_run_at_ms + 5
    await sched.tick()
    assert await reload(job) is None
    assert [r.status for r in await runs_of(job)] == ["ok"]


async def test_at_job_kept_after_running_is_disabled_and_never_loops() -> None:
    clock = FakeClock(T0)
    job = await add(clock, {"kind": "at", "at": "2026-05-28T21:00:00Z"}, deleteAfterRun=False)
    sched = CronScheduler(clock=clock)
    clock.now = job.next_run_at_ms
    await sched.tick()
    kept = await reload(job)
    assert kept is not None and kept.enabled is False and kept.next_run_at_ms is None
    assert kept.last_status == "ok"
    for step in range(1, 4):
        clock.now += step * HOUR
        assert await sched.tick() is None
    assert len(await runs_of(job)) == 1


async def test_force_run_of_one_shot_with_empty_text_is_skipped_and_disabled() -> None:
    clock = FakeClock(T0)
    job = await add(clock, {"kind": "at", "at": "2026-05-28T21:00:00Z"}, payload={"kind": "systemEvent", "text": " "})
    sched = CronScheduler(clock=clock)
    assert await sched.run_now(str(job.pk), "force") == {"ok": True, "ran": True}
    kept = await reload(job)
    assert kept is not None and (kept.last_status, kept.enabled) == ("skipped", False)
    assert kept.last_error == "main job requires non-empty systemEvent text"


async def test_run_due_mode_answers_not_due_for_a_future_job() -> None:
    clock = FakeClock(T0)
    job = await add(clock, {"kind": "every", "everyMs": HOUR})
    sched = CronScheduler(clock=clock)
    assert await sched.run_now(str(job.pk), "due") == {"ok": True, "ran": False, "reason": "not-due"}
    clock.now = T0 + HOUR
    assert await sched.run_now(str(job.pk), "due") == {"ok": True, "ran": True}


async def test_recurring_failures_back_off_30s_1m_5m_15m_60m() -> None:
    clock = FakeClock(T0)
    job = await add(clock, {"kind": "every", "everyMs": 1000})
    now = T0
    for i, backoff in enumerate([*BACKOFF_MS, BACKOFF_MS[-1]], start=1):
        claim = await sync_to_async(services.claim)(job.pk, "test", now, force=True)
        assert claim is not None
        await sync_to_async(services.finish)(claim, RunResult("error", now, now + 10, error="boom"))
        row = await reload(job)
        assert row is not None and row.consecutive_errors == i
        assert row.next_run_at_ms == now + 10 + backoff, (i, row.next_run_at_ms - now)
        now = row.next_run_at_ms
    claim = await sync_to_async(services.claim)(job.pk, "test", now, force=True)
    await sync_to_async(services.finish)(claim, RunResult("ok", now, now + 10))
    row = await reload(job)
    assert row.consecutive_errors == 0
    assert now + 10 < row.next_run_at_ms <= now + 1010 and (row.next_run_at_ms - T0) % 1000 == 0  # the natural slot


async def test_run_over_its_time_limit_is_an_error() -> None:
    """An agent turn that nobody runs (no gateway here) hits payload.timeoutSeconds."""
    clock = FakeClock(T0)
    job = await sync_to_async(services.add_job)(
        {"name": "slow", "schedule": {"kind": "every", "everyMs": HOUR},
         "payload": {"kind": "agentTurn", "message": "hi", "timeoutSeconds": 1}}, clock.now)
    claim = await sync_to_async(services.claim)(job.pk, "test", clock.now, force=True)
    result = await execute(claim, clock, None)
    assert (result.status, result.error) == ("error", "cron: job execution timed out")


async def test_only_the_first_claim_of_a_due_slot_wins() -> None:
    """The claim is one conditional UPDATE; true concurrency on PostgreSQL is covered by
    tests/test_cron_multiprocess.py (SQLite serialises writers anyway)."""
    clock = FakeClock(T0)
    job = await add(clock, {"kind": "every", "everyMs": MINUTE})
    due = T0 + MINUTE
    claims = [await sync_to_async(services.claim)(job.pk, f"p{i}", due, force=i % 2 == 0) for i in range(4)]
    assert [c is not None for c in claims] == [True, False, False, False]


async def test_expired_lease_is_reaped_once_and_the_late_result_is_discarded(settings: Any) -> None:
    clock = FakeClock(T0)
    job = await add(clock, {"kind": "every", "everyMs": MINUTE})
    clock.now = T0 + MINUTE
    stalled = await sync_to_async(services.claim)(job.pk, "process-a", clock.now)
    assert stalled is not None
    survivor = CronScheduler(clock=clock, owner="process-b")

    clock.now += settings.ANIMA_CRON_LEASE_MS // 2  # lease still live: nobody touches the run
    await survivor.tick()
    assert (await reload(job)).running_at_ms is not None and await runs_of(job) == []

    clock.now = T0 + MINUTE + settings.ANIMA_CRON_LEASE_MS + 1  # process A stopped renewing
    await survivor.tick()
    row = await reload(job)
    assert row.running_at_ms is None and (row.last_status, row.last_error) == ("error", "interrupted")
    assert row.next_run_at_ms >= clock.now + BACKOFF_MS[0]  # not run again by the survivor for this slot
    assert [(r.status, r.error) for r in await runs_of(job)] == [("error", "interrupted")]

    late = await sync_to_async(services.finish)(stalled, RunResult("ok", stalled.run_at_ms, clock.now))
    assert late is None
    assert (await reload(job)).last_status == "error" and len(await runs_of(job)) == 1


async def test_renew_fails_once_the_lease_was_taken_away() -> None:
    clock = FakeClock(T0)
    job = await add(clock, {"kind": "every", "everyMs": MINUTE})
    claim = await sync_to_async(services.claim)(job.pk, "a", T0, force=True)
    assert await sync_to_async(services.renew)(claim, T0 + 1000)
    await sync_to_async(services.reap)(T0 + 1000, everything=True)
    assert not await sync_to_async(services.renew)(claim, T0 + 2000)


async def test_disabled_scheduler_fires_nothing(settings: Any) -> None:
    settings.ANIMA_SKIP_CRON = True
    clock = FakeClock(T0)
    job = await add(clock, {"kind": "every", "everyMs": MINUTE})
    clock.now = T0 + 10 * MINUTE
    assert await CronScheduler(clock=clock).tick() is None
    assert await runs_of(job) == []


async def test_schedule_errors_disable_the_job_after_three() -> None:
    clock = FakeClock(T0)
    job = await add(clock, {"kind": "every", "everyMs": MINUTE})
    await sync_to_async(CronJob.objects.filter(pk=job.pk).update)(schedule={"kind": "every", "everyMs": 0})
    for i in range(3):
        claim = await sync_to_async(services.claim)(job.pk, "t", clock.now, force=True)
        await sync_to_async(services.finish)(claim, RunResult("ok", clock.now, clock.now))
    row = await reload(job)
    assert row.enabled is False and row.schedule_error_count == 3 and row.last_error.startswith("schedule error:")


# --- daylight saving ------------------------------------------------------------------------------

async def run_through(sched: CronScheduler, clock: FakeClock, until_ms: int) -> None:
    """Jump from wake-up to wake-up, as the loop would, without sleeping."""
    wake = await sched.tick()
    while wake is not None and wake <= until_ms:
        clock.now = wake
        wake = await sched.tick()


def wall(ms_: int) -> str:
    return datetime.fromtimestamp(ms_ / 1000, BERLIN).strftime("%m-%d %H:%M %Z")


@pytest.mark.parametrize(("start", "end", "dst_day", "daily", "hourly_that_day"), [
    # spring forward, Sunday 29 March 2026: 02:00 CET -> 03:00 CEST
    (ms(2026, 3, 28), ms(2026, 3, 31), "03-29",
     ["03-28 02:30 CET", "03-29 03:00 CEST", "03-30 02:30 CEST"], 23),
    # fall back, Sunday 25 October 2026: 03:00 CEST -> 02:00 CET
    (ms(2026, 10, 24), ms(2026, 10, 27), "10-25",
     ["10-24 02:30 CEST", "10-25 02:30 CEST", "10-26 02:30 CET"], 25),
])
async def test_dst_change_neither_skips_nor_doubles(start: int, end: int, dst_day: str, daily: list[str],
                                                    hourly_that_day: int) -> None:
    clock = FakeClock(start)
    daily_job = await add(clock, {"kind": "cron", "expr": "30 2 * * *", "tz": "Europe/Berlin"})
    hourly_job = await add(clock, {"kind": "cron", "expr": "0 * * * *", "tz": "Europe/Berlin"})
    await run_through(CronScheduler(clock=clock), clock, end - 1)

    assert [wall(r.run_at_ms) for r in await runs_of(daily_job)] == daily
    hourly = [r.run_at_ms for r in await runs_of(hourly_job)]
    assert len(hourly) == len(set(hourly)), "an hourly run was doubled"
    per_day = Counter(wall(t)[:5] for t in hourly)
    assert per_day[dst_day] == hourly_that_day, per_day
    assert all(b - a == HOUR for a, b in zip(hourly, hourly[1:])), "an hour was skipped"
    assert all(r.status == "ok" for r in await runs_of(hourly_job))


async def test_reenabled_one_shot_fires_again_only_with_a_new_time() -> None:
    clock = FakeClock(T0)
    job = await add(clock, {"kind": "at", "at": "2026-05-28T21:00:00Z"}, deleteAfterRun=False)
    sched = CronScheduler(clock=clock)
    clock.now = job.next_run_at_ms
    await sched.tick()
    enabled = await sync_to_async(services.update_job)(str(job.pk), {"enabled": True}, clock.now)
    assert enabled.enabled and enabled.next_run_at_ms is None, "it says it will not run, not a past time"
    assert await sched.tick() is None, "a one-shot that ran is not re-armed by enabling it"
    await sync_to_async(services.update_job)(str(job.pk), {"schedule": {"at": "2026-05-28T23:00:00Z"}}, clock.now)
    clock.now = (await reload(job)).next_run_at_ms
    await sched.tick()
    assert [r.run_at_ms for r in await runs_of(job)] == [job.next_run_at_ms, clock.now]


async def test_run_log_keeps_the_newest_2000_entries_per_job() -> None:
    clock = FakeClock(T0)
    job = await add(clock, {"kind": "every", "everyMs": MINUTE})
    other = await add(clock, {"kind": "every", "everyMs": MINUTE})
    await sync_to_async(CronRun.objects.bulk_create)(
        [CronRun(job_id=j.pk, ts=T0 + i, status="ok") for j in (job, other) for i in range(2005)])
    claim = await sync_to_async(services.claim)(job.pk, "t", T0 + 5000, force=True)
    await sync_to_async(services.finish)(claim, RunResult("ok", T0 + 5000, T0 + 6000))
    kept = await runs_of(job)
    assert len(kept) == services.RUN_LOG_KEEP and kept[0].ts == T0 + 6 and kept[-1].ts == T0 + 6000
    assert len(await runs_of(other)) == 2005, "another job's log is untouched"


async def test_old_cron_run_sessions_are_swept_after_the_retention() -> None:
    from gateway.chat.transcripts import ensure_session
    from gateway.models import Session

    clock = FakeClock(T0 + 48 * HOUR)
    keys = {"old": "agent:main:cron:j1:run:a", "fresh": "agent:main:cron:j1:run:b", "base": "agent:main:cron:j1",
            "chat": "agent:main:elsewhere"}
    for name, key in keys.items():
        await sync_to_async(ensure_session)(key)
        age = 0 if name == "fresh" else 25 * HOUR
        await sync_to_async(Session.objects.filter(key=key).update)(updated_at_ms=clock.now - age)
    await CronScheduler(clock=clock).tick()
    left = set(await sync_to_async(lambda: list(Session.objects.values_list("key", flat=True)))())
    assert keys["old"] not in left and {keys["fresh"], keys["base"], keys["chat"]} <= left, left
