"""`manage.py bench --cron --quick --json` runs end to end and reports the tick figures and their
ratios against the bare SELECT baseline. No timing assertions: only presence and sign."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def test_cron_bench_reports_idle_and_due_tick_against_the_baseline() -> None:
    done = subprocess.run([sys.executable, "manage.py", "bench", "--cron", "--quick", "--json"], cwd=BASE_DIR,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert (report["jobs"], report["due"]) == (1000, 100), report
    for key in ("select_due_ms", "idle_tick_ms", "due_tick_ms", "due_tick_per_job_ms"):
        assert isinstance(report[key], (int, float)) and math.isfinite(report[key]) and report[key] > 0, key
    assert set(report["ratios"]) == {"idle_tick_vs_select", "due_tick_per_job_vs_select"}
    assert all(value > 0 for value in report["ratios"].values()), report["ratios"]
