"""``monitord demo`` as a user runs it: simulators, daemon and a headless follower, then a clean exit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append(f"{proc.name}: {cmd}")
    return found


def test_demo_runs_headless_prints_the_course_and_leaves_nothing_behind() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "monitord.cli", "demo", "--no-dashboard", "--no-mqtt", "--duration", "20"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    # the simulator admitted the demo patient and started the infusion through the dashboard link
    assert "SESSION admitted" in out and "SESSION started" in out, out
    # readings crossed the ptys: vitals from the monitor, the running pump and its dose
    readings = [line for line in out.splitlines() if "READINGS" in line]
    assert readings, out
    assert re.search(r"HR \d+", readings[-1]) and "pump running 36.0 mL/h 0.50 mg/kg/h" in readings[-1], readings[-1]
    # nothing left: no process of this demo and no temporary directory
    workdir = re.search(r"files in (\S+)", out)
    assert workdir, out
    assert _processes_mentioning(workdir.group(1)) == []
    assert not Path(workdir.group(1)).exists()
