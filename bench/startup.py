"""Start-up: ``monitord run`` -> first reading at an MQTT subscriber, beside a bare reference.

    python bench/startup.py              # 5 runs of each, fresh and restarted, about 1 min
    python bench/startup.py --runs 10 --history-h 24

Each run starts a new process and times, on CLOCK_MONOTONIC, from just before the process is
spawned to the subscriber's arrival stamp of its first reading. A simulated Datex S/5 monitor
(``monitord.simulators.datex_sim``, a new pty for each run) answers the displayed-values request
at once and then every second. The runs alternate between:

1. reference: ``python bench/startup.py --reference PTY PORT TOPIC``: imports paho, pyserial and
   ``monitord.drivers.datex_s5``, connects to the broker, opens the pty, asks for displayed
   values, decodes the first record and publishes it (QoS 1);
2. monitord, fresh: ``monitord run`` on an empty state directory (the database created and
   migrated), to the first message on ``<root>/<bed>/vitals``;
3. monitord, restarted: the same on the state directory of an earlier run; with
   ``--history-h H`` it first holds H hours of a 1 Hz pump and monitor (about 7,200 events an
   hour, written through the store as the daemon would), so the open-time checks see a database
   of that size.

The goal (issue "fast and light"): the first reading published within 1 s of ``monitord run``.
Each monitord path is printed with its median, the ratio to the reference's median and PASS or
FAIL against the goal; the exit status is 1 only if a run failed to produce a reading.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

GOAL_S = 1.0
ROOT = "monitord/v1"
BED = "bed-bench"  # as bench_latency.site_config writes it
REFERENCE_TOPIC = "bench/startup/vitals"
TIMEOUT_S = 30.0


def reference(pty: str, port: int, topic: str) -> None:
    """The bare path: what any program must do before it can publish a monitor's first reading."""
    import paho.mqtt.client as mqtt
    import serial
    from paho.mqtt.enums import CallbackAPIVersion

    from monitord.drivers import datex_s5 as dx

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-startup-reference")
    client.connect("127.0.0.1", port)
    client.loop_start()
    ser = serial.serial_for_url(pty, baudrate=19200, timeout=None)
    ser.write(dx.request_frames(1))
    decoder = dx.StreamDecoder()
    while True:
        data = ser.read(1)
        data += ser.read(ser.in_waiting)
        for item in decoder.feed(data):
            if isinstance(item, dx.DisplayedValues):
                info = client.publish(topic, json.dumps({"hr": item.hr, "spo2": item.spo2}), qos=1)
                info.wait_for_publish(10)
                client.disconnect()
                client.loop_stop()
                return


# -- the bench --------------------------------------------------------------------------------


DEVICES = """
[devices.monitor]
driver = "datex"
poll_interval_s = 1
[devices.monitor.serial]
port = "{pty}"
"""
PUMP = """
[devices.pump]
driver = "modbus"
poll_interval_s = 1.0
[devices.pump.serial]
port = "{link}"
"""


async def _one(kind: str, tmp: Path, sub: object, port: int, state: Path, pump: bool) -> dict[str, float]:
    """One start: seconds from spawn to the status birth (monitord) and to the first reading."""
    from bench.bench_latency import Subscriber, site_config, spawn, stop
    from monitord.readings import Vital
    from monitord.simulators.datex_sim import DatexSimulator
    from monitord.simulators.pump_endpoint import PtyEndpoint
    from monitord.simulators.pump_modbus_sim import ModbusPumpSim
    from monitord.simulators.pump_model import PumpModel

    assert isinstance(sub, Subscriber)
    sim = DatexSimulator(lambda t: {Vital.HR: 72.0, Vital.PULSE: 72.0, Vital.SPO2: 97.0, Vital.RR: 14.0},
                         transport="pty")
    pty = await sim.start()
    log = tmp / f"{kind}.log"
    proc = None
    pump_task = endpoint = None
    try:
        if kind == "reference":
            topics, status = [REFERENCE_TOPIC], None
            t0 = time.monotonic()
            proc = await spawn(log, "bench/startup.py", "--reference", pty, str(port), REFERENCE_TOPIC)
        else:
            devices = DEVICES.format(pty=pty)
            topics, status = [f"{ROOT}/{BED}/vitals"], f"{ROOT}/{BED}/status"
            if pump:
                model = PumpModel(rate_ml_h=35.0, concentration_mg_ml=1.0)
                model.start()
                endpoint = PtyEndpoint(tmp / "pump")
                pump_task = asyncio.create_task(ModbusPumpSim(model, endpoint).run())
                devices += PUMP.format(link=tmp / "pump")
                topics.append(f"{ROOT}/{BED}/infusion")
            cfg = site_config(state.parent, port, state.name, devices)
            t0 = time.monotonic()
            proc = await spawn(log, "-m", "monitord.cli", "run", "-c", str(cfg))
        deadline = t0 + TIMEOUT_S
        while not (got := sorted((m for t in topics for m in sub.on(t, t0)), key=lambda m: m.at)):
            if time.monotonic() > deadline or proc.returncode is not None:
                raise RuntimeError(f"{kind}: no reading within {TIMEOUT_S:.0f} s\n"
                                   + log.read_text(errors="replace")[-2000:])
            await asyncio.sleep(0.005)
        out = {"first reading": got[0].at - t0}
        if status is not None:
            births = [m for m in sub.on(status, t0) if m.payload.get("status") == "online"]
            if births:
                out["broker connected"] = births[0].at - t0
        return out
    finally:
        if kind == "reference" and proc is not None:
            await asyncio.wait_for(proc.wait(), 20)
        else:
            await stop(proc)
        await sim.stop()
        if pump_task is not None and endpoint is not None:
            pump_task.cancel()
            endpoint.close()


async def _history(state: Path, port: int, hours: float) -> None:
    """Fill ``state``'s database with ``hours`` of a bed (1 Hz pump and monitor) through the store."""
    from bench.bench_latency import site_config
    from monitord import readings as r
    from monitord.clock import FakeClock
    from monitord.config import load_config
    from monitord.engine import Engine
    from monitord.store import Store

    cfg = load_config(site_config(state.parent, port, state.name, DEVICES.format(pty="/dev/null")))
    clock = FakeClock(datetime.now(UTC) - timedelta(hours=hours))
    engine = Engine(cfg, clock)
    store = Store.open(cfg, clock)
    store.recover(engine)
    store.attach(engine, _NullLoop())  # type: ignore[arg-type]
    await store.start()
    engine.submit(r.Admit("BENCH-H", 70.0, 45, "rn-bench"))
    volume = 0.0
    for i in range(int(hours * 3600)):
        clock.advance(1.0)
        volume += 35.0 / 3600
        engine.submit(r.PumpReading("pump", r.PumpState.RUNNING, rate_ml_h=35.0, volume_infused_ml=round(volume, 4),
                                    drug="ketamine", concentration_mg_ml=1.0, syringe_ml=50.0), evaluate=False)
        engine.submit(r.VitalsReading("monitor", {r.Vital.HR: 70.0 + i % 7, r.Vital.SPO2: 97.0, r.Vital.RR: 14.0}),
                      evaluate=False)
        if i % 2000 == 0:
            await asyncio.to_thread(store.wait_committed, engine.seq, 120.0)
    engine.submit(r.Discharge("rn-bench", reason="bench history"), evaluate=False)
    await store.stop()


class _NullLoop:
    def put_threadsafe(self, loop: object, item: object) -> None:
        pass


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


async def run(args: argparse.Namespace) -> int:
    from bench.bench_latency import Subscriber
    from tests.mqtt.broker import Mosquitto

    kinds = ["reference", "fresh", "restarted"]
    results: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="monitord-startup-") as tmp_name:
        tmp = Path(tmp_name)
        broker = Mosquitto(tmp / "broker").start()
        sub = Subscriber(broker.port, [f"{ROOT}/#", "bench/#"])
        try:
            kept = tmp / "restarted"
            if args.history_h > 0:
                print(f"writing {args.history_h:g} h of history ...", file=sys.stderr)
                await _history(kept, broker.port, args.history_h)
                os.sync()  # its pages on disk now, not written back during the measured starts
            else:
                await _one("fresh", tmp, sub, broker.port, kept, args.pump)  # the database a restart opens
            for i in range(args.runs):
                for kind in kinds:
                    state = kept if kind == "restarted" else tmp / f"fresh-{i}"
                    results[kind].append(await _one(kind, tmp, sub, broker.port, state, args.pump))
                print(f"  {i + 1}/{args.runs}", file=sys.stderr)
        finally:
            sub.close()
            broker.stop()
        size_mb = sum(f.stat().st_size for f in kept.glob("monitord.db*")) / 1e6 if kept.exists() else 0.0
    print(report(results, args, size_mb))
    return 0


def report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace, size_mb: float) -> str:
    ref = _median([r["first reading"] for r in results["reference"]])
    lines = [f"`monitord run` -> first reading at an MQTT subscriber, {args.runs} runs each, seconds:", "",
             "| path | median | min | max | broker connected (median) | ratio to reference |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    names = {"reference": "reference: paho + pyserial + decode, publish",
             "fresh": "monitord run, new database",
             "restarted": f"monitord run, existing database ({size_mb:.1f} MB)"}
    verdicts = []
    for kind, runs in results.items():
        xs = [r["first reading"] for r in runs]
        conn = [r["broker connected"] for r in runs if "broker connected" in r]
        ratio = "" if kind == "reference" else f"{_median(xs) / ref:.1f}x"
        lines.append(f"| {names[kind]} | {_median(xs):.3f} | {min(xs):.3f} | {max(xs):.3f} | "
                     f"{_median(conn):.3f} | {ratio} |" if conn else
                     f"| {names[kind]} | {_median(xs):.3f} | {min(xs):.3f} | {max(xs):.3f} | - | {ratio} |")
        if kind != "reference":
            verdicts.append(f"{kind}: median {_median(xs):.2f} s, goal <= {GOAL_S:g} s: "
                            + ("PASS" if _median(xs) <= GOAL_S else "FAIL"))
    return "\n".join([*lines, "", *verdicts])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=5, help="starts of each kind (default 5)")
    ap.add_argument("--history-h", type=float, default=0.0,
                    help="hours of 1 Hz pump + monitor history in the restarted database (default: one short run)")
    ap.add_argument("--pump", action="store_true",
                    help="the daemon also polls a simulated Modbus pump (first reading: vitals or infusion)")
    ap.add_argument("--reference", nargs=3, metavar=("PTY", "PORT", "TOPIC"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.reference:
        reference(args.reference[0], int(args.reference[1]), args.reference[2])
        return 0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
