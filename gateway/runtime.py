"""The per-process runtime: policy numbers, fan-out hub, presence, shared counters and the
background loops that run from start-up with or without clients (README D11)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable

from asgiref.sync import sync_to_async
from django.conf import settings

from .protocol.events import ALL, READERS, emit
from .protocol.hub import Hub
from .protocol.presence import HEALTH, PRESENCE, PresenceStore, ProcessSlots, StateVersions
from .protocol.ratelimit import AuthRateLimiter, LimiterPolicy

log = logging.getLogger("gateway.runtime")


@dataclass(frozen=True)
class Policy:
    max_payload: int
    max_buffered: int
    tick_interval_ms: int
    handshake_timeout_ms: int

    @classmethod
    def from_settings(cls) -> Policy:
        return cls(settings.ANIMA_MAX_PAYLOAD_BYTES, settings.ANIMA_MAX_BUFFERED_BYTES,
                   settings.ANIMA_TICK_INTERVAL_MS, settings.ANIMA_HANDSHAKE_TIMEOUT_MS)

    def as_hello(self) -> dict[str, int]:
        return {"maxPayload": self.max_payload, "maxBufferedBytes": self.max_buffered,
                "tickIntervalMs": self.tick_interval_ms}


class GatewayRuntime:
    def __init__(self) -> None:
        self.started_at = time.time()
        self.policy = Policy.from_settings()
        self.hub = Hub()
        self.slots = ProcessSlots()
        self.presence = PresenceStore(settings.ANIMA_VERSION, self.slots)
        self.versions = StateVersions()
        self.limiter = AuthRateLimiter(LimiterPolicy(**settings.ANIMA_AUTH_RATE_LIMIT))
        self.health: Any = None  # gateway.health.HealthMonitor, set in start()
        from pairing.approvals import ApprovalWaiters
        from pairing.live import NodeRegistry

        from .runs.manager import RunManager

        self.nodes = NodeRegistry(self)
        self.approvals = ApprovalWaiters(self)
        self.runs = RunManager(self)
        from cron.scheduler import CronScheduler

        self.cron = CronScheduler(self)
        self._started: asyncio.Future | None = None
        self._tasks: list[asyncio.Task] = []
        self.stopping = False

    def limit_payload(self, server_limit: int) -> None:
        """The server caps inbound messages at `server_limit`: advertise no more than that."""
        if 0 < server_limit < self.policy.max_payload:
            log.warning("the server caps WebSocket messages at %d bytes (< ANIMA_MAX_PAYLOAD_BYTES=%d); "
                        "advertising %d. Start daphne as the README shows to lift it.",
                        server_limit, self.policy.max_payload, server_limit)
            self.policy = replace(self.policy, max_payload=server_limit)

    @property
    def uptime_ms(self) -> int:
        return int((time.time() - self.started_at) * 1000)

    async def ensure_started(self) -> None:
        """Start once per process; concurrent callers wait for the same start."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                await self._start()
                self._started.set_result(True)
            except BaseException as exc:
                self._started.set_exception(exc)
                raise
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        from .health import HealthMonitor

        self.versions.ensure()
        self.slots.claim()
        self.presence.refresh()
        self.health = HealthMonitor(self)
        await self.hub.start()
        from .config.live import CACHE

        CACHE.install(self)  # every process applies config writes at once (README D13)
        self._spawn("tick", self.policy.tick_interval_ms / 1000, self._tick)
        self._spawn("maintenance", 30, self._maintenance)
        if not settings.REDIS_URL:  # one process: runs left "running" died with its previous life
            from .runs.services import expire_all_leases

            await sync_to_async(expire_all_leases)()
        self._spawn("runs", 10, self.runs.maintain, initial=True)
        self._spawn("health", settings.ANIMA_HEALTH_REFRESH_MS / 1000, self.health.refresh, initial=True)
        await self.cron.start()
        log.info("gateway runtime started (process slot %d)", self.slots.slot)

    def _spawn(self, name: str, every_s: float, job: Callable[[], Awaitable[Any]], initial: bool = False) -> None:
        async def loop() -> None:
            if not initial:
                await asyncio.sleep(every_s)
            while True:
                try:
                    await job()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("background job %s failed", name)
                await asyncio.sleep(every_s)

        self._tasks.append(asyncio.get_running_loop().create_task(loop(), name=f"anima-{name}"))

    async def _tick(self) -> None:
        self.hub.deliver_local("tick", {"ts": int(time.time() * 1000)}, ALL, droppable=True)

    async def _maintenance(self) -> None:
        self.presence.refresh()
        self.nodes.publish()
        await self.hub.refresh_membership()

    async def presence_changed(self) -> None:
        """Bump the presence counter and broadcast the listing (droppable)."""
        self.versions.bump(PRESENCE)
        await emit("presence.changed", {"presence": self.presence.listing()}, READERS,
                   state_version=self.versions.current())

    async def shutdown(self, reason: str = "ANIMA Gateway stopping") -> None:
        """Tell every local client, close them with 1012, stop the loops."""
        if self.stopping:
            return
        self.stopping = True
        conns = list(self.hub.sockets.values())
        for conn in conns:
            if conn.authed:
                conn.goodbye(reason)
            else:  # still in the handshake: no events yet, only the close
                conn.close_soon(1012, "service restart")
        await asyncio.gather(*(c.drain() for c in conns), return_exceptions=True)
        await self.cron.stop()
        await self.runs.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.hub.stop()


__all__ = ["GatewayRuntime", "Policy", "HEALTH", "PRESENCE"]
