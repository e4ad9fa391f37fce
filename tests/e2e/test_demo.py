"""``monitord demo`` as a user runs it: simulators, daemon and a headless follower, then a clean exit."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
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


def _read_until(proc: subprocess.Popen[str], done: Callable[[list[str]], bool], timeout_s: float) -> list[str]:
    """The demo's output lines until ``done(lines)`` or ``timeout_s`` (then fail with what was printed)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    end = time.monotonic() + timeout_s
    while not done(seen):
        left = end - time.monotonic()
        try:
            line = lines.get(timeout=max(0.0, left))
        except queue.Empty:
            raise AssertionError(f"timed out after {timeout_s:g} s; the demo printed:\n" + "\n".join(seen)) from None
        if line is None:
            raise AssertionError(f"the demo exited (code {proc.wait()}); it printed:\n" + "\n".join(seen))
        seen.append(line)
    return seen


def test_demo_with_the_intellivue_monitor_brings_its_vitals_to_the_daemon() -> None:
    """``--monitor intellivue``: the simulator speaks Data Export, the daemon is configured for it
    and its readings carry the monitor's values. The demo is stopped (SIGTERM, as a user's kill)
    once they are there; every wait ends on what the demo prints."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitord.cli", "demo", "--monitor", "intellivue", "--no-dashboard", "--no-mqtt",
         "--duration", "600"],  # a backstop only: the test stops it
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        def vitals_shown(lines: list[str]) -> bool:
            return any(re.search(r"READINGS HR \d+ SpO2 \d+ RR \d+ EtCO2 \d+ NIBP \d+/\d+", x) for x in lines)

        out = _read_until(proc, vitals_shown, timeout_s=120)
        text = "\n".join(out)
        workdir = re.search(r"files in (\S+)", text)
        assert workdir, text
        config = tomllib.loads((Path(workdir.group(1)) / "monitord.toml").read_text())
        assert config["devices"]["monitor"]["driver"] == "intellivue", config["devices"]
        assert "monitor (intellivue)" in text and "LINK monitor connected" in text, text
        readings = next(x for x in out if "READINGS HR" in x and vitals_shown([x]))
        # the demo scenario's starting values (HR 72 +-3 noise, SpO2 98, NIBP 122/76) crossed the wire
        hr = int(re.search(r"HR (\d+)", readings).group(1))  # type: ignore[union-attr]
        assert 66 <= hr <= 78 and "NIBP 122/76" in readings, readings
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
    assert _processes_mentioning(workdir.group(1)) == []
    assert not Path(workdir.group(1)).exists()
