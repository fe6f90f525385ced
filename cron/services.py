"""Writes to cron jobs and their run log (chat-sessions-cron.md §5.4, §5.5, §5.8). Every write is
one transaction; events leave after commit (README D10). The RPC methods, the admin and the
scheduler all come through here.

Exactly once across processes: a run starts only by `claim`, one conditional UPDATE that sets
`running_at_ms` and a fresh lease token; whoever gets the 1-row result owns the run. Every later
write of that run (renew, finish) matches the token, so a process that lost its lease (it stalled
and someone reaped it) can no longer change the job."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Min, Q, Value
from django.db.models.functions import Least

from gateway.protocol.errors import invalid, not_found
from gateway.protocol.events import READERS, emit_after_commit, publish_after_commit

from . import schedules
from .models import CronJob, CronRun
from .schemas import JobSpec, check, coerce, merge_patch, normalise_add

log = logging.getLogger("cron")

DEFAULT_TIMEOUT_MS = 10 * 60_000         # §5.3: per-job limit unless payload.timeoutSeconds
STUCK_MS = 2 * 3600_000                  # §5.3: a run marker older than this is stuck, whatever its lease
BACKOFF_MS = (30_000, 60_000, 300_000, 900_000, 3_600_000)  # §5.4, by consecutive errors
SCHEDULE_ERRORS_TO_DISABLE = 3           # §5.2
RUN_LOG_KEEP = 2000                      # §5.5: newest entries kept per job
NUDGE = "cron.nudge"                     # channel-layer message: re-read the next wake-up at once
INTERRUPTED = "interrupted"


def lease_ms() -> int:
    return int(settings.ANIMA_CRON_LEASE_MS)


# --- reading helpers -----------------------------------------------------------------------------

def find_job(ref: str) -> CronJob | None:
    try:
        return CronJob.objects.filter(pk=uuid.UUID(str(ref))).first()
    except ValueError:
        return None


def get_job(ref: str) -> CronJob:
    job = find_job(ref)
    if job is None:
        raise not_found(f"unknown cron job id: {ref}")
    return job


def spec_of(job: CronJob) -> dict[str, Any]:
    """The job's editable fields as on the wire (what a cron.update patch applies to)."""
    out: dict[str, Any] = {"name": job.name, "enabled": job.enabled, "schedule": job.schedule,
                           "sessionTarget": job.session_target, "wakeMode": job.wake_mode, "payload": job.payload}
    if job.description:
        out["description"] = job.description
    if job.agent_id:
        out["agentId"] = job.agent_id
    if job.delete_after_run is not None:
        out["deleteAfterRun"] = job.delete_after_run
    if job.delivery is not None:
        out["delivery"] = job.delivery
    return out


def event_payload(job_id: Any, action: str, **fields: Any) -> dict[str, Any]:
    return {"jobId": str(job_id), "action": action, **{k: v for k, v in fields.items() if v is not None}}


def emit_cron(job_id: Any, action: str, **fields: Any) -> None:
    emit_after_commit("cron", event_payload(job_id, action, **fields), READERS)


def nudge() -> None:
    """Wake every process's scheduler so a new or changed job's time is seen at once (§5.8.5)."""
    publish_after_commit({"type": NUDGE})


# --- next run -----------------------------------------------------------------------------------

def natural_next(job: CronJob, now_ms: int) -> int | None:
    """The schedule's next run after now, counting schedule errors (§5.2): three in a row
    disable the job; a good computation resets the count."""
    try:
        nxt = schedules.next_run(job.schedule, now_ms=now_ms, created_at_ms=job.created_at_ms)
    except schedules.ScheduleError as exc:
        job.schedule_error_count += 1
        job.last_error = f"schedule error: {exc}"
        if job.schedule_error_count >= SCHEDULE_ERRORS_TO_DISABLE:
            job.enabled = False
        return None
    job.schedule_error_count = 0
    return nxt


def apply_spec(job: CronJob, spec: JobSpec) -> None:
    wire = spec.wire()
    job.name = spec.name
    job.description = spec.description or ""
    job.agent_id = spec.agent_id or ""
    job.enabled = spec.enabled
    job.delete_after_run = spec.delete_after_run
    job.schedule = wire["schedule"]
    job.schedule_kind = spec.schedule.kind
    job.tz = wire["schedule"].get("tz", "")
    job.session_target = spec.session_target
    job.wake_mode = spec.wake_mode
    job.payload = wire["payload"]
    job.delivery = wire.get("delivery")


def check_schedule(schedule: dict[str, Any], now_ms: int) -> None:
    try:
        schedules.validate(schedule, now_ms)
    except schedules.ScheduleError as exc:
        raise invalid(str(exc)) from None


# --- CRUD ------------------------------------------------------------------------------------------

@transaction.atomic
def add_job(raw: dict[str, Any], now_ms: int) -> CronJob:
    spec = normalise_add(raw)
    check_schedule(spec.wire()["schedule"], now_ms)
    job = CronJob(created_at_ms=now_ms, updated_at_ms=now_ms)
    apply_spec(job, spec)
    job.next_run_at_ms = natural_next(job, now_ms) if job.enabled else None
    job.save()
    emit_cron(job.id, "added", nextRunAtMs=job.next_run_at_ms)
    nudge()
    return job


@transaction.atomic
def update_job(ref: str, patch: dict[str, Any], now_ms: int) -> CronJob:
    job = get_job(ref)
    job = CronJob.objects.select_for_update().get(pk=job.pk)
    coerced = coerce(patch)
    if isinstance(coerced.get("schedule"), dict) and coerced["schedule"].get("kind") == "every" \
            and job.schedule_kind != "every" and "anchorMs" not in coerced["schedule"]:
        coerced["schedule"] = {**coerced["schedule"], "anchorMs": now_ms}  # a switch to every re-anchors to now
    before = spec_of(job)
    spec = check(merge_patch(before, coerced), "cron.update patch")
    wire = spec.wire()
    schedule_changed = wire["schedule"] != job.schedule
    if schedule_changed:
        check_schedule(wire["schedule"], now_ms)
    enabled_changed = spec.enabled != job.enabled
    apply_spec(job, spec)
    if schedule_changed and job.schedule_kind == CronJob.Kind.AT:
        job.last_status = ""  # a one-shot given a new time may fire again
    if not job.enabled:
        job.next_run_at_ms = None  # a run in flight keeps its lease: its result is still recorded
    elif job.schedule_kind == CronJob.Kind.AT and job.last_status:
        job.next_run_at_ms = None  # a one-shot that ran never fires again (§5.3): only a new `at` re-arms it
    elif schedule_changed or enabled_changed or job.next_run_at_ms is None:
        job.next_run_at_ms = natural_next(job, now_ms)
    job.updated_at_ms = now_ms
    job.save()
    emit_cron(job.id, "updated", nextRunAtMs=job.next_run_at_ms)
    nudge()
    return job


@transaction.atomic
def remove_job(ref: str) -> bool:
    job = find_job(ref)
    if job is None:
        return False
    deleted, _ = CronJob.objects.filter(pk=job.pk).delete()
    if deleted:
        emit_cron(job.id, "removed")
        nudge()
    return bool(deleted)


# --- claiming and leases (§5.8) ---------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """The right to run one job once: valid while `token` is the job's lease token."""

    job_id: uuid.UUID
    token: str
    owner: str
    run_at_ms: int
    name: str = ""
    agent_id: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    session_target: str = ""
    wake_mode: str = ""
    delivery: dict[str, Any] | None = None

    @property
    def timeout_ms(self) -> int:
        seconds = self.payload.get("timeoutSeconds")
        return int(seconds) * 1000 if isinstance(seconds, int) and seconds > 0 else DEFAULT_TIMEOUT_MS


def armed() -> Q:
    """Enabled and not running; a one-shot that already ran never fires again (§5.3)."""
    return Q(enabled=True, running_at_ms__isnull=True) & ~Q(schedule_kind=CronJob.Kind.AT, last_status__gt="")


def due_filter(now_ms: int) -> Q:
    return armed() & Q(next_run_at_ms__lte=now_ms)


def due_job_ids(now_ms: int, limit: int) -> list[uuid.UUID]:
    return list(CronJob.objects.filter(due_filter(now_ms)).order_by("next_run_at_ms")
                .values_list("id", flat=True)[:limit])


def claim(job_id: Any, owner: str, now_ms: int, *, force: bool = False) -> Claim | None:
    """One atomic conditional UPDATE; only a 1-row result owns the run. `force` (cron.run's
    default) skips the due test but never takes a job that is already running."""
    token = uuid.uuid4().hex
    rows = CronJob.objects.filter(pk=job_id, running_at_ms__isnull=True)
    if not force:
        rows = rows.filter(due_filter(now_ms))
    with transaction.atomic():
        if rows.update(running_at_ms=now_ms, lease_owner=owner, lease_token=token,
                       lease_expires_at_ms=now_ms + lease_ms(), last_error="") != 1:
            return None
        job = CronJob.objects.get(pk=job_id)
        emit_cron(job.id, "started", runAtMs=now_ms)
    return Claim(job.id, token, owner, now_ms, job.name, job.agent_id, dict(job.payload), job.session_target,
                 job.wake_mode, job.delivery)


def renew(claim_: Claim, now_ms: int) -> bool:
    """Extend our lease; False when it is no longer ours (reaped after we stalled). A lease is
    never extended past STUCK_MS after the run started: that is the final fallback for a run
    that hangs in a live process, and it keeps the reaper's scan on the lease index alone."""
    return CronJob.objects.filter(pk=claim_.job_id, lease_token=claim_.token).update(
        lease_expires_at_ms=Least(Value(now_ms + lease_ms()), F("running_at_ms") + STUCK_MS)) == 1


# --- results (§5.4) ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunResult:
    status: str
    started_at_ms: int
    ended_at_ms: int
    error: str = ""
    summary: str = ""
    session_id: str = ""
    session_key: str = ""

    @property
    def duration_ms(self) -> int:
        return max(0, self.ended_at_ms - self.started_at_ms)


def next_after_result(job: CronJob, result: RunResult) -> int | None:
    if not job.enabled:
        return None
    natural = natural_next(job, result.ended_at_ms)
    if result.status == CronJob.Status.ERROR and natural is not None:
        backoff = BACKOFF_MS[min(job.consecutive_errors, len(BACKOFF_MS)) - 1]
        return max(natural, result.ended_at_ms + backoff)
    return natural


@transaction.atomic
def finish(claim_: Claim, result: RunResult, *, expired_before_ms: int | None = None) -> CronRun | None:
    """Record a run's result if `claim_` still holds the job's lease (fencing, §5.8.2); None when
    it does not (the run was reaped, or the job re-armed or removed meanwhile: no write at all).
    `expired_before_ms`: only while the lease has expired (a reaper must not finish a run whose
    owner renewed it in the meantime)."""
    rows = CronJob.objects.select_for_update().filter(pk=claim_.job_id, lease_token=claim_.token)
    if expired_before_ms is not None:
        rows = rows.filter(lease_expires_at_ms__lt=expired_before_ms)
    job = rows.first()
    if job is None:
        log.info("cron job %s: result of a run whose lease is gone was discarded", claim_.job_id)
        return None
    job.last_run_at_ms = result.started_at_ms
    job.last_status = result.status
    job.last_error = result.error
    job.last_duration_ms = result.duration_ms
    job.running_at_ms = None
    job.lease_owner, job.lease_token, job.lease_expires_at_ms = "", "", None
    job.consecutive_errors = job.consecutive_errors + 1 if result.status == CronJob.Status.ERROR else 0
    removed = False
    if job.schedule_kind == CronJob.Kind.AT:
        job.next_run_at_ms = None
        if result.status == CronJob.Status.OK and job.delete_after_run is not False:
            removed = True
        else:
            job.enabled = False  # one-shots never retry
    else:
        job.next_run_at_ms = next_after_result(job, result)
    job.updated_at_ms = result.ended_at_ms
    if removed:
        job.delete()
    else:
        job.save()
    entry = CronRun.objects.create(job_id=claim_.job_id, ts=result.ended_at_ms, status=result.status,
                                   error=result.error, summary=result.summary, session_id=result.session_id,
                                   session_key=result.session_key, run_at_ms=result.started_at_ms,
                                   duration_ms=result.duration_ms, next_run_at_ms=job.next_run_at_ms,
                                   owner=claim_.owner)
    prune_run_log(claim_.job_id)
    emit_cron(claim_.job_id, "finished", status=result.status, error=result.error or None,
              summary=result.summary or None, sessionId=result.session_id or None,
              sessionKey=result.session_key or None, runAtMs=result.started_at_ms, durationMs=result.duration_ms,
              nextRunAtMs=job.next_run_at_ms)
    if removed:
        emit_cron(claim_.job_id, "removed")
    nudge()
    return entry


def prune_run_log(job_id: Any) -> None:
    cutoff = (CronRun.objects.filter(job_id=job_id).order_by("-ts", "-id")
              .values_list("id", flat=True)[RUN_LOG_KEEP:RUN_LOG_KEEP + 1])
    if cutoff:
        CronRun.objects.filter(job_id=job_id, id__lte=cutoff[0]).delete()


def reap(now_ms: int, *, everything: bool = False) -> int:
    """Finish runs whose lease expired (their process died or stalled) as `interrupted` errors,
    so one-shots disable and recurring jobs back off (§5.8.3). `everything`: also live-looking
    leases, for a single-process gateway at start-up, whose every claim is its previous life's."""
    rows = CronJob.objects.filter(running_at_ms__isnull=False)
    if not everything:
        rows = CronJob.objects.filter(lease_expires_at_ms__lt=now_ms)  # claims always set a lease
    reaped = 0
    # order_by(): the model's default ordering would make the planner walk the next-run index
    for job_id, token, owner, running in rows.order_by().values_list("id", "lease_token", "lease_owner",
                                                                      "running_at_ms"):
        stale = Claim(job_id, token, owner, running)
        result = RunResult(CronJob.Status.ERROR, running, now_ms, error=INTERRUPTED)
        if finish(stale, result, expired_before_ms=None if everything else now_ms) is not None:
            reaped += 1
    return reaped


# --- old run sessions (§5.3 step 7) ---------------------------------------------------------------

def sweep_run_sessions(now_ms: int, retention_ms: int) -> int:
    """Delete isolated cron runs' own sessions (`…:cron:<job>:run:<uuid>`) untouched for longer
    than the retention, through the sessions.delete write (transcripts archived); never one
    with a run still queued or running."""
    from gateway.chat.sessions import delete_row
    from gateway.models import Run, Session
    from gateway.runs.services import ACTIVE

    old = list(Session.objects.filter(key__regex=r":cron:[^:]+:run:", updated_at_ms__lt=now_ms - retention_ms)
               .order_by().values_list("key", flat=True)[:500])
    busy = set(Run.objects.filter(session_key__in=old, status__in=ACTIVE).values_list("session_key", flat=True))
    swept = 0
    for key in old:
        if key not in busy and delete_row(key, True)["deleted"]:
            swept += 1
    return swept


# --- reads the scheduler needs --------------------------------------------------------------------

def next_wake_ms() -> int | None:
    """The earliest next run of a job that can fire (the same rows the due scan considers, so a
    wake-up never points at a job no claim would take)."""
    return CronJob.objects.filter(armed()).aggregate(wake=Min("next_run_at_ms"))["wake"]
