"""The process's copy of the effective config (README D13: a write applies at once on every
process). The writing process stores the new snapshot when its transaction commits; the others
reload when the `gateway.config_changed` group message reaches their hub. A process without a
hub (a management command, a test) re-checks the stored hash at most every second.

Readers are synchronous and may run on the event loop thread, where the ORM is not allowed:
there a stale copy is served while a refresh runs in a worker thread, and only the very first
load waits for the database (in a worker thread too)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from django.db import close_old_connections

if TYPE_CHECKING:
    from gateway.runtime import GatewayRuntime

    from .services import Snapshot

log = logging.getLogger("gateway.config")

CHECK_EVERY_S = 1.0           # without a hub: how stale a copy may get
CHECK_EVERY_LISTENING_S = 10.0  # with a hub: a safety net should a group message be lost


class ConfigCache:
    """One per process (the module's CACHE): the synchronous readers have no context to carry it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None  # the last valid one
        self._checked_at = 0.0
        self._listening = False
        self._refreshing = False
        self._again = False
        self._rejected: str | None = None  # hash of a stored document that failed to load
        self._executor: ThreadPoolExecutor | None = None

    # --- reading ----------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The effective config (unredacted, with defaults); never raises for a bad document."""
        return self._current().config

    def _current(self) -> Snapshot:
        snapshot = self._snapshot
        max_age = CHECK_EVERY_LISTENING_S if self._listening else CHECK_EVERY_S
        fresh = snapshot is not None and time.monotonic() - self._checked_at < max_age
        if fresh:
            return snapshot  # type: ignore[return-value]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            return self._check()
        if snapshot is None:  # the first read on the event loop: wait for it, off the loop thread
            return self._pool().submit(self._check_in_thread).result(timeout=30)
        self.refresh_soon()
        return snapshot

    def _check(self) -> Snapshot:
        """Reload when the stored hash differs from ours (synchronous, not on the event loop)."""
        from . import services

        current = self._snapshot
        stored = services.stored_hash()
        if current is not None and (stored == self._rejected or stored == (current.hash if current.exists else None)):
            self._checked_at = time.monotonic()
            return current
        self._keep(services.load(), newer_only=True)
        return self._snapshot  # type: ignore[return-value]

    def _check_in_thread(self) -> Snapshot:
        try:
            return self._check()
        finally:
            close_old_connections()

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anima-config")
            return self._executor

    def refresh_soon(self) -> None:
        """Re-check in a worker thread without blocking the caller. A request that arrives while
        one runs is remembered: that one may have read the database before the change committed."""
        with self._lock:
            if self._refreshing:
                self._again = True
                return
            self._refreshing, self._again = True, False

        def done(_: Any) -> None:
            with self._lock:
                self._refreshing = False
                again = self._again
            if again:
                self.refresh_soon()

        try:
            self._pool().submit(self._check_in_thread).add_done_callback(done)
        except RuntimeError:  # the pool is shut down (interpreter exit)
            with self._lock:
                self._refreshing = False

    # --- writing ----------------------------------------------------------------------------------

    def store(self, snapshot: Snapshot) -> None:
        """The snapshot this process just committed: authoritative as of now."""
        self._keep(snapshot, newer_only=False)

    def _keep(self, snapshot: Snapshot, *, newer_only: bool) -> None:
        with self._lock:
            current = self._snapshot
            self._checked_at = time.monotonic()
            if not snapshot.valid:
                if self._rejected != snapshot.hash:
                    log.warning("config not applied (invalid): %s",
                                "; ".join(f"{i['path'] or 'root'}: {i['message']}" for i in snapshot.issues))
                self._rejected = snapshot.hash
                if current is not None:
                    return  # keep running on the last valid config
                from .services import build_snapshot

                snapshot = build_snapshot(None)  # defaults and environment only
            else:
                self._rejected = None
            if newer_only and current is not None and snapshot.exists and snapshot.revision < current.revision:
                return  # a read that started before a newer commit finished after it
            self._snapshot = snapshot

    def clear(self) -> None:
        with self._lock:
            self._snapshot = None
            self._checked_at = 0.0
            self._rejected = None

    # --- the hub ------------------------------------------------------------------------------------

    def install(self, runtime: GatewayRuntime) -> None:
        """Reload on `gateway.config_changed` from any process (called when the runtime starts)."""
        from .services import CHANGED

        def on_changed(message: dict) -> None:
            current = self._snapshot
            if current is None or current.hash != message.get("hash"):
                self.refresh_soon()

        self.clear()  # a new runtime (tests build several per process) starts from the database
        runtime.hub.on(CHANGED, on_changed)
        self._listening = True
        self.refresh_soon()  # load now rather than on the first read


CACHE = ConfigCache()
