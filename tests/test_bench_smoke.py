"""`manage.py bench --quick --json` runs end to end and reports the three ratios. No timing
assertions: the numbers depend on the machine; only their presence and sign are checked."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_bench_reports_the_three_ratios_as_positive_numbers() -> None:
    done = subprocess.run([sys.executable, "manage.py", "bench", "--quick", "--json"], cwd=BASE_DIR,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    for name in ("health_sequential_cpu_per_call", "health_concurrent_cpu_per_call", "handshakes_per_s"):
        value = report["ratios"][name]
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (name, value)
        assert math.isfinite(value) and value > 0, (name, value)
    for server in ("gateway", "baseline"):
        for measure in ("health_sequential", "health_concurrent", "handshakes"):
            assert report["results"][server][measure]["done"] > 0, (server, measure)
