"""Health summary (protocol.md §5.1): cached in the Django cache, refreshed single-flight,
every completed refresh bumps stateVersion.health and broadcasts health.changed."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.core.cache import cache

from .protocol.events import READERS, emit, now_ms
from .protocol.presence import HEALTH
from .queries import DEFAULT_AGENT_ID, SESSIONS_PATH, session_overview

if TYPE_CHECKING:
    from .runtime import GatewayRuntime

CACHE_KEY = "health:summary"
HEARTBEATS_KEY = "heartbeats:settings"  # set-heartbeats' process-wide switch, shared by every process
FRESH_MS = 60_000
MIN_INTERVAL_S = 1.0


def heartbeat_settings() -> dict[str, Any]:
    """The heartbeat switch and interval that `status`, `health` and `set-heartbeats` all report."""
    return cache.get(HEARTBEATS_KEY) or {"enabled": True, "every": "30m", "everyMs": 30 * 60_000}


def build_summary() -> dict[str, Any]:
    started = time.monotonic()
    sessions = session_overview()
    beats = heartbeat_settings()
    summary = {
        "ok": True, "ts": now_ms(), "durationMs": 0, "channels": {}, "channelOrder": [], "channelLabels": {},
        "heartbeatSeconds": (beats["everyMs"] or 0) // 1000 if beats["enabled"] else 0,
        "defaultAgentId": DEFAULT_AGENT_ID,
        "agents": [{"agentId": DEFAULT_AGENT_ID, "isDefault": True,
                    "heartbeat": {"enabled": beats["enabled"], "every": beats["every"], "everyMs": beats["everyMs"],
                                  "prompt": "", "target": "main", "ackMaxChars": 300},
                    "sessions": {"path": SESSIONS_PATH, **sessions}}],
        "sessions": {"path": SESSIONS_PATH, **sessions},
    }
    summary["durationMs"] = int((time.monotonic() - started) * 1000)
    return summary


class HealthMonitor:
    def __init__(self, runtime: GatewayRuntime):
        self.runtime = runtime
        self._inflight: asyncio.Future | None = None
        self._scheduled: asyncio.TimerHandle | None = None
        self._last_started = 0.0

    def cached(self) -> dict[str, Any] | None:
        return cache.get(CACHE_KEY)

    async def refresh(self) -> dict[str, Any]:
        """Single-flight: concurrent callers share one run."""
        if self._inflight is not None:
            return await asyncio.shield(self._inflight)
        self._inflight = asyncio.get_running_loop().create_future()
        self._last_started = time.monotonic()
        try:
            summary = await sync_to_async(build_summary)()
            cache.set(CACHE_KEY, summary, timeout=None)
            self.runtime.versions.bump(HEALTH)
            await emit("health.changed", summary, READERS, state_version=self.runtime.versions.current(),
                       droppable=False)
            self._inflight.set_result(summary)
            return summary
        except BaseException as exc:
            self._inflight.set_exception(exc)
            self._inflight.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            self._inflight = None

    def refresh_soon(self) -> None:
        """A background refresh that starts after this call. Calls in a burst share one refresh,
        started at most once per MIN_INTERVAL_S: each refresh costs a database read and a
        broadcast to every reader, so one per call would make `health` the costliest method."""
        if self._scheduled is not None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last_started + MIN_INTERVAL_S - time.monotonic())

        def start() -> None:
            self._scheduled = None
            loop.create_task(self.refresh())

        self._scheduled = loop.call_later(delay, start)

    async def get(self, probe: bool) -> dict[str, Any]:
        cached = self.cached()
        if not probe and cached and now_ms() - cached.get("ts", 0) < FRESH_MS:
            self.refresh_soon()
            return cached
        return await self.refresh()
