"""Cron exactly once across gateway processes (README D8, D11; chat-sessions-cron.md §5.8): three
processes on one PostgreSQL database run 200 jobs that fall due in the same second, each exactly
once (counted in the run log table); and a job whose process is killed mid-run is finished as
`interrupted` by a survivor once the lease lapses, and not run again for that slot.

Needs PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379. Without them the tests are
skipped, except in CI (CI=true), where both services exist and a skip would hide a failure."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from gateway.client import GatewayClient
from tests.multiproc_util import Cluster, running_cluster

pytestmark = pytest.mark.multiprocess

ADMIN = ["operator.admin", "operator.read", "operator.write"]
JOBS = 200
LEASE_MS = 3000  # short, so that a dead process's claim lapses quickly


class CronCluster(Cluster):
    def env(self, state_dir: Path) -> dict[str, str]:
        return {**super().env(state_dir), "ANIMA_CRON_LEASE_MS": str(LEASE_MS)}


@pytest.fixture
def cron_cluster(request: pytest.FixtureRequest) -> Iterator[CronCluster]:
    """Gateways A, B and C on a fresh database and Redis prefix; all removed afterwards."""
    yield from running_cluster(request, CronCluster(), ("A", "B", "C"), ready_timeout=90)


def sql(cluster: Cluster, query: str, *args: Any) -> list[tuple]:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{cluster.db_name}") as conn:
        return conn.execute(query, args).fetchall()


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def connect_all(cluster: Cluster) -> list[GatewayClient]:
    return [await GatewayClient.connect(gw.url, token=cluster.token, scopes=ADMIN) for gw in cluster.gateways]


async def test_200_jobs_due_in_the_same_second_each_run_exactly_once(cron_cluster: CronCluster) -> None:
    clients = await connect_all(cron_cluster)
    try:
        due_ms = (int(time.time()) + 20) * 1000  # one whole second, after all jobs are added
        params = [{"name": f"mp-{i}", "schedule": {"kind": "at", "at": iso(due_ms + (i * 997) % 1000)},
                   "sessionTarget": "main", "wakeMode": "next-heartbeat",
                   "payload": {"kind": "systemEvent", "text": f"job {i}"}} for i in range(JOBS)]
        jobs = await asyncio.gather(*(clients[i % 3].call("cron.add", p, timeout=60) for i, p in enumerate(params)))
        ids = {job["id"] for job in jobs}
        assert len(ids) == JOBS and time.time() * 1000 < due_ms, "adding took too long for the test's premise"

        deadline = time.monotonic() + (due_ms / 1000 - time.time()) + 90
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            counts = dict(sql(cron_cluster, "SELECT job_id::text, count(*) FROM cron_cronrun GROUP BY job_id"))
            if len(counts) >= JOBS:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # a double run would show up now
        counts = dict(sql(cron_cluster, "SELECT job_id::text, count(*) FROM cron_cronrun GROUP BY job_id"))
        assert set(counts) == ids, f"{len(set(ids) - set(counts))} jobs never ran"
        doubled = {job_id: n for job_id, n in counts.items() if n != 1}
        assert doubled == {}, f"jobs run more than once: {doubled}"
        statuses = Counter(s for (s,) in sql(cron_cluster, "SELECT status FROM cron_cronrun"))
        assert statuses == {"ok": JOBS}, statuses
        assert sql(cron_cluster, "SELECT count(*) FROM cron_cronjob") == [(0,)], "one-shots are deleted after an ok run"
        assert sql(cron_cluster, "SELECT count(*) FROM gateway_systemevent") == [(JOBS,)]
        earliest = sql(cron_cluster, "SELECT min(run_at_ms) FROM cron_cronrun")[0][0]
        assert earliest >= due_ms, "a job ran before its time"
        owners = Counter(o.rsplit(":", 1)[0] for (o,) in sql(cron_cluster, "SELECT owner FROM cron_cronrun"))
        print(f"\nruns per process: {dict(owners)}")
    finally:
        for client in clients:
            await client.close()


async def test_job_of_a_killed_process_is_interrupted_once_not_rerun(cron_cluster: CronCluster) -> None:
    a, b, c = cron_cluster.gateways
    clients = await connect_all(cron_cluster)
    try:
        job = await clients[1].call("cron.add", {
            "name": "long turn", "schedule": {"kind": "every", "everyMs": 3_600_000},
            "payload": {"kind": "agentTurn", "message": "slow " * 4000}})  # the echo backend streams for ~25 s
        running = asyncio.ensure_future(clients[0].call("cron.run", {"id": job["id"]}, timeout=120))
        await clients[2].next_event("cron", timeout=20)  # added
        deadline = time.monotonic() + 20
        while not sql(cron_cluster, "SELECT 1 FROM cron_cronjob WHERE id = %s AND running_at_ms IS NOT NULL",
                      job["id"]):
            assert time.monotonic() < deadline, "the forced run never started"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
        assert a.proc is not None
        a.proc.kill()
        a.proc.wait(timeout=10)
        running.cancel()

        deadline = time.monotonic() + LEASE_MS / 1000 + 70  # lease lapse + one scheduler check (60 s cap)
        while not sql(cron_cluster, "SELECT 1 FROM cron_cronrun WHERE job_id = %s", job["id"]):
            assert time.monotonic() < deadline, "the dead process's run was never reaped"
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)
        assert sql(cron_cluster, "SELECT status, error FROM cron_cronrun WHERE job_id = %s", job["id"]) == [
            ("error", "interrupted")]
        row = sql(cron_cluster, "SELECT running_at_ms, last_status, consecutive_errors, next_run_at_ms, enabled "
                                "FROM cron_cronjob WHERE id = %s", job["id"])[0]
        assert row[:3] == (None, "error", 1) and row[4] is True, row
        assert row[3] >= int(time.time() * 1000) + 20_000, "the interrupted slot must not run again at once"
    finally:
        for client in clients:
            try:
                await client.close()
            except Exception:
                pass
