"""`manage.py bench --cron`: the scheduler's tick cost with 10,000 enabled jobs, idle and with
100 due, against a baseline measured in the same run: one bare indexed SELECT of the due rows.

Runs in a subprocess (`python -m cron.bench`) on a throw-away SQLite database (or the database
given with --database-url), so the operator's own database is never touched. The clock is the
scheduler's injectable one: jobs are made due by moving their next run, not by waiting."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def run(base_dir: Path, *, jobs: int = 10_000, due: int = 100, repeat: int = 15, database_url: str = "",
        log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Measure in a fresh process and return its JSON report."""
    with tempfile.TemporaryDirectory(prefix="anima-cron-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update({"ANIMA_STATE_DIR": tmp, "DJANGO_SETTINGS_MODULE": "anima_site.settings",
                    "DATABASE_URL": database_url or f"sqlite:///{tmp}/bench.sqlite3"})
        log(f"cron: {jobs} jobs, {due} due, {repeat} repeats on {env['DATABASE_URL'].split(':', 1)[0]}")
        done = subprocess.run([sys.executable, "-m", "cron.bench", "--jobs", str(jobs), "--due", str(due),
                               "--repeat", str(repeat)], cwd=base_dir, env=env, capture_output=True, text=True,
                              timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"cron bench failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def format_report(report: dict[str, Any]) -> str:
    return "\n".join([
        f"cron scheduler tick, {report['jobs']} enabled jobs ({report['database']}):",
        f"  bare indexed SELECT of due rows   {report['select_due_ms']:9.3f} ms   (baseline)",
        f"  idle tick (nothing due)           {report['idle_tick_ms']:9.3f} ms   "
        f"x{report['ratios']['idle_tick_vs_select']:.1f} the baseline",
        f"  tick with {report['due']} due jobs            {report['due_tick_ms']:9.1f} ms   "
        f"{report['due_tick_per_job_ms']:.2f} ms per job run, "
        f"x{report['ratios']['due_tick_per_job_vs_select']:.1f} the baseline per job",
    ])


# --- the measuring process --------------------------------------------------------------------------

class FixedClock:
    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


def _median_ms(fn: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def _measure(jobs: int, due: int, repeat: int) -> dict[str, Any]:
    import asyncio

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from cron.models import CronJob
    from cron.scheduler import CronScheduler

    call_command("migrate", verbosity=0, interactive=False)
    now = int(time.time() * 1000)
    hour = 3_600_000
    CronJob.objects.bulk_create([
        CronJob(name=f"bench {i}", schedule={"kind": "every", "everyMs": hour}, schedule_kind="every",
                session_target="main", wake_mode="next-heartbeat", payload={"kind": "systemEvent", "text": f"b{i}"},
                next_run_at_ms=now + 60_000 + (i * 7919) % hour, created_at_ms=now, updated_at_ms=now)
        for i in range(jobs)], batch_size=1000)

    table = CronJob._meta.db_table
    sql = (f"SELECT id FROM {table} WHERE enabled AND running_at_ms IS NULL AND next_run_at_ms <= %s "
           f"ORDER BY next_run_at_ms LIMIT 32")

    def bare_select() -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, [now])
            cursor.fetchall()

    clock = FixedClock(now)
    scheduler = CronScheduler(clock=clock, owner="bench")
    loop = asyncio.new_event_loop()

    def tick() -> None:
        loop.run_until_complete(scheduler.tick())

    tick()  # warm-up (config cache, connections)
    select_ms = _median_ms(bare_select, repeat * 10)
    idle_ms = _median_ms(tick, repeat)

    due_samples = []
    for round_ in range(max(3, repeat // 5)):
        clock.now = now + round_ * 1000
        ids = list(CronJob.objects.order_by("id").values_list("id", flat=True)[round_ * due:(round_ + 1) * due])
        CronJob.objects.filter(id__in=ids).update(next_run_at_ms=clock.now - 1)
        start = time.perf_counter()
        tick()
        due_samples.append((time.perf_counter() - start) * 1000)
    due_ms = statistics.median(due_samples)
    loop.close()
    return {"jobs": jobs, "due": due, "database": connection.vendor, "select_due_ms": round(select_ms, 4),
            "idle_tick_ms": round(idle_ms, 4), "due_tick_ms": round(due_ms, 2),
            "due_tick_per_job_ms": round(due_ms / due, 3),
            "ratios": {"idle_tick_vs_select": round(idle_ms / select_ms, 2),
                       "due_tick_per_job_vs_select": round(due_ms / due / select_ms, 2)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(json.dumps(_measure(args.jobs, args.due, args.repeat)))


if __name__ == "__main__":
    main()
