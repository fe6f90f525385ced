"""The run manager of one gateway process.

A run is a row first (queued, see services.create_run); whichever process claims it runs it and
renews a lease. One run per session at a time, FIFO. An abort from any process reaches the owner
through the channel layer; the owner stops the backend, keeps the partial reply and announces it.
When a run ends, a `gateway.run_done` message wakes waiters (agent.wait, the agent method's final
frame) on every process. Events go out in order from the owner, which numbers them (`seq`)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.conf import settings

from gateway.chat.transcripts import find_session, history_messages
from gateway.models import Run
from gateway.protocol.events import READERS, emit, now_ms

from . import services
from .backends import BackendError, backend_for, split_model
from .backends.base import RunRequest, RunResult

if TYPE_CHECKING:
    from gateway.runtime import GatewayRuntime

log = logging.getLogger("gateway.runs")

ABORT = "gateway.run_abort"
DONE = "gateway.run_done"
DELTA_INTERVAL_S = 0.040  # at most one chat delta per run per 40 ms (chat-sessions-cron.md §2.6)
DEFAULT_TIMEOUT_MS = 600_000
HISTORY_TURNS = 200


@dataclass
class ActiveRun:
    run: Run
    task: asyncio.Task | None = None
    started: bool = False
    seq: int = 0
    text: str = ""
    sent: str = ""
    last_delta: float = 0.0
    abort_reason: str | None = None
    settling: bool = False  # the outcome is decided and being recorded: no abort may cancel that
    started_at: int = field(default_factory=now_ms)


def chat_message(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}], "timestamp": now_ms()}


class RunManager:
    def __init__(self, runtime: GatewayRuntime):
        self.runtime = runtime
        self.active: dict[str, ActiveRun] = {}  # "<kind>:<run_id>" -> run executing here
        self.waiters: dict[str, set[asyncio.Future]] = {}
        runtime.hub.on(ABORT, self.on_abort)
        runtime.hub.on(DONE, self.on_done)

    @property
    def owner(self) -> str:
        return self.runtime.hub.channel_name or ""

    # --- submitting and claiming -------------------------------------------------------------------

    async def submit(self, kind: str, run_id: str, session_key: str, message: str,
                     params: dict[str, Any]) -> tuple[Run, bool]:
        run, created = await sync_to_async(services.create_run)(kind, run_id, session_key, message, params)
        if created:
            await self.pump(session_key)
        return run, created

    async def pump(self, session_key: str) -> None:
        """Start the session's next queued run here if none of its runs is running anywhere."""
        run = await sync_to_async(services.claim_next)(session_key, self.owner)
        if run is None:
            return
        active = ActiveRun(run)
        self.active[f"{run.kind}:{run.run_id}"] = active
        active.task = asyncio.get_running_loop().create_task(self.execute(active), name=f"run-{run.run_id}")

    # --- executing -------------------------------------------------------------------------------------

    async def execute(self, a: ActiveRun) -> None:
        a.started = True  # before any await: an abort from now on cancels the task
        run = a.run
        status, stop_reason, error = Run.Status.OK, "stop", ""
        result: RunResult | None = None
        provider = model = ""
        try:
            await self.announce_start(a)
            if a.abort_reason:
                raise asyncio.CancelledError
            request = await sync_to_async(self.build_request)(run)
            provider, model = request.provider, request.model
            backend = backend_for(provider)
            async with asyncio.timeout(request.timeout_ms / 1000 if request.timeout_ms else None):
                result = await backend.run(request, lambda stream, data: self.on_backend_event(a, stream, data))
            a.text = result.text or a.text
        except asyncio.CancelledError:
            status, stop_reason = Run.Status.ABORTED, a.abort_reason or "rpc"
            if a.abort_reason == "shutdown":
                status, stop_reason, error = Run.Status.ERROR, "error", "the gateway stopped during the run"
        except TimeoutError:
            status, stop_reason, error = Run.Status.TIMEOUT, "timeout", "run timed out"
        except BackendError as exc:
            status, stop_reason, error = Run.Status.ERROR, "error", str(exc)
        except Exception:
            log.exception("run %s failed", run.run_id)
            status, stop_reason, error = Run.Status.ERROR, "error", "internal error (see the gateway log)"
        await self.settle(a, status, stop_reason, error, result, provider, model)

    def build_request(self, run: Run) -> RunRequest:
        from gateway.chat.keys import agent_of

        session = find_session(run.session_key)
        params = run.params or {}
        model_name = params.get("model") or (session.model_override if session else "") or default_model()
        provider, model = split_model(model_name)
        history = history_messages(session, HISTORY_TURNS) if session else []
        if history and history[-1].get("role") == "user":
            history = history[:-1]  # this run's own message is the prompt
        timeout_ms = params.get("timeoutMs")
        if timeout_ms is None:
            timeout_ms = int(config_value("agents.defaults.timeoutSeconds", DEFAULT_TIMEOUT_MS // 1000)) * 1000
        return RunRequest(run_id=run.run_id, session_key=run.session_key, session_id=str(run.session_id or ""),
                          agent_id=agent_of(run.session_key), provider=provider, model=model,
                          prompt_text=run.message, history=history, thinking=params.get("thinking"),
                          extra_system_prompt=params.get("extraSystemPrompt"), timeout_ms=int(timeout_ms))

    async def agent_event(self, a: ActiveRun, stream: str, data: dict[str, Any]) -> int:
        a.seq += 1
        await emit("agent", {"runId": a.run.run_id, "seq": a.seq, "stream": stream, "ts": now_ms(),
                             "sessionKey": a.run.session_key, "data": data}, READERS)
        return a.seq

    def chat_payload(self, a: ActiveRun, seq: int, state: str, **extra: Any) -> dict[str, Any]:
        return {"runId": a.run.run_id, "sessionKey": a.run.session_key, "seq": seq, "state": state, **extra}

    async def announce_start(self, a: ActiveRun) -> None:
        seq = await self.agent_event(a, "lifecycle", {"phase": "start", "startedAt": a.started_at})
        await emit("chat.run.started", self.chat_payload(a, seq, "started", startedAt=a.started_at, ts=now_ms()),
                   READERS)

    async def on_backend_event(self, a: ActiveRun, stream: str, data: dict[str, Any]) -> None:
        if stream != "assistant":
            await self.agent_event(a, stream, data)
            return
        a.text += data.get("delta", "")
        seq = await self.agent_event(a, "assistant", {"text": a.text, "delta": data.get("delta", "")})
        now = time.monotonic()
        if now - a.last_delta >= DELTA_INTERVAL_S and a.text != "NO_REPLY":
            a.last_delta = now
            await emit("chat.delta", self.chat_payload(a, seq, "delta", message=chat_message(a.text),
                                                       delta=a.text[len(a.sent):]), READERS)
            a.sent = a.text

    async def settle(self, a: ActiveRun, status: str, stop_reason: str, error: str, result: RunResult | None,
                     provider: str, model: str) -> None:
        """Record, then announce: once the final event is out the run is no longer active (D14)."""
        a.settling = True  # before any await: a late abort must not cancel the recording half-way
        run = a.run
        usage = result.usage.as_wire() if result else None
        outcome = None
        if run.kind == "agent" and status == Run.Status.OK:
            outcome = {"payloads": [{"text": a.text}] if a.text else [],
                       "meta": {"durationMs": now_ms() - a.started_at,
                                "agentMeta": {"sessionId": str(run.session_id or ""), "provider": provider,
                                              "model": model, "usage": usage}}}
        try:
            await sync_to_async(services.finish_run)(
                run, status, text=a.text, usage=usage, stop_reason=stop_reason, error=error,
                provider=result.provider if result else provider, model=result.model if result else model,
                result=outcome)
        except Exception:
            log.exception("recording the end of run %s failed", run.run_id)
        ended = now_ms()
        if status == Run.Status.OK:
            seq = await self.agent_event(a, "lifecycle", {"phase": "end", "startedAt": a.started_at,
                                                          "endedAt": ended, "aborted": False, "status": "ok"})
            final: dict[str, Any] = {"usage": usage, "stopReason": stop_reason}
            if a.text and a.text != "NO_REPLY":
                final["message"] = chat_message(a.text)
            await emit("chat.run.completed", self.chat_payload(a, seq, "final", **final), READERS)
        else:
            phase = {"phase": "error", "startedAt": a.started_at, "endedAt": ended, "error": error} if error else \
                {"phase": "end", "startedAt": a.started_at, "endedAt": ended, "aborted": True}
            seq = await self.agent_event(a, "lifecycle", phase)
            failed: dict[str, Any] = {"stopReason": stop_reason}
            if error:
                failed["errorMessage"] = error
            if a.text:
                failed["message"] = chat_message(a.text)
            state = {"aborted": "aborted", "timeout": "timeout"}.get(status, "error")
            await emit("chat.run.failed", self.chat_payload(a, seq, state, **failed), READERS)
        self.active.pop(f"{run.kind}:{run.run_id}", None)
        await self.runtime.hub.publish({"type": DONE, "runId": run.run_id, "kind": run.kind})
        await self.pump(run.session_key)

    # --- aborting ----------------------------------------------------------------------------------------

    async def abort(self, session_key: str, run_id: str | None, stop_reason: str) -> list[str]:
        """Abort the session's active runs (or one of them) wherever they run; returns their ids."""
        runs = await sync_to_async(services.active_runs)(session_key)
        aborted = []
        for run in runs:
            if run_id is not None and run.run_id != run_id:
                continue
            if run.status == Run.Status.QUEUED:
                if await sync_to_async(services.abort_queued)(run, stop_reason):
                    aborted.append(run.run_id)
                    await emit("chat.run.failed", {"runId": run.run_id, "sessionKey": run.session_key, "seq": 0,
                                                   "state": "aborted", "stopReason": stop_reason}, READERS)
                    await self.runtime.hub.publish({"type": DONE, "runId": run.run_id, "kind": run.kind})
                continue
            aborted.append(run.run_id)
            await self.runtime.hub.publish({"type": ABORT, "runId": run.run_id, "kind": run.kind,
                                            "stopReason": stop_reason})
        return aborted

    def on_abort(self, message: dict) -> None:
        active = self.active.get(f"{message.get('kind')}:{message.get('runId')}")
        if active is None or active.abort_reason or active.settling:
            return
        active.abort_reason = message.get("stopReason") or "rpc"
        if active.started and active.task is not None:
            active.task.cancel()

    # --- waiting -------------------------------------------------------------------------------------------

    def on_done(self, message: dict) -> None:
        for future in self.waiters.pop(message.get("runId", ""), set()):
            if not future.done():
                future.set_result(None)

    async def wait_done(self, run_id: str, timeout_s: float, kind: str | None = None) -> Run | None:
        """The run once it is terminal, or None when the wait ends first (or the run is unknown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            future = loop.create_future()
            self.waiters.setdefault(run_id, set()).add(future)  # before reading: no missed wake-up
            try:
                run = await sync_to_async(services.find_run)(run_id, kind)
                if run is not None and run.status in services.TERMINAL:
                    return run
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                try:
                    await asyncio.wait_for(asyncio.shield(future), remaining)
                except asyncio.TimeoutError:
                    pass
            finally:
                waiters = self.waiters.get(run_id)
                if waiters is not None:
                    waiters.discard(future)
                    if not waiters:
                        self.waiters.pop(run_id, None)

    # --- maintenance ---------------------------------------------------------------------------------------

    async def maintain(self) -> None:
        """Renew our leases; fail runs whose owner died; start queued runs nobody is running."""
        await sync_to_async(services.renew_leases)(self.owner)
        for run in await sync_to_async(services.reap_orphans)():
            await emit("chat.run.failed", {"runId": run.run_id, "sessionKey": run.session_key, "seq": 0,
                                           "state": "error", "stopReason": "error",
                                           "errorMessage": "the gateway process running this run stopped"},
                       READERS)
            await self.runtime.hub.publish({"type": DONE, "runId": run.run_id, "kind": run.kind})
        for session_key in await sync_to_async(services.sessions_waiting)():
            await self.pump(session_key)

    async def stop(self) -> None:
        for active in list(self.active.values()):
            active.abort_reason = "shutdown"
            if active.task is not None and not active.settling:
                active.task.cancel()
        tasks = [a.task for a in self.active.values() if a.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=3)


def config_value(path: str, default: Any) -> Any:
    try:
        from gateway.config import config_value as read
    except ImportError:
        return default
    return read(path, default)


def default_model() -> str:
    from .backends import DEFAULT_MODEL

    return config_value("agents.defaults.model", None) or settings.ANIMA_DEFAULT_MODEL or DEFAULT_MODEL
