"""Reads behind cron.list, cron.status and cron.runs (chat-sessions-cron.md §5.5)."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db.models import F

from .models import CronJob, CronRun
from .services import next_wake_ms, spec_of


DEFAULT_RETENTION_MS = 24 * 3600_000


def scheduler_enabled() -> bool:
    """Off with ANIMA_SKIP_CRON or config `cron.enabled: false` (§5.3); CRUD works regardless."""
    if settings.ANIMA_SKIP_CRON:
        return False
    from gateway.config import config_value

    return config_value("cron.enabled", True) is not False


def session_retention_ms() -> int | None:
    """Config `cron.sessionRetention` (default 24h; false: keep run sessions forever)."""
    from gateway.config import config_value
    from gateway.methods.system import duration_ms

    value = config_value("cron.sessionRetention", "24h")
    if value is False:
        return None
    try:
        return duration_ms(str(value)) or None
    except ValueError:
        return DEFAULT_RETENTION_MS


def job_payload(job: CronJob) -> dict[str, Any]:
    """A CronJob as on the wire (§5.1); unset state fields are left out, as ANIMA does."""
    state = {"nextRunAtMs": job.next_run_at_ms, "runningAtMs": job.running_at_ms,
             "lastRunAtMs": job.last_run_at_ms, "lastStatus": job.last_status or None,
             "lastError": job.last_error or None, "lastDurationMs": job.last_duration_ms,
             "consecutiveErrors": job.consecutive_errors, "scheduleErrorCount": job.schedule_error_count or None}
    return {"id": str(job.id), **spec_of(job), "createdAtMs": job.created_at_ms, "updatedAtMs": job.updated_at_ms,
            "state": {k: v for k, v in state.items() if v is not None}}


def list_jobs(include_disabled: bool) -> list[dict[str, Any]]:
    """Sorted by next run, jobs without one first (§5.5)."""
    rows = CronJob.objects.all() if include_disabled else CronJob.objects.filter(enabled=True)
    rows = rows.order_by(F("next_run_at_ms").asc(nulls_first=True), "created_at_ms")
    return [job_payload(job) for job in rows]


def status() -> dict[str, Any]:
    enabled = scheduler_enabled()
    return {"enabled": enabled, "storePath": "db", "jobs": CronJob.objects.count(),
            "nextWakeAtMs": next_wake_ms() if enabled else None}


def run_entry(run: CronRun) -> dict[str, Any]:
    entry = {"ts": run.ts, "jobId": str(run.job_id), "action": "finished", "status": run.status,
             "error": run.error or None, "summary": run.summary or None, "sessionId": run.session_id or None,
             "sessionKey": run.session_key or None, "runAtMs": run.run_at_ms, "durationMs": run.duration_ms,
             "nextRunAtMs": run.next_run_at_ms}
    return {k: v for k, v in entry.items() if v is not None}


def run_log(ref: str, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` entries, oldest first; entries outlive their job (§5.5)."""
    try:
        job_id = uuid.UUID(str(ref))
    except ValueError:
        return []
    newest = list(CronRun.objects.filter(job_id=job_id).order_by("-ts", "-id")[:limit])
    return [run_entry(run) for run in reversed(newest)]
