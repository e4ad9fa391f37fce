"""The latency and CPU bench still runs end to end (a few samples; the figures are not judged here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_latency_runs_both_paths_and_prints_its_verdicts() -> None:
    proc = subprocess.run([sys.executable, "bench/bench_latency.py", "-n", "12", "--interval", "0.1",
                           "--cpu-window", "3", "--cpu-warmup", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    out = proc.stdout
    assert "| reference: pyserial -> decode -> paho | 12 |" in out
    assert "| monitord: driver -> engine -> store -> publisher | 12 |" in out
    assert "goal p99 <= 5x: PASS" in out or "goal p99 <= 5x: FAIL" in out
    assert "goal daemon <= 1 % of a core: PASS" in out or "goal daemon <= 1 % of a core: FAIL" in out
    assert "PROBLEM" not in out
