"""The start-up and soak benches still run end to end (one short run each; figures not judged)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_startup_prints_both_starts_against_the_reference() -> None:
    proc = subprocess.run([sys.executable, "bench/startup.py", "--runs", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    out = proc.stdout
    assert "| reference: paho + pyserial + decode, publish |" in out
    for kind in ("fresh", "restarted"):
        assert f"{kind}: median" in out and ("goal <= 1 s: PASS" in out or "goal <= 1 s: FAIL" in out)


@pytest.mark.slow
def test_bench_soak_samples_the_daemon_and_prints_its_verdicts() -> None:
    proc = subprocess.run([sys.executable, "bench/soak.py", "--minutes", "0.3", "--warmup", "5", "--sample-s", "3",
                           "--speed", "5"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    out = proc.stdout
    for goal in ("goal <= 1 %:", "goal <= 60 MB:", "for this length:"):
        line = next(line for line in out.splitlines() if goal in line)
        assert line.endswith(("PASS", "FAIL")), line
    assert "infusion" in out and "vitals" in out  # the subscriber saw the bed's readings
    assert "error lines" not in out, out
