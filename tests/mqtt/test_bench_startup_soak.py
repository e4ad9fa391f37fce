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


@pytest.mark.slow
def test_bench_store_prunes_as_the_daemon_does_judges_the_file_and_leaves_nothing_behind(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "bench/bench_store.py", "--hours", "2", "--retention-h", "0.5",
                           "--samples", "20", "--dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr[-3000:]
    out = proc.stdout
    removed = next(line for line in out.splitlines() if line.startswith("retention every 10 min"))
    assert int(removed.split(": ")[1].split()[0]) > 0, removed  # 1.5 h of the 2 h pruned during the fill
    for goal in ("(goal <= 5x):", "(goal <= 10 ms):", "(goal <= 100 MB for 100 h):"):
        line = next(line for line in out.splitlines() if goal in line)
        assert "PASS" in line or "FAIL" in line, line
    assert "raw sqlite3" in out and out.rstrip().endswith(("overall: PASS", "overall: FAIL"))
    assert list(tmp_path.iterdir()) == []  # its temporary database is gone
