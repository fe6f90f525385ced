"""Writes to session entries (chat-sessions-cron.md §1.7-1.10): patch, reset, delete, compact.
Each write runs in one transaction on the locked row; transcript entries are never deleted,
only archived (`archived_reason` reset | deleted | bak). Reset and delete first stop the
session's runs, wherever they run, through the run manager."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any, Callable

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction

from gateway.models import Session, TranscriptEntry
from gateway.protocol.errors import conflict, invalid, unavailable
from gateway.protocol.events import now_ms
from gateway.queries import SESSIONS_PATH

from .catalog import XHIGH_HINT, default_model_ref, resolve_model, supports_xhigh
from .keys import agent_of, canonical_key, is_subagent_key, main_session_key
from .queries import effective_model, entry_dict

if TYPE_CHECKING:
    from gateway.runtime import GatewayRuntime

STOP_WAIT_S = 15.0
LABEL_MAX = 64
THINKING_LEVELS = ("off", "minimal", "low", "medium", "high")


# --- enum normalisers (ANIMA's aliases) --------------------------------------------------------------------

def _lookup(table: dict[str, tuple[str, ...]]) -> Callable[[str], str | None]:
    flat = {alias: value for value, aliases in table.items() for alias in (value, *aliases)}
    return lambda raw: flat.get(raw.strip().lower())


normalize_thinking = _lookup({
    "off": (), "minimal": ("min", "think"), "low": ("on", "enable", "enabled", "thinkhard", "think-hard", "think_hard"),
    "medium": ("mid", "med", "thinkharder", "think-harder", "harder"),
    "high": ("ultra", "ultrathink", "thinkhardest", "highest", "max"), "xhigh": ("x-high", "x_high", "extrahigh"),
})
normalize_verbose = _lookup({"off": ("false", "no", "0"), "on": ("minimal", "true", "yes", "1"),
                             "full": ("all", "everything")})
normalize_reasoning = _lookup({"off": ("false", "no", "0", "hide", "hidden", "disable", "disabled"),
                               "on": ("true", "yes", "1", "show", "visible", "enable", "enabled"),
                               "stream": ("streaming", "draft", "live")})
normalize_usage = _lookup({"off": ("false", "no", "0", "disable", "disabled"),
                           "tokens": ("on", "true", "yes", "1", "enable", "enabled", "token", "tok", "minimal", "min"),
                           "full": ("session",)})
normalize_elevated = _lookup({"off": ("false", "no", "0"), "full": ("auto", "auto-approve", "autoapprove"),
                              "ask": ("prompt", "approval", "approve"), "on": ("true", "yes", "1")})
SIMPLE_ENUMS: dict[str, tuple[tuple[str, ...], str]] = {
    "execHost": (("sandbox", "gateway", "node"), 'invalid execHost (use "sandbox"|"gateway"|"node")'),
    "execSecurity": (("deny", "allowlist", "full"), 'invalid execSecurity (use "deny"|"allowlist"|"full")'),
    "execAsk": (("off", "on-miss", "always"), 'invalid execAsk (use "off"|"on-miss"|"always")'),
    "sendPolicy": (("allow", "deny"), 'invalid sendPolicy (use "allow"|"deny")'),
    "groupActivation": (("mention", "always"), 'invalid groupActivation (use "mention"|"always")'),
}


def parse_label(raw: str) -> str:
    label = raw.strip()
    if not label:
        raise invalid("invalid label: empty")
    if len(label) > LABEL_MAX:
        raise invalid(f"invalid label: too long (max {LABEL_MAX})")
    return label


# --- the locked row ------------------------------------------------------------------------------------------

def locked_row(key: str, *, create: bool = True) -> Session | None:
    """The session row of a canonical key, locked for this transaction. A legacy variant of the
    key (mixed case) is renamed to the canonical key; an unknown key is created when asked."""
    session = Session.objects.select_for_update().filter(key=key).first()
    if session is None:
        legacy = Session.objects.select_for_update().filter(key__iexact=key).first()
        if legacy is not None:
            legacy.key = key
            legacy.save(update_fields=["key"])
            return legacy
        if not create:
            return None
        now = now_ms()
        try:
            with transaction.atomic():
                Session.objects.create(key=key, agent_id=agent_of(key), created_at_ms=now, updated_at_ms=now)
        except IntegrityError:  # created meanwhile by another writer: lock theirs
            pass
        session = Session.objects.select_for_update().get(key=key)
    return session


def archive_transcript(session_id: uuid.UUID, reason: str, now: int, *, before_seq: int | None = None) -> int:
    rows = TranscriptEntry.objects.filter(session_id=session_id, archived_reason__isnull=True)
    if before_seq is not None:
        rows = rows.filter(seq__lt=before_seq)
    return rows.update(archived_reason=reason, archived_at_ms=now)


# --- sessions.patch --------------------------------------------------------------------------------------------

class Patch:
    """Applies one sessions.patch to a row, field by field, in ANIMA's order (§1.7)."""

    def __init__(self, session: Session, changes: dict[str, Any]):
        self.s, self.changes = session, changes
        self.settings = dict(session.settings or {})

    def set(self, name: str, value: Any) -> None:
        if value is None:
            self.settings.pop(name, None)
        else:
            self.settings[name] = value

    def apply(self) -> None:
        c, s = self.changes, self.s
        if "spawnedBy" in c:
            self.spawned_by(c["spawnedBy"])
        if "spawnDepth" in c:
            self.spawn_depth(c["spawnDepth"])
        if "label" in c:
            self.label(c["label"])
        if "thinkingLevel" in c:
            self.thinking(c["thinkingLevel"])
        if "verboseLevel" in c:
            raw = c["verboseLevel"]
            value = None if raw is None else normalize_verbose({True: "on", False: "off"}.get(raw, raw))
            if raw is not None and value is None:
                raise invalid('invalid verboseLevel (use "on"|"off")')
            self.set("verboseLevel", value)
        if "reasoningLevel" in c:
            self.off_deletes("reasoningLevel", c["reasoningLevel"], normalize_reasoning,
                             'invalid reasoningLevel (use "on"|"off"|"stream")')
        if "responseUsage" in c:
            self.off_deletes("responseUsage", c["responseUsage"], normalize_usage,
                             'invalid responseUsage (use "off"|"tokens"|"full")')
        if "elevatedLevel" in c:
            self.enum("elevatedLevel", c["elevatedLevel"], normalize_elevated,
                      'invalid elevatedLevel (use "on"|"off"|"ask"|"full")')
        for name in ("execHost", "execSecurity", "execAsk"):
            if name in c:
                self.simple(name, c[name])
        if "execNode" in c:
            node = c["execNode"]
            if node is not None and not node.strip():
                raise invalid("invalid execNode: empty")
            self.set("execNode", node.strip() if node is not None else None)
        if "model" in c:
            self.model(c["model"])
        if self.settings.get("thinkingLevel") == "xhigh" and not supports_xhigh(*self.effective()):
            if "thinkingLevel" in c:
                raise invalid(f'thinkingLevel "xhigh" is only supported for {XHIGH_HINT}')
            self.settings["thinkingLevel"] = "high"  # a model change made the stored xhigh unsupported
        for name in ("sendPolicy", "groupActivation"):
            if name in c:
                self.simple(name, c[name])
        s.settings = self.settings
        s.updated_at_ms = max(s.updated_at_ms, now_ms())

    def effective(self) -> tuple[str, str]:
        return effective_model(self.s)

    def enum(self, name: str, raw: str | None, normalize: Callable[[str], str | None], error: str) -> str | None:
        value = None if raw is None else normalize(raw)
        if raw is not None and value is None:
            raise invalid(error)
        self.set(name, value)
        return value

    def off_deletes(self, name: str, raw: str | None, normalize: Callable[[str], str | None], error: str) -> None:
        if self.enum(name, raw, normalize, error) == "off":
            self.settings.pop(name, None)

    def simple(self, name: str, raw: str | None) -> None:
        allowed, error = SIMPLE_ENUMS[name]
        self.enum(name, raw, lambda v: v.strip().lower() if v.strip().lower() in allowed else None, error)

    def spawned_by(self, raw: str | None) -> None:
        s = self.s
        if raw is None:
            if s.spawned_by:
                raise invalid("spawnedBy cannot be cleared once set")
            return
        parent = raw.strip()
        if not parent:
            raise invalid("invalid spawnedBy: empty")
        if not is_subagent_key(s.key):
            raise invalid("spawnedBy is only supported for subagent:* sessions")
        if s.spawned_by and s.spawned_by != parent:
            raise invalid("spawnedBy cannot be changed once set")
        s.spawned_by = parent

    def spawn_depth(self, raw: int | None) -> None:
        current = self.settings.get("spawnDepth")
        if raw is None:
            if isinstance(current, int):
                raise invalid("spawnDepth cannot be cleared once set")
            return
        if not is_subagent_key(self.s.key):
            raise invalid("spawnDepth is only supported for subagent:* sessions")
        if raw < 0:
            raise invalid("invalid spawnDepth (use an integer >= 0)")
        if isinstance(current, int) and current != raw:
            raise invalid("spawnDepth cannot be changed once set")
        self.settings["spawnDepth"] = raw

    def label(self, raw: str | None) -> None:
        s = self.s
        if raw is None:
            s.label = None
            return
        label = parse_label(raw)
        if Session.objects.filter(agent_id=s.agent_id, label=label).exclude(pk=s.pk).exists():
            raise conflict(f"label already in use: {label}")
        s.label = label

    def thinking(self, raw: str | None) -> None:
        value = None if raw is None else normalize_thinking(raw)
        if raw is not None and value is None:
            levels = list(THINKING_LEVELS) + (["xhigh"] if supports_xhigh(*self.effective()) else [])
            raise invalid(f"invalid thinkingLevel (use {'|'.join(levels)})")
        self.set("thinkingLevel", value)

    def model(self, raw: str | None) -> None:
        """null, or the agent's default model, clears the override. The override is stored as the
        full `provider/model` reference in model_override (what the run manager reads)."""
        s = self.s
        default = default_model_ref(s.agent_id)
        ref = default if raw is None else resolve_model(raw)
        if ref == default:
            s.model_override, s.provider_override = "", ""
        else:
            s.model_override, s.provider_override = f"{ref[0]}/{ref[1]}", ref[0]
        self.settings.pop("authProfileOverride", None)


@transaction.atomic
def patch_session(raw_key: str, changes: dict[str, Any]) -> dict[str, Any]:
    """sessions.patch: `changes` holds only the fields the caller sent (null clears). An unknown
    key creates the entry; nothing is written when a field is invalid. No event (ANIMA sends none)."""
    key = canonical_key(raw_key)
    session = locked_row(key)
    Patch(session, changes).apply()
    try:
        with transaction.atomic():
            session.save()
    except IntegrityError:  # the (agent_id, label) constraint: another writer took the label meanwhile
        raise conflict(f"label already in use: {session.label}") from None
    provider, model = effective_model(session)
    return {"ok": True, "path": SESSIONS_PATH, "key": key, "entry": entry_dict(session),
            "resolved": {"modelProvider": provider, "model": model}}


# --- stopping a session's runs -----------------------------------------------------------------------------

async def stop_session_runs(runtime: GatewayRuntime, key: str) -> None:
    """Clear the session's queue, abort its active run (any process) and wait up to 15 s for it
    to end, so its partial reply lands in the transcript being archived, not the next one. Runs
    of sub-agent sessions it spawned are aborted too."""
    children = await sync_to_async(lambda: list(Session.objects.filter(spawned_by=key).values_list("key", flat=True)))()
    for child in children:
        await runtime.runs.abort(child, None, "rpc")
    aborted = await runtime.runs.abort(key, None, "rpc")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_WAIT_S
    for run_id in aborted:
        if await runtime.runs.wait_done(run_id, max(0.0, deadline - loop.time())) is None:
            raise unavailable(f"Session {key} is still active; try again in a moment.", retryable=True)


# --- sessions.reset ---------------------------------------------------------------------------------------

# What a reset drops (§1.8): overrides, elevated/exec settings, lineage and per-transcript state.
RESET_DROPS = ("authProfileOverride", "elevatedLevel", "execHost", "execSecurity", "execAsk", "execNode",
               "spawnDepth", "systemPromptReport", "memoryFlushAt", "cliSessionIds")


@transaction.atomic
def reset_row(key: str) -> dict[str, Any]:
    session = locked_row(key)
    now = now_ms()
    archive_transcript(session.session_id, "reset", now)
    session.session_id = uuid.uuid4()
    session.settings = {k: v for k, v in (session.settings or {}).items() if k not in RESET_DROPS}
    session.model_override = session.provider_override = ""
    session.spawned_by = None
    session.input_tokens = session.output_tokens = session.total_tokens = 0
    session.total_tokens_fresh = True
    session.compaction_count = 0
    session.system_sent = session.aborted_last_run = False
    session.updated_at_ms = now
    session.save()
    return {"ok": True, "key": key, "entry": entry_dict(session)}


async def reset_session(runtime: GatewayRuntime, raw_key: str, reason: str = "reset") -> dict[str, Any]:
    """sessions.reset (`reason` new|reset: both start a new transcript): a new sessionId, zeroed
    counters; the old transcript is archived as `reset`."""
    key = canonical_key(raw_key)
    await stop_session_runs(runtime, key)
    return await sync_to_async(reset_row)(key)


# --- sessions.delete --------------------------------------------------------------------------------------------

@transaction.atomic
def delete_row(key: str, delete_transcript: bool) -> dict[str, Any]:
    session = locked_row(key, create=False)
    if session is None:
        return {"ok": True, "key": key, "deleted": False, "archived": []}
    archived = []
    if delete_transcript and archive_transcript(session.session_id, "deleted", now_ms()):
        archived.append(str(session.session_id))
    session.delete()
    return {"ok": True, "key": key, "deleted": True, "archived": archived}


async def delete_session(runtime: GatewayRuntime, raw_key: str, delete_transcript: bool = True) -> dict[str, Any]:
    """sessions.delete: never the main session; the transcript is archived as `deleted`."""
    key = canonical_key(raw_key)
    main = main_session_key()
    if key == main:
        raise invalid(f"Cannot delete the main session ({main}).")
    await stop_session_runs(runtime, key)
    return await sync_to_async(delete_row)(key, delete_transcript)


# --- sessions.compact ---------------------------------------------------------------------------------------------

@transaction.atomic
def compact_session(raw_key: str, max_lines: int = 400) -> dict[str, Any]:
    """Keep the newest `max_lines` transcript entries; archive the rest as `bak` (§1.10). A
    mechanical truncation, not a summary."""
    key = canonical_key(raw_key)
    session = locked_row(key, create=False)
    if session is None:
        return {"ok": True, "key": key, "compacted": False, "reason": "no sessionId"}
    live = TranscriptEntry.objects.filter(session_id=session.session_id, archived_reason__isnull=True)
    cutoff = list(live.order_by("-seq").values_list("seq", flat=True)[max_lines - 1:max_lines + 1])
    if not live.exists():
        return {"ok": True, "key": key, "compacted": False, "reason": "no transcript"}
    if len(cutoff) < 2:  # at most max_lines entries
        return {"ok": True, "key": key, "compacted": False, "kept": live.count()}
    now = now_ms()
    archived = archive_transcript(session.session_id, "bak", now, before_seq=cutoff[0])
    # ANIMA deletes the counters: they no longer describe the context (a run sets them again).
    session.input_tokens = session.output_tokens = session.total_tokens = 0
    session.total_tokens_fresh = False
    session.updated_at_ms = max(session.updated_at_ms, now)
    session.save(update_fields=["input_tokens", "output_tokens", "total_tokens", "total_tokens_fresh",
                                "updated_at_ms"])
    return {"ok": True, "key": key, "compacted": True, "archived": archived, "kept": max_lines}
