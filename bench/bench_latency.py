"""Alarm latency: from a frame on the serial line to the alarm event on the broker (p50 / p99),
beside a bare read-parse-publish loop fed the very same frames in the same run.

    python bench/bench_latency.py [-n 120 | --quick] [--period 1.5] [--flush-interval S] [--tee-delay 0.25]

A Datex S/5 simulator on a real pty sends a displayed-values record every second (the fastest
the protocol streams); HR alternates between 80 and 160 every ``--period`` seconds. Each frame
goes to the driver's pty and, ``--tee-delay`` seconds later, the same bytes to the bare loop's
pty; the monotonic time of each write and the frame's HR are recorded (by subclassing the
simulator, which is otherwise unchanged):

- full: ``DatexMonitorDriver`` -> ``RuleLoop``/``Engine`` -> ``Store`` (SQLite in a temporary
  directory, the real writer thread) -> ``MqttPublisher`` -> mosquitto -> a paho subscriber on
  ``<root>/<bed>/events/alarm``, composed as ``monitord.daemon.run_daemon`` composes them (the
  dashboard server and the watchdog included). ``vital.hr_high`` (> 120/min) and ``hr_low``
  (< 50/min) with ``delay_s = 0`` replace the configured limits, so what is measured is the
  alarm-signal generation delay, not the alarm-condition delay (IEC 60601-1-8 terms). A patient
  is admitted so the rules evaluate. Measured: frame written -> ``raised`` / ``cleared`` received.
- bare: pyserial reads the second pty, ``drivers.datex_s5.StreamDecoder`` decodes, and paho
  publishes ``{"hr": ...}`` at QoS 1 to the same broker whenever HR changes; the same
  subscriber timestamps it.

Both paths run in one process on the same frames (the bare loop in its own thread), against a
real mosquitto started on a free port. The delayed copy keeps them from competing for the CPU
and the GIL while either is measured: the bare copy arrives while the full path waits for the
store's flush (run with ``--tee-delay 0`` to see them collide). Frames are matched to messages
in order and each pair is checked (a ``raised`` must follow a frame with HR 160, a ``cleared``
one with HR 80, a bare message must carry the frame's HR).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import serial
from paho.mqtt.enums import CallbackAPIVersion

# tests/ is not an installed package: make the repository root importable when run as a script.
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from drivers import build_drivers  # noqa: E402
from drivers import datex_s5 as dx  # noqa: E402
from monitord import readings as r  # noqa: E402
from monitord.clock import SystemClock  # noqa: E402
from monitord.config import Config, load_config  # noqa: E402
from monitord.engine import Engine  # noqa: E402
from monitord.events import Event, EventKind  # noqa: E402
from monitord.link.server import DashboardServer  # noqa: E402
from monitord.loop import RuleLoop  # noqa: E402
from monitord.mqtt.publisher import MqttPublisher  # noqa: E402
from monitord.notify import Watchdog  # noqa: E402
from monitord.store import Store  # noqa: E402
from simulators.datex_sim import DatexSimulator  # noqa: E402
from simulators.transport import PtyPair, open_pty  # noqa: E402
from tests.mqtt.broker import Mosquitto  # noqa: E402

ROOT = "monitord/v1"
BED = "bed-bench"
RULE = "vital.hr_high"
ALARM_TOPIC = f"{ROOT}/{BED}/events/alarm"
BARE_TOPIC = "bench/bare/hr"
HR_LOW, HR_HIGH = 80.0, 160.0
DEFAULT_TRANSITIONS = 120  # ~3 min at the default period
QUICK_TRANSITIONS = 16  # ~30 s
# The bare loop gets its copy of each frame this much later, while the full path waits for the
# store's flush: the two never compete for the CPU or the GIL while they are measured.
TEE_DELAY_S = 0.25
# The configured HR limits with the condition delay set to 0 (lists replace whole on merge).
LIMITS = [
    {"id": "hr_high", "vital": "hr", "above": 120, "delay_s": 0, "priority": "medium",
     "source": "Mindray, EDAN presets 120/min; alarm-defaults.md s3 (delay 0 for the latency bench)"},
    {"id": "hr_low", "vital": "hr", "below": 50, "delay_s": 0, "priority": "medium",
     "source": "Mindray, EDAN presets 50/min; alarm-defaults.md s3 (delay 0 for the latency bench)"},
]


# -- the device side --------------------------------------------------------------------------


class Schedule:
    """HR 80 until ``start``; then 160 and 80 alternately, ``period`` seconds each; ``hold``
    keeps the value of that moment."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._t0: float | None = None
        self._held: float | None = None

    def start(self) -> None:
        self._t0 = time.monotonic()

    def hold(self) -> None:
        self._held = self.hr()

    def hr(self) -> float:
        if self._held is not None:
            return self._held
        if self._t0 is None:
            return HR_LOW
        return HR_HIGH if int((time.monotonic() - self._t0) / self.period_s) % 2 == 0 else HR_LOW

    def values_at(self, t: float) -> Mapping[r.Vital, float | None]:
        hr = self.hr()
        return {r.Vital.HR: hr, r.Vital.PULSE: hr, r.Vital.SPO2: 97.0, r.Vital.RR: 14.0,
                r.Vital.ETCO2: 38.0, r.Vital.TEMP: 36.8,
                r.Vital.SBP: 124.0, r.Vital.DBP: 76.0, r.Vital.MAP: 92.0}


@dataclass
class FrameWrite:
    hr: float | None
    to_driver: float  # monotonic time the frame was handed to the driver's pty
    to_bare: float | None = None  # ... and, tee_delay_s later, to the bare loop's pty


class TimedDatexSimulator(DatexSimulator):
    """The simulator, recording when it writes each frame and with which HR, and writing a copy
    of each frame to a second pty ``tee_delay_s`` later."""

    def __init__(self, values_at: Callable[[float], Mapping[r.Vital, float | None]], tee: PtyPair,
                 tee_delay_s: float) -> None:
        super().__init__(values_at, transport="pty")
        self.tee = tee
        self.tee_delay_s = tee_delay_s
        self.writes: list[FrameWrite] = []
        self.tee_dropped = 0
        self._hr: float | None = None
        self._tee_closed = False

    def displayed_values(self, now_mono: float | None = None) -> dx.DisplayedValues:
        dv = super().displayed_values(now_mono)
        self._hr = dv.hr
        return dv

    def _write(self, data: bytes) -> None:
        w = FrameWrite(self._hr, time.monotonic())
        super()._write(data)
        self.writes.append(w)
        assert self._loop is not None
        self._loop.call_later(self.tee_delay_s, self._write_tee, w, data)

    async def stop(self) -> None:
        self._tee_closed = True  # copies still scheduled must not write to a closed (or reused) fd
        await super().stop()

    def _write_tee(self, w: FrameWrite, data: bytes) -> None:
        if self._tee_closed:
            return
        w.to_bare = time.monotonic()
        try:
            n = os.write(self.tee.master_fd, data)
        except OSError:
            n = 0
        self.tee_dropped += len(data) - n


# -- the two paths ----------------------------------------------------------------------------


class Daemon:
    """One bed composed as ``monitord.daemon.run_daemon`` composes it, with timing probes."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.clock = SystemClock()
        self.engine = Engine(config, self.clock)
        self.store = Store.open(config, self.clock)
        self.store.recover(self.engine)
        self.loop = RuleLoop(self.engine, config.watchdog.tick_s)
        self.store.attach(self.engine, self.loop)
        self.engine.subscribe(self._on_event)
        self.publisher = MqttPublisher(config, self.store, self.loop, self.clock)
        self.parts: list[Any] = [self.store, self.publisher, DashboardServer(config, self.engine, self.loop)]
        self.watchdog = Watchdog(self.engine, self.clock, config, environ={})
        self.loop.on_evaluated.append(self.watchdog.evaluated)
        self.drivers = build_drivers(config.devices, self.loop.put)
        self.tasks: list[asyncio.Task[None]] = []
        # probes: alarm_seq -> (monotonic time the engine emitted it, its event seq); commits
        self.emitted: dict[int, tuple[float, int]] = {}
        self.commits: list[tuple[float, int]] = []
        self.store.add_commit_listener(lambda seq: self.commits.append((time.monotonic(), seq)))

    def _on_event(self, event: Event) -> None:
        if event.kind is EventKind.SESSION and event.data.get("action") == "admitted":
            self.loop.put(r.TreatmentCount(self.store.treatment_count(event.data["patient"]["id"])))
        if event.kind is EventKind.ALARM and event.data.get("rule_id") == RULE:
            self.emitted[event.data["alarm_seq"]] = (time.monotonic(), event.seq)

    async def start(self) -> None:
        self.tasks = [asyncio.create_task(self.loop.run(), name="rule-loop")]
        for part in self.parts:
            await part.start()
        self.tasks += [asyncio.create_task(d.run(), name=f"driver-{d.name}") for d in self.drivers]
        self.engine.record_system("started", devices=[d.name for d in self.drivers])
        self.watchdog.ready()

    async def stop(self) -> None:
        self.watchdog.stopping()
        for d in self.drivers:
            d.stop()
        for t in self.tasks[1:]:
            t.cancel()
        self.engine.record_system("stopping")
        for part in reversed(self.parts):
            with contextlib.suppress(Exception):
                await part.stop()
        self.loop.stop()
        self.tasks[0].cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def committed_at(self, seq: int) -> float | None:
        """When the commit that included event ``seq`` finished."""
        return next((t for t, last in self.commits if last >= seq), None)


class BareLoop(threading.Thread):
    """Read the pty with pyserial, decode, publish each changed HR at QoS 1. Nothing else."""

    def __init__(self, path: str, port: int) -> None:
        super().__init__(name="bare-loop", daemon=True)
        self.ser = serial.serial_for_url(path, baudrate=19200, timeout=0.2)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.decoder = dx.StreamDecoder()
        self.stopping = threading.Event()

    def run(self) -> None:
        last: float | None = None
        while not self.stopping.is_set():
            data = self.ser.read(1)  # blocks until a byte arrives (or the timeout)
            if not data:
                continue
            data += self.ser.read(self.ser.in_waiting)
            for item in self.decoder.feed(data):
                if isinstance(item, dx.DisplayedValues) and item.hr != last:
                    last = item.hr
                    self.client.publish(BARE_TOPIC, json.dumps({"hr": item.hr}), qos=1)

    def stop(self) -> None:
        self.stopping.set()
        self.join(2.0)
        self.ser.close()
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Received:
    at: float
    topic: str
    payload: dict[str, Any]


class Subscriber:
    """What a central station receives, timestamped on arrival (paho's network thread)."""

    def __init__(self, port: int) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-central")
        self.client.on_connect = lambda c, *_: c.subscribe([(ALARM_TOPIC, 1), (BARE_TOPIC, 1)])
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise TimeoutError("subscription not confirmed")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        at = time.monotonic()
        with self._lock:
            self.messages.append(Received(at, msg.topic, json.loads(msg.payload)))

    def on(self, topic: str, since: float = 0.0) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic and m.at >= since]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the run ----------------------------------------------------------------------------------


def bench_config(port: int, state_dir: Path, serial_port: str, flush_interval_s: float | None) -> Config:
    store: dict[str, Any] = {"state_dir": str(state_dir)}
    if flush_interval_s is not None:
        store["flush_interval_s"] = flush_interval_s
    return load_config(overrides={
        "bed": {"id": BED, "care_area": "monitored-unit"},
        "store": store,
        "mqtt": {"host": "127.0.0.1", "port": port, "topic_root": ROOT},
        "dashboard": {"socket": str(state_dir / "dashboard.sock")},
        "devices": {"monitor": {"driver": "datex", "serial": {"port": serial_port}, "poll_interval_s": 1}},
        "vitals": {"limits": LIMITS},
    })


async def until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        await asyncio.sleep(0.05)


@dataclass
class PathResult:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class Run:
    changes: list[FrameWrite]
    full: PathResult
    bare: PathResult
    stages_ms: dict[str, list[float]]
    flush_interval_s: float
    tee_dropped: int


def changes_after(writes: list[FrameWrite], since: float) -> list[FrameWrite]:
    """Frames written after ``since`` whose HR differs from the frame before."""
    out, prev = [], None
    for w in writes:
        if w.to_driver >= since and prev is not None and w.hr != prev:
            out.append(w)
        prev = w.hr
    return out


def match(name: str, changes: list[FrameWrite], msgs: list[Received], expect: Callable[[FrameWrite, Received], bool],
          sent_at: Callable[[FrameWrite], float | None]) -> PathResult:
    res = PathResult(name)
    if len(msgs) != len(changes):
        res.problems.append(f"{len(changes)} HR changes written, {len(msgs)} messages received")
    for i, (w, m) in enumerate(zip(changes, msgs, strict=False)):
        sent = sent_at(w)
        if not expect(w, m) or sent is None:
            res.problems.append(f"transition {i}: frame HR {w.hr} does not match {m.payload}")
            continue
        res.latencies_ms.append((m.at - sent) * 1000.0)
    return res


async def run(transitions: int, period_s: float, flush_interval_s: float | None, tee_delay_s: float) -> Run:
    with tempfile.TemporaryDirectory(prefix="monitord-latency-") as tmp:
        broker = Mosquitto(Path(tmp) / "broker").start()
        tee = open_pty()
        schedule = Schedule(period_s)
        sim = TimedDatexSimulator(schedule.values_at, tee, tee_delay_s)
        sub: Subscriber | None = None
        bare: BareLoop | None = None
        daemon: Daemon | None = None
        try:
            sub = Subscriber(broker.port)
            bare = BareLoop(tee.path, broker.port)
            bare.start()
            await sim.start()
            config = bench_config(broker.port, Path(tmp) / "state", sim.path, flush_interval_s)
            daemon = Daemon(config)
            await daemon.start()
            d = daemon
            await d.loop.command(r.Admit("BENCH-1", 70.0, 45, "rn-bench"))
            await until(lambda: d.publisher.connected, 15, "publisher connected")
            await until(lambda: (v := d.engine.state.vitals.get(r.Vital.HR)) is not None and v.value == HR_LOW,
                        15, "the driver's first reading")
            await until(lambda: bool(sub and sub.on(BARE_TOPIC)), 15, "the bare loop's first message")
            await asyncio.sleep(2.0)  # let start-up traffic (admission, backlog) go out
            started = time.monotonic()
            schedule.start()
            print(f"measuring {transitions} transitions, HR {HR_LOW:.0f} <-> {HR_HIGH:.0f} every {period_s} s ...",
                  file=sys.stderr)
            shown = 0
            deadline = started + transitions * period_s * 2 + 30
            while len(changes_after(sim.writes, started)) < transitions:
                if time.monotonic() > deadline:
                    raise TimeoutError("the simulator did not produce the transitions in time")
                n = len(changes_after(sim.writes, started))
                if n >= shown + 20:
                    shown = n
                    print(f"  {n}/{transitions}", file=sys.stderr)
                await asyncio.sleep(0.1)
            schedule.hold()
            changes = changes_after(sim.writes, started)[:transitions]

            def hr_events() -> list[Received]:
                assert sub is not None
                return [m for m in sub.on(ALARM_TOPIC, started) if m.payload.get("rule_id") == RULE]

            with contextlib.suppress(TimeoutError):
                await until(lambda: len(hr_events()) >= transitions and len(sub.on(BARE_TOPIC, started)) >= transitions,
                            15, "the last messages")
            events = hr_events()[:transitions]
            bare_msgs = sub.on(BARE_TOPIC, started)[:transitions]
        finally:
            if daemon is not None:
                await daemon.stop()
            await sim.stop()
            if bare is not None:
                bare.stop()
            if sub is not None:
                sub.close()
            tee.close()
            broker.stop()

    def full_ok(w: FrameWrite, m: Received) -> bool:
        want = "raised" if w.hr == HR_HIGH else "cleared"
        return m.payload.get("transition") == want

    full = match("full", changes, events, full_ok, lambda w: w.to_driver)
    bare_res = match("bare", changes, bare_msgs, lambda w, m: m.payload.get("hr") == w.hr, lambda w: w.to_bare)
    stages: dict[str, list[float]] = {"serial -> engine": [], "engine -> committed": [], "committed -> received": []}
    assert daemon is not None
    for w, m in zip(changes, events, strict=False):
        emitted = daemon.emitted.get(m.payload["alarm_seq"])
        if emitted is None:
            continue
        t_emit, seq = emitted
        t_commit = daemon.committed_at(seq)
        if t_commit is None:
            continue
        stages["serial -> engine"].append((t_emit - w.to_driver) * 1000)
        stages["engine -> committed"].append((t_commit - t_emit) * 1000)
        stages["committed -> received"].append((m.at - t_commit) * 1000)
    return Run(changes, full, bare_res, stages, config.store.flush_interval_s, sim.tee_dropped)


def percentile(xs: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(xs)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def row(name: str, xs: list[float]) -> str:
    if not xs:
        return f"| {name} | 0 | - | - | - | - |"
    return (f"| {name} | {len(xs)} | {percentile(xs, 0.5):.1f} | {percentile(xs, 0.99):.1f} | "
            f"{max(xs):.1f} | {min(xs):.1f} |")


def report(res: Run) -> str:
    lines = [
        "| path | N | p50 ms | p99 ms | max ms | min ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        row("full: pty -> driver -> engine -> store -> publisher -> broker -> subscriber", res.full.latencies_ms),
        row("bare: pty -> pyserial -> decode -> paho publish -> broker -> subscriber", res.bare.latencies_ms),
        "",
        f"Full path by stage (store flush_interval_s = {res.flush_interval_s}):",
        "",
        "| stage | N | p50 ms | p99 ms | max ms | min ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [row(name, xs) for name, xs in res.stages_ms.items()]
    raised = sum(1 for w in res.changes if w.hr == HR_HIGH)
    lines += ["", f"{len(res.changes)} HR changes written ({raised} to 160, {len(res.changes) - raised} to 80); "
              f"mean full - bare: {statistics.fmean(res.full.latencies_ms) - statistics.fmean(res.bare.latencies_ms):.1f} ms"
              if res.full.latencies_ms and res.bare.latencies_ms else ""]
    for p in (res.full, res.bare):
        lines += [f"{p.name}: PROBLEM: {x}" for x in p.problems]
    if res.tee_dropped:
        lines.append(f"PROBLEM: {res.tee_dropped} bytes not written to the bare loop's pty")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--transitions", "-n", type=int, default=None,
                    help=f"HR changes to measure (default {DEFAULT_TRANSITIONS}, about 3 min)")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_TRANSITIONS} transitions, about 30 s")
    ap.add_argument("--period", type=float, default=1.5, help="seconds between HR changes (frames come every 1 s)")
    ap.add_argument("--flush-interval", type=float, default=None,
                    help="override config.store.flush_interval_s (default: the configured value)")
    ap.add_argument("--tee-delay", type=float, default=TEE_DELAY_S,
                    help=f"seconds between a frame and its copy to the bare loop (default {TEE_DELAY_S})")
    args = ap.parse_args(argv)
    n = args.transitions or (QUICK_TRANSITIONS if args.quick else DEFAULT_TRANSITIONS)
    res = asyncio.run(run(n, args.period, args.flush_interval, args.tee_delay))
    print(report(res))
    return 1 if res.full.problems or res.bare.problems or res.tee_dropped else 0


if __name__ == "__main__":
    sys.exit(main())
