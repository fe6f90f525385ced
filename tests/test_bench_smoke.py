"""`manage.py bench --quick --json` runs end to end and reports the three ratios, the chat delta
fan-out and the chat.history page latency. No timing assertions: the numbers depend on the
machine; only their presence and sign are checked."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent


def positive_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_quick_bench_reports_ratios_fanout_and_history() -> None:
    done = subprocess.run([sys.executable, "manage.py", "bench", "--quick", "--json"], cwd=BASE_DIR,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    for name in ("health_sequential_cpu_per_call", "health_concurrent_cpu_per_call", "handshakes_per_s"):
        value = report["ratios"][name]
        assert positive_number(value), (name, value)
    for server in ("gateway", "baseline"):
        for measure in ("health_sequential", "health_concurrent", "handshakes"):
            assert report["results"][server][measure]["done"] > 0, (server, measure)

    fanout = report["fanout"]
    assert fanout["clients"] == 100
    for key in ("deltas_delivered", "deltas_per_s", "deltas_per_s_per_client", "delta_bytes_per_s",
                "all_bytes_per_s", "window_s", "server_cpu_s"):
        assert positive_number(fanout[key]), (key, fanout[key])
    assert isinstance(fanout["completed_lag_ms"], (int, float)) and fanout["completed_lag_ms"] >= 0
    assert fanout["echo"]["source"] in ("config.set", "gateway defaults")
    assert fanout["final_text_complete"] is True

    history = report["history"]
    for label, entries in (("large", 10_000), ("small", 50)):
        measure = history[label]
        assert measure["session_entries"] == entries
        assert measure["done"] > 0 and measure["messages"] == 50
        for key in ("p50_ms", "p99_ms", "max_ms", "server_cpu_us_per_op"):
            assert positive_number(measure[key]), (label, key, measure[key])
        assert isinstance(measure["query_plan"], list) and measure["query_plan"]
        assert isinstance(measure["index_backed"], bool)
    assert positive_number(history["p50_ratio_large_vs_small"])
