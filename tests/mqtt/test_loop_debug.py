"""``monitord run --loop-debug``: the daemon runs under asyncio's debug mode, which raises on any
call into the event loop from another thread (the store's writer and paho's thread both hand
work over) and logs every callback that holds the loop over 10 ms. How many do is a benchmark's
business (``bench/soak.py --loop-debug``), not judged here: wall-clock figures are not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.mqtt.broker import Mosquitto
from tests.mqtt.support import Subscriber

REPO = Path(__file__).resolve().parents[2]


async def test_the_daemon_runs_and_publishes_in_loop_debug_mode(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text(f"""
[bed]
id = "bed-dbg"
care_area = "outpatient-infusion"
[store]
state_dir = "{tmp_path / 'state'}"
[mqtt]
host = "127.0.0.1"
port = {broker.port}
topic_root = "monitord/v1"
[dashboard]
socket = "{tmp_path / 'dash.sock'}"
""")
    sub = Subscriber(broker.port, "monitord/v1/bed-dbg/#")
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "monitord.cli", "run", "-c", str(cfg), "--loop-debug"],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        await sub.until(lambda s: any(m.payload and m.payload.get("status") == "online" for m in s.on("/bed-dbg/status"))
                        and s.on("/bed-dbg/state") and s.on("/bed-dbg/alarms"), what="status, state and alarms",
                        timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
        sub.close()
    text = log.read_text(errors="replace")
    assert rc == 0, text[-3000:]
    assert "monitoring bed bed-dbg" in text
    for problem in ("Non-thread-safe", "Traceback", "Exception in callback", "was never awaited", "ERROR"):
        assert problem not in text, text[-3000:]
