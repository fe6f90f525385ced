"""The cron scheduler of one gateway process (chat-sessions-cron.md §5.3, §5.4, §5.8; README D11).

Every process runs one from start-up. A tick reaps expired leases, then claims due jobs one at a
time (services.claim: an atomic conditional UPDATE, so with several processes each due job is
taken by exactly one) and runs each to its end before claiming the next. A missed slot is just a
past `next_run_at_ms`: after downtime the job is due once and then re-armed from now, so it fires
once, not once per missed slot. While a run goes on, its lease is renewed; the result is written
only under the lease token (fencing).

The clock is injectable: tests drive `tick()` with a fake clock instead of sleeping."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator, Protocol

from asgiref.sync import sync_to_async
from django.conf import settings

from . import services
from .models import CronJob, CronRun
from .services import Claim, RunResult

if TYPE_CHECKING:
    from gateway.runs.manager import RunManager
    from gateway.runtime import GatewayRuntime

log = logging.getLogger("cron")

MAX_SLEEP_MS = 60_000       # §5.3: re-check at least once a minute (clock jumps, missed nudges)
MIN_SLEEP_MS = 50           # never spin while a due job is being claimed elsewhere
CLAIM_BATCH = 32            # due candidates read per claim attempt
RUN_TIMEOUT_GRACE_MS = 5_000
SWEEP_EVERY_MS = 5 * 60_000  # §5.3: old cron run sessions are swept at most this often
RUN_POLL_S = 0.25           # waiting for an agent turn without a run manager (admin action)
ANNOUNCE_HINT = "Reply with a short plain-text summary of the result."


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)


SYSTEM_CLOCK = SystemClock()


def process_owner() -> str:
    """A lease owner name unique to this process's life (host, pid and a random part)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# --- executing one claimed run (§5.4) ----------------------------------------------------------------

def agent_of(c: Claim) -> str:
    """The job's agent, else the default agent (agents.list's default, else `main`; §5.1)."""
    from gateway.chat.keys import default_agent_id, normalize_agent_id

    return normalize_agent_id(c.agent_id) if c.agent_id else default_agent_id()


async def system_event(c: Claim) -> tuple[str, str]:
    """Queue the text for the next turn of the agent's main session: (status, error).
    wakeMode "now" and "next-heartbeat" both only enqueue: this gateway has no heartbeat runner
    that could take an immediate turn (README, Cron)."""
    from gateway.chat.keys import main_key
    from gateway.services import enqueue_system_event

    text = str(c.payload.get("text") or "").strip()
    if not text:
        return CronJob.Status.SKIPPED, "main job requires non-empty systemEvent text"
    await sync_to_async(enqueue_system_event)(text, main_key(agent_of(c)))
    return CronJob.Status.OK, ""


def turn_prompt(c: Claim, now_ms: int) -> str:
    from .schedules import iso_ms

    prompt = f"[cron:{c.job_id} {c.name}] {c.payload.get('message', '')}\nCurrent time: {iso_ms(now_ms)}"
    if (c.delivery or {}).get("mode") == "announce":
        prompt += f"\n\n{ANNOUNCE_HINT}"
    return prompt


def reply_text(session_key: str) -> str:
    from gateway.chat.messages import text_of
    from gateway.chat.transcripts import find_session, history_messages

    session = find_session(session_key)
    messages = history_messages(session, 1) if session else []
    return text_of(messages[-1]).strip() if messages and messages[-1].get("role") == "assistant" else ""


async def wait_terminal(run_id: str, runs: RunManager | None) -> Any:
    from gateway.runs import services as run_services

    if runs is not None:
        while True:
            run = await runs.wait_done(run_id, 60, kind="cron")
            if run is not None:
                return run
    while True:  # no run manager here (the admin): some gateway process's run loop picks it up
        run = await sync_to_async(run_services.find_run)(run_id, "cron")
        if run is not None and run.status in run_services.TERMINAL:
            return run
        await asyncio.sleep(RUN_POLL_S)


async def agent_turn(c: Claim, clock: Clock, runs: RunManager | None) -> tuple[str, str, str, str, str]:
    """A fresh isolated turn through the chat run machinery (events, transcript, abort):
    (status, error, summary, sessionId, sessionKey)."""
    from gateway.chat.transcripts import ensure_session
    from gateway.runs import services as run_services

    session_key = f"agent:{agent_of(c)}:cron:{c.job_id}:run:{uuid.uuid4()}"
    run_id = f"cron-{c.token}"
    # The job's limit (execute) is the one that counts: it aborts the run; the run's own limit is
    # only a backstop, a little later, so the outcome does not depend on which timer fires first.
    params: dict[str, Any] = {"timeoutMs": c.timeout_ms + RUN_TIMEOUT_GRACE_MS, "thinking": c.payload.get("thinking"),
                              "model": c.payload.get("model")}
    prompt = turn_prompt(c, clock.now_ms())
    session = await sync_to_async(ensure_session)(session_key)
    session_id = str(session.session_id)
    if runs is not None:
        await runs.submit("cron", run_id, session_key, prompt, params)
    else:
        await sync_to_async(run_services.create_run)("cron", run_id, session_key, prompt, params)
    try:
        run = await wait_terminal(run_id, runs)
    except (asyncio.CancelledError, TimeoutError):
        if runs is not None:  # the job's time is up: stop the turn wherever it runs
            await asyncio.shield(runs.abort(session_key, run_id, "timeout"))
        raise
    summary = await sync_to_async(reply_text)(session_key)
    if run.status != "ok":
        return CronJob.Status.ERROR, run.error or f"agent run {run.status}", summary, session_id, session_key
    error = ""
    if (c.delivery or {}).get("mode") == "announce" and summary and summary != "HEARTBEAT_OK":
        error = await announce(c, summary, run_id)
    return (CronJob.Status.ERROR if error else CronJob.Status.OK), error, summary, session_id, session_key


async def announce(c: Claim, summary: str, run_id: str) -> str:
    """Deliver the summary to delivery.channel/to through the outbound channels (§5.4); the error
    that fails the job, or "". Without a target (there is no "last route" here) or when a
    best-effort delivery fails, the summary goes to the agent's main session instead."""
    from gateway.chat.keys import main_key
    from gateway.outbound.services import MessageRequest, send
    from gateway.protocol.errors import GatewayError
    from gateway.services import enqueue_system_event

    delivery = c.delivery or {}
    channel, to = (delivery.get("channel") or "").strip(), (delivery.get("to") or "").strip()
    prefix = "Cron"
    if channel or to:
        try:
            await send(MessageRequest(to=to, text=summary, media_urls=[], channel=channel or None, account_id=None,
                                      session_key=None, idempotency_key=f"{run_id}:announce"))
            return ""
        except GatewayError as exc:
            if not delivery.get("bestEffort"):
                return f"delivery failed: {exc.message}"
            prefix = "Cron (error)"
    await sync_to_async(enqueue_system_event)(f"{prefix}: {summary}", main_key(agent_of(c)))
    return ""


async def execute(c: Claim, clock: Clock, runs: RunManager | None) -> RunResult:
    """Run the job's payload within its time limit; every failure becomes an `error` result."""
    started = clock.now_ms()
    summary = session_id = session_key = ""
    try:
        async with asyncio.timeout(c.timeout_ms / 1000):
            if c.payload.get("kind") == "agentTurn":
                status, error, summary, session_id, session_key = await agent_turn(c, clock, runs)
            else:
                status, error = await system_event(c)
                summary = str(c.payload.get("text") or "")
    except TimeoutError:
        status, error = CronJob.Status.ERROR, "cron: job execution timed out"
    except Exception as exc:
        log.exception("cron job %s failed", c.job_id)
        status, error = CronJob.Status.ERROR, str(exc) or type(exc).__name__
    return RunResult(status, started, clock.now_ms(), error=error, summary=summary, session_id=session_id,
                     session_key=session_key)


@asynccontextmanager
async def lease_kept(c: Claim, clock: Clock) -> AsyncIterator[None]:
    """Renew the lease while the run goes on (a third of its length apart)."""
    async def renew() -> None:
        while True:
            await asyncio.sleep(services.lease_ms() / 3000)
            if not await sync_to_async(services.renew)(c, clock.now_ms()):
                log.warning("cron job %s: lease lost during the run; its result will be discarded", c.job_id)
                return

    task = asyncio.get_running_loop().create_task(renew(), name=f"cron-lease-{c.job_id}")
    try:
        yield
    finally:
        task.cancel()


async def run_claimed(c: Claim, clock: Clock, runs: RunManager | None) -> CronRun | None:
    """Execute a claimed job and record its result (under its lease token)."""
    async with lease_kept(c, clock):
        result = await execute(c, clock, runs)
    return await sync_to_async(services.finish)(c, result)


async def run_job(ref: str, mode: str, *, owner: str, clock: Clock = SYSTEM_CLOCK,
                  runs: RunManager | None = None) -> dict[str, Any]:
    """cron.run and the admin's *Run now* (§5.5): claim as the scheduler does (without the due
    test when forced), run, answer after the run has finished."""
    job = await sync_to_async(services.get_job)(ref)
    c = await sync_to_async(services.claim)(job.pk, owner, clock.now_ms(), force=mode != "due")
    if c is None:
        running = await sync_to_async(CronJob.objects.filter(pk=job.pk, running_at_ms__isnull=False).exists)()
        return {"ok": True, "ran": False, "reason": "already-running" if running else "not-due"}
    await run_claimed(c, clock, runs)
    return {"ok": True, "ran": True}


# --- the per-process loop ----------------------------------------------------------------------------

class CronScheduler:
    def __init__(self, runtime: GatewayRuntime | None = None, clock: Clock = SYSTEM_CLOCK,
                 owner: str | None = None):
        self.runtime = runtime
        self.clock = clock
        self.owner = owner or process_owner()
        self.ticks = 0
        self._nudged = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._manual: set[asyncio.Task] = set()
        self._swept_at = -SWEEP_EVERY_MS  # the first tick sweeps
        if runtime is not None:
            runtime.hub.on(services.NUDGE, lambda message: self._nudged.set())

    @property
    def runs(self) -> RunManager | None:
        return self.runtime.runs if self.runtime is not None else None

    async def start(self) -> None:
        if not settings.REDIS_URL:
            # One process (no shared channel layer): every claim left behind is this process's
            # previous life. With several processes only expired leases are reaped (in tick()),
            # so a restart never takes a live process's run away.
            await sync_to_async(services.reap)(self.clock.now_ms(), everything=True)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="anima-cron")

    async def stop(self) -> None:
        """Runs cut short here keep their lease until it lapses; then they are reaped as interrupted."""
        tasks = [t for t in (self._task, *self._manual) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def run_now(self, ref: str, mode: str) -> dict[str, Any]:
        """cron.run. The run is its own task: a caller that disconnects (its request task is
        cancelled) does not cut the run short; the answer is simply not sent."""
        task = asyncio.get_running_loop().create_task(
            run_job(ref, mode, owner=self.owner, clock=self.clock, runs=self.runs), name=f"cron-run-{ref}")
        self._manual.add(task)
        task.add_done_callback(self._manual.discard)
        return await asyncio.shield(task)

    async def tick(self) -> int | None:
        """Reap expired leases, run every due job (one at a time), return the next wake-up (ms).
        An idle tick is a single hop to the database thread."""
        self.ticks += 1
        c, wake = await sync_to_async(self._begin)()
        while c is not None:
            await run_claimed(c, self.clock, self.runs)
            c, wake = await sync_to_async(self._step)()
        return wake

    def _begin(self) -> tuple[Claim | None, int | None]:
        from .queries import scheduler_enabled, session_retention_ms

        if not scheduler_enabled():
            return None, None
        now = self.clock.now_ms()
        services.reap(now)
        if now - self._swept_at >= SWEEP_EVERY_MS:
            self._swept_at = now
            retention = session_retention_ms()
            if retention is not None:
                services.sweep_run_sessions(now, retention)
        return self._step()

    def _step(self) -> tuple[Claim | None, int | None]:
        """The next due job, claimed; or, when none is left, the next wake-up."""
        c = self.claim_next()
        return (c, None) if c is not None else (None, services.next_wake_ms())

    def claim_next(self) -> Claim | None:
        """Claim one due job; candidates are tried in random order, so processes ticking at the
        same moment mostly try different rows instead of queueing on one."""
        now = self.clock.now_ms()
        while True:
            ids = services.due_job_ids(now, CLAIM_BATCH)
            if not ids:
                return None
            random.shuffle(ids)
            for job_id in ids:
                c = services.claim(job_id, self.owner, now)
                if c is not None:
                    return c

    async def _loop(self) -> None:
        while True:
            self._nudged.clear()
            try:
                wake = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cron tick failed")
                wake = None
            delay_ms = MAX_SLEEP_MS if wake is None else min(max(wake - self.clock.now_ms(), MIN_SLEEP_MS),
                                                             MAX_SLEEP_MS)
            try:
                await asyncio.wait_for(self._nudged.wait(), delay_ms / 1000)
            except asyncio.TimeoutError:
                pass
