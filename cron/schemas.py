"""Params of the cron methods and the job document (chat-sessions-cron.md §5.1, §5.5).

cron.add and cron.update accept the lenient shapes ANIMA's clients send (a `{data:…}` or
`{job:…}` wrapper, kinds inferred from their fields, `atMs`, top-level payload fields): those are
normalised first (`normalise_add`, `coerce_patch`), then the result is validated strictly
against `JobSpec`, so every problem is reported with its JSON path (D3)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, StringConstraints, ValidationError

from gateway.protocol.errors import invalid
from gateway.protocol.registry import Params
from gateway.protocol.validation import pointer

from .schedules import iso_ms

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
NAME_MAX = 200
RUNS_LIMIT_MAX = 5000
# Upper bounds keep every stored number inside a 64-bit column and every instant printable.
EVERY_MAX_MS = 10 * 365 * 24 * 3600 * 1000   # ten years, like the furthest `at`
EPOCH_MAX_MS = 2**53                         # JSON-safe integer
TIMEOUT_MAX_S = 7 * 24 * 3600                # a week
TEXT_MAX = 100_000                           # system-event text and agent-turn message


# --- the job document -----------------------------------------------------------------------------

class AtSchedule(Params):
    kind: Literal["at"]
    at: NonEmpty


class EverySchedule(Params):
    kind: Literal["every"]
    every_ms: Annotated[int, Field(ge=1, le=EVERY_MAX_MS)]
    anchor_ms: Annotated[int, Field(ge=0, le=EPOCH_MAX_MS)] | None = None


class CronSchedule(Params):
    kind: Literal["cron"]
    expr: NonEmpty
    tz: NonEmpty | None = None


class SystemEventPayload(Params):
    kind: Literal["systemEvent"]
    text: Annotated[str, StringConstraints(max_length=TEXT_MAX)]


class AgentTurnPayload(Params):
    kind: Literal["agentTurn"]
    message: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TEXT_MAX)]
    model: NonEmpty | None = None
    thinking: str | None = None
    timeout_seconds: Annotated[int, Field(ge=1, le=TIMEOUT_MAX_S)] | None = None
    allow_unsafe_external_content: bool | None = None


class Delivery(Params):
    mode: Literal["none", "announce"]
    channel: str | None = None
    to: str | None = None
    best_effort: bool | None = None


class JobSpec(Params):
    """A whole job after normalisation: what cron.add stores and cron.update re-checks."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX)]
    description: str | None = None
    agent_id: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    enabled: bool = True
    delete_after_run: bool | None = None
    schedule: Annotated[Union[AtSchedule, EverySchedule, CronSchedule], Field(discriminator="kind")]
    session_target: Literal["main", "isolated"]
    wake_mode: Literal["now", "next-heartbeat"] = "now"
    payload: Annotated[Union[SystemEventPayload, AgentTurnPayload], Field(discriminator="kind")]
    delivery: Delivery | None = None

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


# --- method params --------------------------------------------------------------------------------

class JobRef(Params):
    """`jobId` is canonical, `id` is accepted (§5.5)."""

    id: NonEmpty | None = None
    job_id: NonEmpty | None = None

    @property
    def ref(self) -> str:
        value = self.job_id or self.id
        if value is None:
            raise invalid("invalid params: at /jobId: required",
                          details={"errors": [{"path": "/jobId", "message": "required"}]})
        return value


class ListParams(Params):
    include_disabled: bool = False


class RunsParams(JobRef):
    limit: Annotated[int, Field(ge=1, le=RUNS_LIMIT_MAX)] = 200


class RunParams(JobRef):
    mode: Literal["force", "due"] = "force"


class UpdateParams(JobRef):
    patch: dict[str, Any]


class AddParams(Params):
    """Everything is kept: normalisation reads fields that the strict model does not know."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def raw(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# --- normalisation (§5.1 "Input normalisation") ---------------------------------------------------

SCHEDULE_KINDS = {"at": "at", "every": "every", "cron": "cron"}
PAYLOAD_KINDS = {"systemevent": "systemEvent", "agentturn": "agentTurn"}
LIFTED = ("message", "text", "model", "thinking", "timeoutSeconds")


def _kind(value: Any, kinds: dict[str, str]) -> Any:
    """Kind matching is case-insensitive; an unknown kind is left for the validator to report."""
    return kinds.get(value.lower(), value) if isinstance(value, str) else value


def coerce_schedule(schedule: Any) -> Any:
    if not isinstance(schedule, dict):
        return schedule
    out = dict(schedule)
    if "atMs" in out and "at" not in out and isinstance(out["atMs"], int) and not isinstance(out["atMs"], bool):
        out["at"] = iso_ms(out.pop("atMs"))
    if "kind" not in out:
        out["kind"] = "at" if "at" in out else "every" if "everyMs" in out else "cron" if "expr" in out else None
    out["kind"] = _kind(out["kind"], SCHEDULE_KINDS)
    if out["kind"] is None:
        del out["kind"]
    return out


def coerce_payload(payload: Any) -> Any:
    if not isinstance(payload, dict):
        return payload
    out = dict(payload)
    if "kind" not in out:
        if "message" in out:
            out["kind"] = "agentTurn"
        elif "text" in out:
            out["kind"] = "systemEvent"
    out["kind"] = _kind(out.get("kind"), PAYLOAD_KINDS)
    if out["kind"] is None:
        del out["kind"]
    return out


def coerce_delivery(job: dict[str, Any]) -> None:
    """Legacy `deliver/channel/to/bestEffortDeliver` become `delivery`; mode "deliver" means announce."""
    legacy = {k: job.pop(k) for k in ("deliver", "channel", "to", "bestEffortDeliver") if k in job}
    if legacy and "delivery" not in job:
        delivery: dict[str, Any] = {"mode": "none" if legacy.get("deliver") is False else "announce"}
        for src, dst in (("channel", "channel"), ("to", "to"), ("bestEffortDeliver", "bestEffort")):
            if src in legacy:
                delivery[dst] = legacy[src]
        job["delivery"] = delivery
    if isinstance(job.get("delivery"), dict) and job["delivery"].get("mode") == "deliver":
        job["delivery"] = {**job["delivery"], "mode": "announce"}


def coerce(job: dict[str, Any]) -> dict[str, Any]:
    """The coercions shared by cron.add and cron.update's patch (no defaults)."""
    out = dict(job)
    for key in ("data", "job"):
        if isinstance(out.get(key), dict) and "schedule" not in out:
            out = {**out.pop(key)}
    lifted = {k: out.pop(k) for k in LIFTED if k in out}
    if lifted:
        payload = dict(out["payload"]) if isinstance(out.get("payload"), dict) else {}
        out["payload"] = {**lifted, **payload}
    if "schedule" in out:
        out["schedule"] = coerce_schedule(out["schedule"])
    if "payload" in out:
        out["payload"] = coerce_payload(out["payload"])
    coerce_delivery(out)
    return out


def inferred_name(job: dict[str, Any]) -> str:
    payload = job.get("payload") if isinstance(job.get("payload"), dict) else {}
    text = payload.get("text") or payload.get("message")
    if isinstance(text, str) and text.strip():
        return text.strip().splitlines()[0][:60]
    schedule = job.get("schedule") if isinstance(job.get("schedule"), dict) else {}
    kind = schedule.get("kind")
    if kind == "cron":
        return f"Cron: {schedule.get('expr')}"
    if kind == "every":
        return f"Every: {schedule.get('everyMs')}ms"
    if kind == "at":
        return "One-shot"
    return "Cron job"


def normalise_add(raw: dict[str, Any]) -> JobSpec:
    """cron.add params -> a checked JobSpec, with §5.1's defaults filled in."""
    job = coerce(raw)
    payload = job.get("payload") if isinstance(job.get("payload"), dict) else {}
    schedule = job.get("schedule") if isinstance(job.get("schedule"), dict) else {}
    if "sessionTarget" not in job:
        job["sessionTarget"] = {"agentTurn": "isolated", "systemEvent": "main"}.get(payload.get("kind"))
        if job["sessionTarget"] is None:
            del job["sessionTarget"]
    job.setdefault("wakeMode", "now")
    job.setdefault("enabled", True)
    if schedule.get("kind") == "at":
        job.setdefault("deleteAfterRun", True)
    if not (isinstance(job.get("name"), str) and job["name"].strip()) and job.get("name") is None:
        job["name"] = inferred_name(job)
    if job.get("sessionTarget") == "isolated" and payload.get("kind") == "agentTurn" and job.get("delivery") is None:
        job["delivery"] = {"mode": "announce"}
    return check(job, "cron.add params")


TAGS = {("schedule", "at"), ("schedule", "every"), ("schedule", "cron"), ("payload", "systemEvent"),
        ("payload", "agentTurn")}


def validate_spec(job: dict[str, Any], what: str) -> JobSpec:
    """JobSpec validation whose error paths name the document's fields only (pydantic puts the
    union's tag into the location: /schedule/every/everyMs is reported as /schedule/everyMs)."""
    try:
        return JobSpec.model_validate(job)
    except ValidationError as exc:
        errors: list[dict[str, str]] = []
        for err in exc.errors(include_url=False):
            loc = list(err["loc"])
            if len(loc) >= 2 and (loc[0], loc[1]) in TAGS:
                del loc[1]
            problem = {"path": pointer(tuple(loc)), "message": "required" if err["type"] == "missing" else err["msg"]}
            if problem not in errors:
                errors.append(problem)
        text = "; ".join(f"at {e['path']}: {e['message']}" for e in errors)
        raise invalid(f"invalid {what}: {text}", details={"errors": errors}) from None


def check(job: dict[str, Any], what: str) -> JobSpec:
    spec = validate_spec(job, what)
    if spec.session_target == "main" and spec.payload.kind != "systemEvent":
        raise invalid('main cron jobs require payload.kind="systemEvent"')
    if spec.session_target == "isolated" and spec.payload.kind != "agentTurn":
        raise invalid('isolated cron jobs require payload.kind="agentTurn"')
    if spec.delivery is not None and spec.session_target != "isolated":
        raise invalid('cron delivery config is only supported for sessionTarget="isolated"')
    return spec


def merge_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a (coerced) cron.update patch to a job document (§5.5): payloads merge field by
    field when the kind stays and are rebuilt when it changes; delivery merges; null clears."""
    merged = dict(current)
    for key, value in patch.items():
        if key in ("id", "createdAtMs", "updatedAtMs", "state"):
            continue
        if key == "payload" and isinstance(value, dict) and isinstance(current.get("payload"), dict) \
                and value.get("kind", current["payload"].get("kind")) == current["payload"].get("kind"):
            merged["payload"] = {**current["payload"], **value}
        elif key == "delivery" and isinstance(value, dict) and isinstance(current.get("delivery"), dict):
            merged["delivery"] = {**current["delivery"], **value}
        elif value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    if merged.get("sessionTarget") == "main":
        merged.pop("delivery", None)  # a patch that changes a job to main drops delivery
    return merged
