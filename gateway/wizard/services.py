"""Wizard sessions in the database: start, answer, cancel, report (operations.md §12). Every
call locks the session row, so concurrent answers from several processes are serialised; the
partial unique constraint on status=running keeps it to one wizard at a time."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from gateway.agents import queries as agent_queries
from gateway.agents import services as agent_services
from gateway.chat.catalog import default_model_ref
from gateway.chat.keys import normalize_agent_id
from gateway.config import services as config_services
from gateway.models import Registration, WizardSession
from gateway.protocol.errors import GatewayError, conflict, not_found, unavailable
from gateway.protocol.events import now_ms
from gateway.providers import crypto

from . import flow

log = logging.getLogger("gateway.wizard")

SECRET_ANSWERS = ("token", "tokenShown")
Status = WizardSession.Status


def context(models: list[dict[str, Any]]) -> flow.Context:
    snapshot = config_services.load()
    issues = "; ".join(f"{i['path'] or 'root'}: {i['message']}" for i in snapshot.issues)
    registration = Registration.objects.filter(pk=1).first()
    registered = None
    if registration is not None and registration.token_encrypted:
        registered = (registration.agent or {}).get("name") or "an agent"
    provider, model = default_model_ref()
    return flow.Context(config_valid=snapshot.valid, config_issues=issues, registered_as=registered, models=models,
                        current_model=f"{provider}/{model}",
                        existing_agents={a["id"] for a in agent_queries.list_agents()["agents"]})


def _seal(answers: dict[str, Any]) -> dict[str, Any]:
    return {k: crypto.encrypt(v) if k in SECRET_ANSWERS and isinstance(v, str) else v for k, v in answers.items()}


def _unseal(answers: dict[str, Any]) -> dict[str, Any]:
    return {k: crypto.decrypt(v) if k in SECRET_ANSWERS and isinstance(v, str) else v for k, v in answers.items()}


def _expire_idle() -> None:
    """A running wizard nobody answered for ANIMA_WIZARD_IDLE_TIMEOUT_S no longer blocks a new one."""
    cutoff = now_ms() - settings.ANIMA_WIZARD_IDLE_TIMEOUT_S * 1000
    WizardSession.objects.filter(status=Status.RUNNING, updated_at_ms__lt=cutoff).update(
        status=Status.ERROR, error="timed out", step=None, answers={}, updated_at_ms=now_ms())


def _report(row: WizardSession) -> dict[str, Any]:
    """{done, status, step?, error?}; a finished session is purged once reported."""
    if row.status == Status.RUNNING:
        step = flow.public(row.step)
        if step is not None and flow.TOKEN_PLACEHOLDER in step.get("message", ""):
            shown = _unseal(row.answers).get("tokenShown") or ""
            step["message"] = step["message"].replace(flow.TOKEN_PLACEHOLDER, shown)
        return {"sessionId": str(row.session_id), "done": False, "step": step, "status": row.status}
    out: dict[str, Any] = {"sessionId": str(row.session_id), "done": True, "status": row.status}
    if row.error:
        out["error"] = row.error
    row.delete()
    return out


def start(mode: str | None, workspace: str | None, models: list[dict[str, Any]], actor: str) -> dict[str, Any]:
    """wizard.start: 409 while another wizard runs."""
    if mode == "remote":
        raise unavailable("remote-mode onboarding is not available from the gateway; run it on the client")
    ctx = context(models)
    outcome = flow.first(ctx)
    at = now_ms()
    answers = {"workspace": workspace.strip()} if workspace and workspace.strip() else {}
    try:
        with transaction.atomic():
            _expire_idle()
            row = WizardSession.objects.create(session_id=uuid.uuid4(), mode=mode or "local", step=outcome.step,
                                               answers=answers, actor=actor[:200], created_at_ms=at, updated_at_ms=at)
    except IntegrityError:
        raise conflict("wizard already running") from None
    return _report(row)


def _locked(session_id: str) -> WizardSession:
    try:
        key = uuid.UUID(session_id.strip())
    except ValueError:
        raise not_found("wizard not found") from None
    row = WizardSession.objects.select_for_update().filter(session_id=key).first()
    if row is None:
        raise not_found("wizard not found")
    return row


@transaction.atomic
def next_step(session_id: str, answer: dict[str, Any] | None, models: list[dict[str, Any]]) -> dict[str, Any]:
    """wizard.next: without an answer the pending step again; with one, the step after it."""
    row = _locked(session_id)
    if answer is None:
        return _report(row)
    if row.status != Status.RUNNING:
        raise conflict("wizard not running")
    if row.step is None or answer["stepId"] != row.step.get("id"):
        raise conflict("wizard: no pending step")
    answers = _unseal(row.answers)
    try:
        outcome = flow.answer(row.step, answer.get("value"), answers, context(models))
        if outcome.apply is not None:
            apply(outcome.apply, row)
    except flow.AnswerError as exc:
        outcome = flow.Outcome(status=Status.ERROR, error=str(exc))
    except GatewayError as exc:
        log.warning("wizard %s could not apply its settings: %s", row.session_id, exc.message)
        outcome = flow.Outcome(status=Status.ERROR, error=exc.message)
    row.status, row.error = outcome.status, outcome.error or ""
    row.step = outcome.step if outcome.status == Status.RUNNING else None
    row.answers = _seal(outcome.answers) if outcome.status == Status.RUNNING else {}
    row.updated_at_ms = now_ms()
    row.save()
    return _report(row)


@transaction.atomic
def cancel(session_id: str) -> dict[str, Any]:
    row = _locked(session_id)
    if row.status == Status.RUNNING:
        row.status, row.error = Status.CANCELLED, "cancelled"
    out = {"status": row.status, "error": row.error or None}
    row.delete()
    return out


@transaction.atomic
def status(session_id: str) -> dict[str, Any]:
    row = _locked(session_id)
    out: dict[str, Any] = {"status": row.status}
    if row.error:
        out["error"] = row.error
    if row.status != Status.RUNNING:
        row.delete()
    return out


# --- applying the answers -------------------------------------------------------------------------------------

def apply(answers: dict[str, Any], row: WizardSession) -> None:
    """Write the gateway token and default model (config, through the one config write path) and
    create the first agent. Raises GatewayError; the surrounding transaction then writes nothing."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    merge: dict[str, Any] = {
        "gateway": {"auth": {"mode": "token", "token": answers["token"]}},
        "agents": {"defaults": {"model": answers["model"]}},
        "wizard": {"lastRunAt": stamp, "lastRunVersion": settings.ANIMA_VERSION, "lastRunCommand": "onboard",
                   "lastRunMode": row.mode if row.mode in ("local", "remote") else "local"},
    }
    if answers.get("workspace"):
        merge["agents"]["defaults"]["workspace"] = answers["workspace"]
    actor = f"wizard:{row.session_id}"
    with transaction.atomic():
        base = config_services.stored_hash()
        config_services.patch(merge, base_hash=base, actor=actor, source="wizard")
        name = answers.get("agent")
        if name:
            agent_id = normalize_agent_id(name)
            agent_services.create_agent(name, agent_queries.default_workspace(agent_id))
