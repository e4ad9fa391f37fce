"""Soak: the daemon with a pump and a monitor for a while, sampling its CPU and RSS.

    python bench/soak.py --minutes 60                    # the acceptance run: 1 h at bedside rates
    python bench/soak.py --minutes 480 --sample-s 60     # 8 h (on a quiet machine)
    python bench/soak.py --minutes 10 --speed 10         # pump polled 10x faster: per-reading growth shows sooner
    python bench/soak.py --minutes 10 --tracemalloc      # the daemon under tracemalloc: what grew, by line
    python bench/soak.py --minutes 10 --loop-debug       # callbacks that held the event loop over 10 ms

The bench serves simulated devices on ptys (``monitord.simulators``): a Modbus pump (10 mg/mL at
3.5 mL/h, 0.5 mg/kg/h for 70 kg; a 50 mL syringe lasts 14 h) and a Datex S/5 monitor answering
the daemon's request every second. It starts ``monitord run`` (MQTT to a mosquitto on a free
port with one subscriber, SQLite in a temporary state directory whose database the bench creates
first, as after any restart: ``--new-database`` leaves that to the daemon, which then also loads
the migration code), keeps a dashboard connected
over the link socket, admits a patient, orders, answers the checklist and starts the infusion,
then records a sedation and a pain score every ``--obs-every`` seconds, as a nurse would.

CPU (utime + stime) and RSS of the daemon are sampled every ``--sample-s`` seconds after
``--warmup`` seconds. Goals (issue "fast and light"): CPU at most 1 % of a core, RSS at most
60 MB, and RSS growth over the second half of the run below 1 MB (for a 1 h run; the slope in
MB/h is printed as well). Each is printed with PASS or FAIL.

With ``--tracemalloc`` the daemon runs in a wrapper (``run_daemon`` under ``tracemalloc``, 10
frames): a snapshot after the warm-up and one at the end are compared and the top growth by
line and by traceback is printed. Its CPU and RSS include tracemalloc's own cost (RSS about
doubles): use them for *what* grows, not for the goals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CPU_GOAL_PCT = 1.0
# asyncio's debug-mode report of a callback that held the loop too long.
SLOW_CALLBACK = re.compile(r"Executing .* took (\d+\.\d+) seconds")
RSS_GOAL_MB = 60.0
GROWTH_GOAL_MB = 1.0  # over the second half of a 1 h run
CONC_MG_ML, RATE_ML_H, SYRINGE_ML, WEIGHT_KG = 10.0, 3.5, 50.0, 70.0
TOP = 15


@dataclass
class Sample:
    t: float  # seconds since the window began
    rss_mb: float
    cpu_s: float


@dataclass
class Counts:
    by_topic: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, topic: str) -> None:
        with self.lock:
            leaf = topic.rsplit("/", 1)[-1]
            self.by_topic[leaf] = self.by_topic.get(leaf, 0) + 1


def _subscriber(port: int, counts: Counts) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="soak-central")
    client.on_connect = lambda c, *_: c.subscribe("monitord/v1/#", qos=1)
    client.on_message = lambda c, u, msg: counts.add(msg.topic)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _devices(pump_link: Path) -> tuple[Any, Any, Any]:
    from monitord.readings import Vital
    from monitord.simulators.datex_sim import DatexSimulator
    from monitord.simulators.pump_endpoint import PtyEndpoint
    from monitord.simulators.pump_modbus_sim import ModbusPumpSim
    from monitord.simulators.pump_model import PumpModel

    monitor = DatexSimulator(lambda t: {Vital.HR: 72.0 + (int(t) % 5), Vital.PULSE: 72.0, Vital.SPO2: 97.0,
                                        Vital.RR: 14.0, Vital.ETCO2: 38.0, Vital.TEMP: 36.8, Vital.SBP: 124.0,
                                        Vital.DBP: 76.0, Vital.MAP: 92.0}, transport="pty")
    model = PumpModel(rate_ml_h=RATE_ML_H, concentration_mg_ml=CONC_MG_ML, syringe_ml=SYRINGE_ML)
    model.start()
    endpoint = PtyEndpoint(pump_link)
    pump = asyncio.create_task(ModbusPumpSim(model, endpoint).run(), name="pump-sim")
    return monitor, endpoint, pump


async def _nurse(sock: Path, every_s: float, stop: asyncio.Event) -> None:
    """A dashboard connected throughout (the link server's clients are part of the daemon's work)."""
    from bench.bench_latency import CHECKLIST, until
    from monitord.link.client import LinkClient

    client = LinkClient(sock, lambda msg: None, retry_s=0.5)
    task = asyncio.create_task(client.run())
    try:
        await until(lambda: client.connected, 60, "the dashboard link")
        for kind, fields in (
                ("admit", {"patient_id": "SOAK-1", "weight_kg": WEIGHT_KG, "age_years": 45}),
                ("order", {"drug": "ketamine", "concentration_mg_ml": CONC_MG_ML, "rate_ml_h": RATE_ML_H,
                           "syringe_ml": SYRINGE_ML}),
                ("checklist", {"answers": CHECKLIST}),
                ("pain", {"score": 7}),
                ("start", {})):
            await client.command(kind, actor="rn-soak", **fields)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
            if stop.is_set():
                break
            with contextlib.suppress(Exception):  # a refused entry is the daemon's business, not the soak's
                await client.command("sedation", actor="rn-soak", scale="poss", score=1)
                await client.command("pain", actor="rn-soak", score=4)
    finally:
        await client.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def run(args: argparse.Namespace) -> int:
    from bench.bench_latency import cpu_seconds, rss_mb, site_config, spawn, stop, until
    from tests.mqtt.broker import Mosquitto

    samples: list[Sample] = []
    counts = Counts()
    with tempfile.TemporaryDirectory(prefix="monitord-soak-") as tmp_name:
        tmp = Path(tmp_name)
        broker = Mosquitto(tmp / "broker").start()
        sub = _subscriber(broker.port, counts)
        monitor, endpoint, pump = _devices(tmp / "pump")
        monitor_pty = await monitor.start()
        cfg = site_config(tmp, broker.port, "soak", f"""
[devices.pump]
driver = "modbus"
poll_interval_s = {1.0 / args.speed:g}
[devices.pump.serial]
port = "{tmp / 'pump'}"

[devices.monitor]
driver = "datex"
poll_interval_s = 1
[devices.monitor.serial]
port = "{monitor_pty}"
""", care_area="outpatient-infusion")
        log = tmp / "soak" / "daemon.log"
        traced = tmp / "tracemalloc.txt"
        if not args.new_database:  # as after any restart: the schema is current, no migration runs
            from monitord.config import load_config
            from monitord.store.database import open_database

            open_database(load_config(cfg)).engine.dispose()
        if args.tracemalloc:
            daemon = await spawn(log, "bench/soak.py", "--traced", str(cfg), str(traced), str(args.warmup))
        else:
            daemon = await spawn(log, "-m", "monitord.cli", "run", "-c", str(cfg),
                                 *(["--loop-debug"] if args.loop_debug else []))
        quit_nurse = asyncio.Event()
        nurse = None
        window_start = "9999"  # the daemon died before the window: everything counts as start-up
        try:
            sock = tmp / "soak" / "dash.sock"
            await until(sock.exists, 60, "the daemon's socket", daemon, log)
            nurse = asyncio.create_task(_nurse(sock, args.obs_every, quit_nurse))
            await asyncio.sleep(args.warmup)
            t0, cpu0 = time.monotonic(), cpu_seconds(daemon.pid)
            window_start = datetime.now().strftime("%Y-%m-%d %H:%M:%S")  # as the daemon's log stamps lines
            end = t0 + args.minutes * 60
            while True:
                now = time.monotonic()
                if daemon.returncode is not None:
                    raise RuntimeError("the daemon exited\n" + log.read_text(errors="replace")[-3000:])
                samples.append(Sample(now - t0, rss_mb(daemon.pid), cpu_seconds(daemon.pid) - cpu0))
                if now >= end:
                    break
                await asyncio.sleep(min(args.sample_s, max(0.0, end - now)))
                print(f"  {samples[-1].t / 60:5.1f} min  RSS {samples[-1].rss_mb:5.1f} MB", file=sys.stderr)
        finally:
            quit_nurse.set()
            if nurse is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(nurse, 10)
            if args.tracemalloc:  # the comparison of two snapshots takes a while
                daemon.terminate()
                await asyncio.wait_for(daemon.wait(), 600)
            else:
                await stop(daemon)
            pump.cancel()
            endpoint.close()
            await monitor.stop()
            sub.disconnect()
            sub.loop_stop()
            broker.stop()
        log_lines = log.read_text(errors="replace").splitlines()
        problems = [line for line in log_lines if " ERROR " in line or "CRITICAL" in line or "Traceback" in line]
        slow_lines = [line for line in log_lines if SLOW_CALLBACK.search(line)]
        at_start = [line for line in slow_lines if line[:19] < window_start]  # start-up and warm-up
        slow_lines = [line for line in slow_lines if line[:19] >= window_start]
        slow = [float(m.group(1)) for line in slow_lines if (m := SLOW_CALLBACK.search(line))]
        top = traced.read_text() if traced.exists() else ""
        stored = _stored(tmp / "soak" / "monitord.db")
    print(report(samples, counts, args, problems, top, stored))
    if args.loop_debug:
        print(f"event-loop callbacks over 10 ms before the window (start-up, warm-up): {len(at_start)}")
        for line in at_start[:5]:
            print("  " + line[:300])
        print(f"event-loop callbacks over 10 ms in the window (asyncio debug mode): {len(slow)}"
              + (f", longest {max(slow) * 1000:.0f} ms" if slow else "") + "; goal 0: " + ("FAIL" if slow else "PASS"))
        for line in slow_lines[:10]:
            print("  " + line[:400])
    return 0


def _stored(db: Path) -> str:
    """What the store holds at the end: events, and the size of the bed's checkpoint (taken after
    every input and written with every batch: its growth is work that grows with the infusion)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        cp = conn.execute("SELECT length(data) FROM checkpoints").fetchone()
    size = sum(f.stat().st_size for f in db.parent.glob(db.name + "*")) / 1e6
    return f"store at the end: {events} events, checkpoint {cp[0] if cp else 0} bytes, files {size:.1f} MB"


def _slope_mb_h(xs: list[Sample]) -> float:
    if len(xs) < 2:
        return float("nan")
    mt = sum(s.t for s in xs) / len(xs)
    mr = sum(s.rss_mb for s in xs) / len(xs)
    var = sum((s.t - mt) ** 2 for s in xs)
    return sum((s.t - mt) * (s.rss_mb - mr) for s in xs) / var * 3600 if var > 0 else float("nan")


def report(samples: list[Sample], counts: Counts, args: argparse.Namespace, problems: list[str], top: str,
           stored: str) -> str:
    window = samples[-1].t
    half = [s for s in samples if s.t >= window / 2]
    cpu_pct = samples[-1].cpu_s / window * 100 if window > 0 else float("nan")
    first_half = [s for s in samples if s.t <= window / 2]
    cpu_1 = first_half[-1].cpu_s / first_half[-1].t * 100 if first_half[-1].t > 0 else float("nan")
    cpu_2 = (half[-1].cpu_s - half[0].cpu_s) / (half[-1].t - half[0].t) * 100 if half[-1].t > half[0].t else float("nan")
    rss_max = max(s.rss_mb for s in samples)
    growth = half[-1].rss_mb - half[0].rss_mb
    scale = args.minutes / 60.0  # the growth goal is for a 1 h run
    lines = [f"Soak: {window / 60:.1f} min after {args.warmup:g} s of warm-up; pump polled every "
             f"{1.0 / args.speed:g} s, monitor every 1 s, a sedation and pain score every {args.obs_every:g} s"
             + (" (under tracemalloc)" if args.tracemalloc else ""), "",
             "| minute | RSS MB | CPU s |", "| ---: | ---: | ---: |"]
    step = max(1, len(samples) // 12)
    for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        lines.append(f"| {s.t / 60:.1f} | {s.rss_mb:.1f} | {s.cpu_s:.1f} |")
    lines += ["",
              f"CPU {cpu_pct:.2f} % of a core (first half {cpu_1:.2f} %, second half {cpu_2:.2f} %); "
              f"goal <= {CPU_GOAL_PCT:g} %: " + ("PASS" if cpu_pct <= CPU_GOAL_PCT else "FAIL"),
              f"RSS max {rss_max:.1f} MB; goal <= {RSS_GOAL_MB:g} MB: " + ("PASS" if rss_max <= RSS_GOAL_MB else "FAIL"),
              f"RSS growth over the second half {growth:+.2f} MB (slope {_slope_mb_h(half):+.2f} MB/h over it, "
              f"{_slope_mb_h(samples):+.2f} MB/h over the whole window); goal < {GROWTH_GOAL_MB * scale:g} MB "
              f"for this length: " + ("PASS" if growth < GROWTH_GOAL_MB * scale else "FAIL"),
              "messages at the subscriber: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.by_topic.items())),
              stored]
    if problems:
        lines += ["", f"daemon log: {len(problems)} error lines, first: {problems[0][:300]}"]
    if top:
        lines += ["", top]
    return "\n".join(lines)


# -- the daemon under tracemalloc ---------------------------------------------------------------


def traced_daemon(cfg: str, out: str, warmup_s: float) -> int:
    """``monitord run`` under tracemalloc; at SIGTERM, the growth since ``warmup_s`` to ``out``."""
    import tracemalloc

    tracemalloc.start(10)
    from monitord.config import load_or_report
    from monitord.daemon import run_daemon
    from monitord.logs import setup_logging

    setup_logging("info")
    snaps: dict[str, tracemalloc.Snapshot] = {}

    def baseline() -> None:
        time.sleep(warmup_s)
        snaps["base"] = tracemalloc.take_snapshot()

    threading.Thread(target=baseline, daemon=True).start()
    config = load_or_report(cfg)
    if config is None:
        return 2
    asyncio.run(run_daemon(config))
    if "base" not in snaps:
        return 0
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
              tracemalloc.Filter(False, "<unknown>")]
    base, end = snaps["base"].filter_traces(ignore), tracemalloc.take_snapshot().filter_traces(ignore)
    lines = [f"tracemalloc: traced {sum(s.size for s in end.statistics('filename')) / 1e6:.1f} MB at the end, "
             f"{sum(s.size for s in base.statistics('filename')) / 1e6:.1f} MB after the warm-up", "",
             f"Top {TOP} growth by line (size change, count change):"]
    for stat in end.compare_to(base, "lineno")[:TOP]:
        frame = stat.traceback[0]
        lines.append(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d}  {_short(frame.filename)}:{frame.lineno}")
    lines += ["", "Top 5 growth by traceback (innermost last):"]
    for stat in end.compare_to(base, "traceback")[:5]:
        lines.append(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d}")
        for frame in list(stat.traceback)[-6:]:
            lines.append(f"      {_short(frame.filename)}:{frame.lineno}")
    Path(out).write_text("\n".join(lines) + "\n")
    return 0


def _short(path: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the sampled window (default 60)")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before the window (default 60)")
    ap.add_argument("--sample-s", type=float, default=10.0, help="seconds between samples (default 10)")
    ap.add_argument("--speed", type=float, default=1.0, help="pump polled this many times a second (default 1)")
    ap.add_argument("--obs-every", type=float, default=900.0,
                    help="seconds between the nurse's sedation and pain scores (default 900)")
    ap.add_argument("--new-database", action="store_true",
                    help="start on an empty state directory (the daemon creates and migrates the database)")
    ap.add_argument("--loop-debug", action="store_true",
                    help="run the daemon with --loop-debug and count callbacks that held the event loop over 10 ms "
                         "(debug mode costs CPU: use its CPU figure for nothing)")
    ap.add_argument("--tracemalloc", action="store_true", help="run the daemon under tracemalloc and show what grew")
    ap.add_argument("--traced", nargs=3, metavar=("CONFIG", "OUT", "WARMUP"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.traced:
        return traced_daemon(args.traced[0], args.traced[1], float(args.traced[2]))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
