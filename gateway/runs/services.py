"""Database side of runs: create (idempotent), claim the next queued run of a session, finish,
abort a queued run, renew leases and fail runs whose owner died."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from gateway.chat.transcripts import append_entry, ensure_session, text_message
from gateway.models import Run, Session
from gateway.protocol.events import now_ms

LEASE_MS = 30_000
ACTIVE = (Run.Status.QUEUED, Run.Status.RUNNING)
TERMINAL = (Run.Status.OK, Run.Status.ERROR, Run.Status.ABORTED, Run.Status.TIMEOUT)


def create_run(kind: str, run_id: str, session_key: str, message: str, params: dict[str, Any]) -> tuple[Run, bool]:
    """Persist a queued run at once (a crash loses nothing). The (kind, run_id) constraint makes
    the idempotency key start at most one run, across processes."""
    ensure_session(session_key)
    try:
        with transaction.atomic():
            run = Run.objects.create(kind=kind, run_id=run_id, session_key=session_key, message=message,
                                     params=params, created_at_ms=now_ms())
        return run, True
    except IntegrityError:
        return Run.objects.get(kind=kind, run_id=run_id), False


@transaction.atomic
def claim_next(session_key: str, owner: str) -> Run | None:
    """Start the session's oldest queued run here, unless a run of the session is running.
    The session row lock serialises claimers on every process. The user message enters the
    transcript now, so history reads user1, assistant1, user2, assistant2 (README D14)."""
    session = Session.objects.select_for_update().filter(key=session_key).first()
    if session is None:
        return None
    if Run.objects.filter(session_key=session_key, status=Run.Status.RUNNING).exists():
        return None
    run = Run.objects.filter(session_key=session_key, status=Run.Status.QUEUED).order_by("created_at_ms", "id").first()
    if run is None:
        return None
    now = now_ms()
    timeout_ms = int(run.params.get("timeoutMs") or 0)
    run.status = Run.Status.RUNNING
    run.owner = owner
    run.lease_until_ms = now + LEASE_MS
    run.started_at_ms = now
    run.session_id = session.session_id
    run.expires_at_ms = now + timeout_ms if timeout_ms > 0 else None
    run.save(update_fields=["status", "owner", "lease_until_ms", "started_at_ms", "session_id", "expires_at_ms"])
    append_entry(session_key, text_message("user", run.message), run_id=run.run_id, session=session)
    return run


@transaction.atomic
def finish_run(run: Run, status: str, *, text: str, usage: dict[str, Any] | None, stop_reason: str,
               error: str = "", provider: str = "", model: str = "", result: dict[str, Any] | None = None) -> Run:
    """Record the outcome and the assistant reply (a partial one too, marked aborted: D14)."""
    now = now_ms()
    if text or status == Run.Status.OK:
        message = text_message("assistant", text, stopReason=stop_reason, usage=usage or {}, provider=provider,
                               model=model)
        if status != Run.Status.OK:
            message["stopReason"] = "aborted" if status == Run.Status.ABORTED else status
        append_entry(run.session_key, message, run_id=run.run_id)
    Run.objects.filter(pk=run.pk).update(status=status, ended_at_ms=now, error=error, stop_reason=stop_reason,
                                         usage=usage, result=result, lease_until_ms=None)
    session_fields: dict[str, Any] = {"aborted_last_run": status == Run.Status.ABORTED}
    if usage:
        session_fields.update(input_tokens=usage.get("input", 0), output_tokens=usage.get("output", 0),
                              total_tokens=usage.get("totalTokens", 0), total_tokens_fresh=True)
    if model:
        session_fields.update(model=model, model_provider=provider)
    Session.objects.filter(key=run.session_key).update(**session_fields)
    run.refresh_from_db()
    return run


@transaction.atomic
def abort_queued(run: Run, stop_reason: str) -> bool:
    """A queued run that never started: aborted in place (nothing reached the transcript)."""
    updated = Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(
        status=Run.Status.ABORTED, stop_reason=stop_reason, ended_at_ms=now_ms())
    return bool(updated)


def renew_leases(owner: str) -> None:
    Run.objects.filter(owner=owner, status=Run.Status.RUNNING).update(lease_until_ms=now_ms() + LEASE_MS)


@transaction.atomic
def reap_orphans() -> list[Run]:
    """Runs whose owner stopped renewing its lease (crash, restart): failed, never left running."""
    now = now_ms()
    orphans = list(Run.objects.select_for_update().filter(status=Run.Status.RUNNING, lease_until_ms__lt=now))
    for run in orphans:
        Run.objects.filter(pk=run.pk).update(status=Run.Status.ERROR, ended_at_ms=now, lease_until_ms=None,
                                             error="the gateway process running this run stopped",
                                             stop_reason="error")
    return orphans


def sessions_waiting() -> list[str]:
    """Sessions with queued runs and no running one (their claimer may have died)."""
    queued = set(Run.objects.filter(status=Run.Status.QUEUED).values_list("session_key", flat=True).distinct())
    running = set(Run.objects.filter(status=Run.Status.RUNNING, session_key__in=queued)
                  .values_list("session_key", flat=True))
    return sorted(queued - running)


def find_run(run_id: str, kind: str | None = None) -> Run | None:
    rows = Run.objects.filter(run_id=run_id)
    if kind:
        rows = rows.filter(kind=kind)
    return rows.order_by("-created_at_ms").first()


def active_runs(session_key: str) -> list[Run]:
    return list(Run.objects.filter(session_key=session_key, status__in=ACTIVE).order_by("created_at_ms", "id"))


def expire_all_leases() -> None:
    """At start of a single-process gateway (no shared channel layer) every running run belongs
    to a previous life of this process: let the next reap fail them at once."""
    Run.objects.filter(status=Run.Status.RUNNING).update(lease_until_ms=0)
