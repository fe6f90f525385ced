"""The onboarding steps and what each answer leads to. Pure: it reads the answers so far and
returns the next step (or the outcome); services.py stores sessions and applies the result.

Order (ANIMA's, operations.md §12): intro note → risk confirm → (invalid config: note, then
error) → NoxSoft registration note → default model → gateway token → first agent → apply?
→ summary note → done."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from gateway.chat.keys import normalize_agent_id

RISK_NOT_ACCEPTED = "risk not accepted"
NOT_APPLIED = "settings not applied"
MIN_TOKEN_CHARS = 16
TOKEN_PLACEHOLDER = "{token}"


class AnswerError(Exception):
    """An answer the step does not accept; like ANIMA's prompts, it ends the session with an error."""


@dataclass(frozen=True)
class Context:
    """What the steps need to know about the gateway, gathered before each call."""

    config_valid: bool
    config_issues: str
    registered_as: str | None
    models: list[dict[str, Any]]
    current_model: str
    existing_agents: set[str]


@dataclass
class Outcome:
    step: dict[str, Any] | None = None       # the next step to show, or None when finished
    status: str = "running"                  # running | done | cancelled | error
    error: str | None = None
    apply: dict[str, Any] | None = None      # settings to write now (answer to the apply step)
    answers: dict[str, Any] = field(default_factory=dict)


def _step(key: str, type_: str, **fields: Any) -> dict[str, Any]:
    step = {"id": str(uuid.uuid4()), "type": type_, "executor": "client", **{k: v for k, v in fields.items()
                                                                             if v is not None}}
    step["_key"] = key  # internal; removed before the step leaves the gateway
    return step


def public(step: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if step is None else {k: v for k, v in step.items() if not k.startswith("_")}


def _build(key: str, answers: dict[str, Any], ctx: Context) -> dict[str, Any]:
    if key == "intro":
        return _step(key, "note", title="Welcome to ANIMA",
                     message="This wizard sets the gateway token, the default model and a first agent.")
    if key == "risk":
        return _step(key, "confirm", title="Security",
                     message="Agents run by this gateway can act on this machine with the permissions you give "
                             "them, and anyone holding the gateway token can control it. Continue?",
                     initialValue=False)
    if key == "invalid":
        return _step(key, "note", title="Config invalid",
                     message=f"The stored config is invalid ({ctx.config_issues}). Fix it with config.set, "
                             "then run the wizard again.")
    if key == "registration":
        text = (f"Registered with NoxSoft as {ctx.registered_as}." if ctx.registered_as else
                "NoxSoft registration skipped: register later with anima.registration.register-invite "
                "(the service must be reachable).")
        return _step(key, "note", title="NoxSoft registration", message=text)
    if key == "model":
        options = [{"value": f"{m['provider']}/{m['id']}", "label": m.get("name") or m["id"],
                    "hint": m["provider"]} for m in ctx.models if m.get("provider") and m.get("id")]
        if not any(o["value"] == ctx.current_model for o in options):
            options.insert(0, {"value": ctx.current_model, "label": ctx.current_model, "hint": "current"})
        return _step(key, "select", title="Default model", message="Which model should agents use by default?",
                     options=options, initialValue=ctx.current_model)
    if key == "token":
        return _step(key, "text", title="Gateway token",
                     message=f"The shared token clients connect with (at least {MIN_TOKEN_CHARS} characters). "
                             "Leave empty to generate one.", placeholder="generate", sensitive=True)
    if key == "agent":
        return _step(key, "text", title="First agent",
                     message="Name of a first agent to create (leave empty to keep only the main agent).",
                     placeholder="e.g. Research")
    if key == "apply":
        agent = answers.get("agent") or "(none)"
        return _step(key, "confirm", title="Apply",
                     message=f"Write these settings? Default model {answers['model']}; gateway token "
                             f"{'generated' if answers.get('tokenGenerated') else 'as entered'}; first agent {agent}.",
                     initialValue=True)
    if key == "summary":
        lines = ["Onboarding complete."]
        if answers.get("tokenShown"):
            # the token itself is filled in when the step is sent (services.py): never stored in clear
            lines.append(f"Gateway token (shown once, store it now): {TOKEN_PLACEHOLDER}")
        return _step(key, "note", title="Done", message="\n".join(lines), sensitive=bool(answers.get("tokenShown")))
    raise AssertionError(key)


def first(ctx: Context) -> Outcome:
    return Outcome(step=_build("intro", {}, ctx))


def _truthy(value: Any) -> bool:
    return bool(value) and value not in ("false", "no", "0")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def answer(step: dict[str, Any], value: Any, answers: dict[str, Any], ctx: Context) -> Outcome:
    """The outcome of answering `step` with `value`. Raises AnswerError for an unacceptable value."""
    key = step["_key"]
    answers = dict(answers)
    nxt: str | None = None
    if key == "intro":
        nxt = "risk"
    elif key == "risk":
        if not _truthy(value):
            return Outcome(status="cancelled", error=RISK_NOT_ACCEPTED, answers=answers)
        nxt = "registration" if ctx.config_valid else "invalid"
    elif key == "invalid":
        return Outcome(status="error", error="invalid config", answers=answers)
    elif key == "registration":
        nxt = "model"
    elif key == "model":
        allowed = {o["value"] for o in step.get("options", [])}
        if not isinstance(value, str) or value not in allowed:
            raise AnswerError(f"invalid answer: {value!r} is not one of the offered models")
        answers["model"] = value
        nxt = "token"
    elif key == "token":
        token = _text(value)
        if not token:
            token, answers["tokenGenerated"] = secrets.token_urlsafe(32), True
        elif len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
            raise AnswerError(f"invalid answer: the token needs at least {MIN_TOKEN_CHARS} characters and no spaces")
        answers["token"] = token  # services.py encrypts it before storing
        nxt = "agent"
    elif key == "agent":
        name = _text(value)[:200]
        if name and normalize_agent_id(name) == "main":
            name = ""
        if name and normalize_agent_id(name) in ctx.existing_agents:
            raise AnswerError(f'invalid answer: agent "{normalize_agent_id(name)}" already exists')
        answers["agent"] = name
        nxt = "apply"
    elif key == "apply":
        if not _truthy(value):
            return Outcome(status="cancelled", error=NOT_APPLIED, answers=answers)
        if answers.get("tokenGenerated"):
            answers["tokenShown"] = answers["token"]
        return Outcome(step=_build("summary", answers, ctx), apply=answers, answers=answers)
    elif key == "summary":
        return Outcome(status="done", answers=answers)
    assert nxt is not None, key
    return Outcome(step=_build(nxt, answers, ctx), answers=answers)
