"""Plays a scenario's device side on the simulators, over real serial lines, on a timeline.

``ScenarioRunner`` opens the simulated monitor (Datex S/5), pump (Modbus or NE-500) and, if asked,
a standalone pulse oximeter (Masimo) on ptys, serial ports or TCP, and then, as scenario time
passes, makes them show what the scenario's ``Course`` says: the monitor's continuous values come
from ``course.vitals_at()``, its NIBP is measured on the scenario's cycle from ``course.nibp_at()``,
the pump follows ``course.pump`` (programming, state, alarms), the oximeter shows
``course.oximeter_at()`` and ``course.oximeter_alarms`` (``oximeter_alarm`` steps), and the
scenario's device faults become the simulators' ``inject(kind, duration_s)``.

Session and nurse steps (admit, order, start, sedation...) are not device-side. They go to the
``steps`` sink given to the runner: the daemon's dashboard link (``LinkSteps``), an in-process
rule loop (tests), or nowhere (they are logged and skipped).

Scenario time runs ``speed`` times faster than real time. The wire does not: frames, poll
intervals, device timeouts and every delay the daemon measures stay in real seconds, so a
speed-up compresses the course but not the daemon's clock. See docs/devices.md, "Speed".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitord import readings as r
from monitord.scenario import ACTOR, Course, Scenario, ScenarioError, Step
from monitord.simulators.datex_sim import DatexSimulator
from monitord.simulators.oximeter_sim import OximeterSimulator
from monitord.simulators.pump_endpoint import Endpoint, PtyEndpoint, SerialEndpoint, TcpEndpoint
from monitord.simulators.pump_model import PumpModel

log = logging.getLogger(__name__)

# Scenario fault kind -> the simulator's fault kind, per device.
FAULT_KINDS: dict[str, dict[str, str]] = {
    # Over a pty the Datex simulator's "unplug" sends nothing and reads nothing: a silent device.
    "monitor": {"unplug": "unplug", "silent": "unplug", "power_cycle": "power_cycle", "garble": "garble",
                "bad_checksum": "bad_checksum", "partial": "partial", "slow": "slow"},
    "pump": {"unplug": "unplug", "silent": "silent", "garble": "garble", "bad_checksum": "bad_crc",
             "bad_crc": "bad_crc", "partial": "partial", "slow": "slow"},
    # The Masimo line has no checksum and the oximeter is never asked anything: no bad_checksum, slow.
    "oximeter": {"unplug": "unplug", "silent": "silent", "garble": "garble", "partial": "partial"},
}
PUMP_PROTOCOLS = ("modbus", "ne500")
# Values the simulated pump starts with when the scenario leaves them open (not clinical: the
# engine judges what the pump reports against the order).
SIM_CONCENTRATION_MG_ML = 1.0
SIM_SYRINGE_ML = 50.0

StepSink = Callable[[Step], Awaitable[None]]


@dataclass
class Ports:
    """What a driver (or the daemon's config) should open for each simulated device."""

    monitor: str | None = None
    pump: str | None = None
    pump_protocol: str | None = None
    pump_pty: str | None = None  # the /dev/pts/N behind the pump's stable symlink
    oximeter: str | None = None

    def describe(self) -> list[str]:
        out = []
        if self.monitor:
            out.append(f"monitor (Datex S/5, 19200 8N1): {self.monitor}")
        if self.pump:
            behind = f" -> {self.pump_pty}" if self.pump_pty else ""
            out.append(f"pump ({self.pump_protocol}, 19200 8N1): {self.pump}{behind}")
        if self.oximeter:
            out.append(f"oximeter (Masimo, 9600 8N1): {self.oximeter}")
        return out


@dataclass
class StepOutcome:
    step: Step
    error: str | None  # None: accepted (or skipped, see ``skipped``)
    skipped: bool = False


@dataclass
class _Applied:
    """The pump programming last pushed into the model, to apply only what the course changed."""

    state: r.PumpState | None = None
    rate_ml_h: float | None = None
    drug: str | None = None
    concentration_mg_ml: float | None = None
    syringe_ml: float | None = None
    alarms: frozenset[r.DeviceAlarmCode] = field(default_factory=frozenset)


def check_faults(scenario: Scenario, devices: set[str]) -> None:
    """Refuse a scenario whose fault steps name a device or kind the simulators cannot play."""
    for step in scenario.steps:
        if step.action != "fault":
            continue
        device, kind = step.args.get("device"), step.args.get("kind")
        if device not in FAULT_KINDS:
            raise ScenarioError(f"fault at {step.at_s:g} s: device must be 'pump', 'monitor' or 'oximeter', "
                                f"got {device!r}")
        if kind not in FAULT_KINDS[device]:
            raise ScenarioError(f"fault at {step.at_s:g} s: {device} fault kind must be one of "
                                f"{', '.join(sorted(FAULT_KINDS[device]))}, got {kind!r}")
        if device not in devices:
            log.warning("fault at %g s on the %s: that device is not simulated in this run", step.at_s, device)


class ScenarioRunner:
    """The device side of one scenario. ``open()``, then ``play()``, then ``close()``.

    ``pump``: "modbus", "ne500" or None (no pump). ``pump_port`` / ``monitor_port`` /
    ``oximeter_port``: "pty", "tcp" or "tcp:PORT", a serial device path, or None (that device is
    not simulated; the oximeter is not, unless asked).
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        pump: str | None = "modbus",
        pump_port: str | None = "pty",
        monitor_port: str | None = "pty",
        oximeter_port: str | None = None,
        speed: float = 1.0,
        steps: StepSink | None = None,
        workdir: str | Path | None = None,
        ne500_safe_mode: bool = False,
        tick_s: float = 0.05,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        if pump is not None and pump not in PUMP_PROTOCOLS:
            raise ValueError(f"pump protocol must be one of {', '.join(PUMP_PROTOCOLS)}, got {pump!r}")
        self.scenario = scenario
        self.course = Course(scenario)
        self.pump_protocol = pump if pump_port else None
        self.pump_port = pump_port if pump else None
        self.monitor_port = monitor_port
        self.oximeter_port = oximeter_port
        self.ne500_safe_mode = ne500_safe_mode
        self.speed = speed
        self.steps = steps
        self.tick_s = tick_s
        self._mono = monotonic
        devices = {d for d, on in (("pump", self.pump_port), ("monitor", self.monitor_port),
                                   ("oximeter", self.oximeter_port)) if on}
        check_faults(scenario, devices)
        self._workdir = Path(workdir) if workdir else None
        self._own_workdir = False
        self.ports = Ports()
        self.monitor: DatexSimulator | None = None
        self.model: PumpModel | None = None
        self.pump_sim: Any = None
        self.endpoint: Endpoint | None = None
        self.oximeter: OximeterSimulator | None = None
        self._oximeter_endpoint: Endpoint | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._epoch = monotonic()
        self._t0: float | None = None
        self._stop = asyncio.Event()
        self._queue: asyncio.Queue[Step] = asyncio.Queue()
        self._applied = _Applied()
        self._faults_done = 0
        self._oximeter_alarms: frozenset[r.DeviceAlarmCode] = frozenset()
        self._next_nibp = 0.0
        self._nibp_measuring = False
        self.outcomes: list[StepOutcome] = []
        self.faults_injected: list[tuple[float, str, str]] = []  # (scenario s, device, kind)
        self.nibp_measurements: list[tuple[float, dict[r.Vital, float | None]]] = []
        self.on_outcome: Callable[[StepOutcome], None] | None = None

    # -- time -----------------------------------------------------------------------------

    def now(self) -> float:
        """Scenario seconds since ``play`` began (0 before)."""
        return 0.0 if self._t0 is None else (self._mono() - self._t0) * self.speed

    def _model_clock(self) -> float:
        # The pump integrates its volume on scenario time, so the syringe drains at the scenario's pace.
        return (self._mono() - self._epoch) * self.speed

    def real_s(self, scenario_s: float) -> float:
        return scenario_s / self.speed

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> Ports:
        """Open the simulated devices; returns what the drivers should open."""
        if self.monitor_port:
            transport, port = _transport(self.monitor_port)
            self.monitor = DatexSimulator(self._monitor_values, transport=transport, port=port, seed=self.scenario.seed)
            self.ports.monitor = await self.monitor.start()
        if self.pump_port and self.pump_protocol:
            p = self.scenario.pump
            self.model = PumpModel(
                clock=self._model_clock,
                rate_ml_h=p.rate_ml_h,
                drug=p.drug or "",
                concentration_mg_ml=p.concentration_mg_ml or SIM_CONCENTRATION_MG_ML,
                syringe_ml=p.syringe_ml or SIM_SYRINGE_ML,
                near_empty_ml=0.0,  # near-empty comes from the course, not from the model's own setting
            )
            self._applied = _Applied(state=r.PumpState.STOPPED, rate_ml_h=p.rate_ml_h, drug=p.drug,
                                     concentration_mg_ml=p.concentration_mg_ml, syringe_ml=p.syringe_ml)
            self.endpoint = await self._open_pump_endpoint(self.pump_port)
            if self.pump_protocol == "modbus":
                from monitord.simulators.pump_modbus_sim import ModbusPumpSim

                self.pump_sim = ModbusPumpSim(self.model, self.endpoint, seed=self.scenario.seed)
            else:
                from monitord.simulators.pump_ne500_sim import Ne500PumpSim

                self.pump_sim = Ne500PumpSim(self.model, self.endpoint, seed=self.scenario.seed,
                                             safe=self.ne500_safe_mode)
            self._tasks.append(asyncio.create_task(self.pump_sim.run(), name="pump-sim"))
            self.ports.pump = self.endpoint.url
            self.ports.pump_protocol = self.pump_protocol
            if isinstance(self.endpoint, PtyEndpoint) and self.endpoint.pty is not None:
                self.ports.pump_pty = self.endpoint.pty.path
        if self.oximeter_port:
            await self._open_oximeter(self.oximeter_port)
        return self.ports

    async def _open_oximeter(self, spec: str) -> None:
        # Its own line rate in real seconds: like the monitor's frames, the wire does not speed up.
        plan = self.scenario.oximeter
        self._oximeter_endpoint = await self._open_endpoint(spec, "oximeter", baudrate=9600)
        self.oximeter = OximeterSimulator(lambda _t: self.course.oximeter_at(), self._oximeter_endpoint,
                                          interval_s=plan.period_s if plan is not None else 1.0,
                                          seed=self.scenario.seed + 1)
        self._tasks.append(asyncio.create_task(self.oximeter.run(), name="oximeter-sim"))
        self.ports.oximeter = self._oximeter_endpoint.url

    async def _open_pump_endpoint(self, spec: str) -> Endpoint:
        return await self._open_endpoint(spec, "pump", baudrate=19200)

    async def _open_endpoint(self, spec: str, name: str, baudrate: int) -> Endpoint:
        """A pty behind a stable symlink ``<workdir>/<name>``, a TCP port or a serial device."""
        transport, port = _transport(spec)
        if transport == "pty":
            if self._workdir is None:
                self._workdir = Path(tempfile.mkdtemp(prefix="monitord-sim-"))
                self._own_workdir = True
            return PtyEndpoint(self._workdir / name)
        if transport == "tcp":
            return await TcpEndpoint(port=port).start()
        return SerialEndpoint(transport, baudrate=baudrate)

    async def close(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.monitor is not None:
            await self.monitor.stop()
        if self.endpoint is not None:
            self.endpoint.close()
        if self._oximeter_endpoint is not None:
            self._oximeter_endpoint.close()
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def stop(self) -> None:
        """End ``play`` early (from a signal handler or a test)."""
        self._stop.set()

    async def __aenter__(self) -> ScenarioRunner:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the timeline ---------------------------------------------------------------------

    async def play(self) -> bool:
        """Run the course to its end (True) or until ``stop()`` (False)."""
        self._t0 = self._mono()
        worker = asyncio.create_task(self._step_worker(), name="scenario-steps")
        ended = False
        try:
            while not self._stop.is_set():
                t = self.now()
                if t > self.scenario.duration_s:
                    ended = True
                    break
                for step in self.course.advance(t):
                    self._queue.put_nowait(step)
                self._sync_faults()
                self._sync_pump()
                self._sync_nibp(t)
                self._sync_oximeter()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.tick_s)
            if ended:  # let the last session steps reach the daemon
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._queue.join(), 20.0)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        return ended

    async def _step_worker(self) -> None:
        while True:
            step = await self._queue.get()
            try:
                outcome = await self._submit(step)
            finally:
                self._queue.task_done()
            self.outcomes.append(outcome)
            if outcome.error and not step.expect_refused:
                log.warning("step at %g s (%s) refused: %s", step.at_s, step.action, outcome.error)
            if self.on_outcome is not None:
                self.on_outcome(outcome)

    async def _submit(self, step: Step) -> StepOutcome:
        if self.steps is None:
            return StepOutcome(step, None, skipped=True)
        try:
            await self.steps(step)
        except SkipStep as exc:
            log.info("step at %g s (%s) skipped: %s", step.at_s, step.action, exc)
            return StepOutcome(step, None, skipped=True)
        except Exception as exc:  # a refusal from the engine or the link: recorded, the course goes on
            return StepOutcome(step, str(exc) or type(exc).__name__)
        return StepOutcome(step, None)

    # -- monitor --------------------------------------------------------------------------

    def _monitor_values(self, _real_t: float) -> dict[r.Vital, float | None]:
        """What the monitor shows in its next record (continuous values; NIBP is measured apart)."""
        c = self.course
        if self.monitor is not None:
            self.monitor.show_alarms(c.monitor_alarms)  # what the record can carry; the rest is not on the wire
        return c.vitals_at(c.t)

    def _sync_nibp(self, t: float) -> None:
        """NIBP on the scenario's cycle: a measuring phase, then the result, as a monitor does it."""
        sim = self.monitor
        if sim is None:
            return
        cycle = self.course.nibp_cycle_s
        if not math.isfinite(cycle):  # the cuff has stopped measuring
            return
        interval = max(1, sim.streaming_interval_s or 1)
        # The measuring flag must be on for at least one record so the driver sees a new measurement
        # even when the values repeat the last ones; never longer than half a cycle.
        measuring_s = min((2 * interval + 0.5) * self.speed, cycle / 2)
        if self._next_nibp > 0 and not self._nibp_measuring and t >= self._next_nibp - measuring_s:
            sim.flags.nibp_measuring = True
            self._nibp_measuring = True
        if t >= self._next_nibp:
            values = self.course.nibp_at(t)
            sbp, dbp, mean = values.get(r.Vital.SBP), values.get(r.Vital.DBP), values.get(r.Vital.MAP)
            if sbp is not None and dbp is not None and mean is not None:
                sim.measure_nibp(sbp, dbp, mean)
                self.nibp_measurements.append((t, values))
            sim.flags.nibp_measuring = False
            self._nibp_measuring = False
            while self._next_nibp <= t:
                self._next_nibp += cycle

    # -- oximeter -------------------------------------------------------------------------

    def _sync_oximeter(self) -> None:
        """The oximeter's alarms from ``oximeter_alarm`` steps: probe off (its values go to
        dashes), an unusable sensor, a low battery; codes its line cannot carry are logged once."""
        if self.oximeter is None:
            return
        alarms = self.course.oximeter_alarms
        if alarms != self._oximeter_alarms:
            lost = self.oximeter.show_alarms(alarms)
            if lost:
                log.warning("oximeter alarm(s) %s: not in the Masimo output, not shown",
                            ", ".join(sorted(c.value for c in lost)))
            self._oximeter_alarms = alarms

    # -- pump -----------------------------------------------------------------------------

    def _sync_pump(self) -> None:
        m, p, a = self.model, self.course.pump, self._applied
        if m is None:
            return
        if p.rate_ml_h != a.rate_ml_h:
            m.set_rate(float(p.rate_ml_h))
        if p.drug != a.drug and p.drug:
            m.drug = p.drug
        if p.concentration_mg_ml != a.concentration_mg_ml and p.concentration_mg_ml is not None:
            m.concentration_mg_ml = float(p.concentration_mg_ml)
        if p.syringe_ml != a.syringe_ml and p.syringe_ml is not None:
            m.syringe_ml = float(p.syringe_ml)
        for code in a.alarms - p.alarms:
            if code is r.DeviceAlarmCode.EMPTY:
                self._new_syringe()
            m.clear_alarm(code)
        for code in p.alarms - a.alarms:
            if code is r.DeviceAlarmCode.EMPTY:
                self._syringe_emptied()
            m.raise_alarm(code)
        if p.state != a.state:
            if p.state is r.PumpState.RUNNING:
                m.start()
            elif p.state is r.PumpState.PAUSED:
                m.pause()
            elif p.state is r.PumpState.BOLUS:
                m.bolus(float(p.bolus_ml or 0.0))
            else:
                m.stop()
        if r.DeviceAlarmCode.EMPTY not in p.alarms:
            self._keep_syringe_loaded()
        self._applied = _Applied(p.state, p.rate_ml_h, p.drug, p.concentration_mg_ml, p.syringe_ml, p.alarms)

    def _keep_syringe_loaded(self) -> None:
        """The course says when the syringe runs out; until then a nurse changes it in time.

        The volume infused keeps counting (the engine's dose comes from it); the volume to be
        infused grows by one syringe at each change.
        """
        m = self.model
        assert m is not None
        snap = m.snapshot()
        if snap.remaining_ml < m.syringe_ml / 2:
            m.loaded_ml += m.syringe_ml
            m.volume_to_be_infused_ml += m.syringe_ml

    def _syringe_emptied(self) -> None:
        # Empty exactly at the programmed volume: the NE-500 then ends its program normally (the
        # driver's EMPTY) instead of stalling (which it would report as an occlusion).
        m = self.model
        assert m is not None
        infused = m.snapshot().volume_infused_ml
        m.loaded_ml = infused
        m.volume_to_be_infused_ml = infused

    def _new_syringe(self) -> None:
        m = self.model
        assert m is not None
        infused = m.snapshot().volume_infused_ml
        m.loaded_ml = infused + m.syringe_ml
        m.volume_to_be_infused_ml = infused + m.syringe_ml

    # -- faults ---------------------------------------------------------------------------

    def _sync_faults(self) -> None:
        faults = self.course.faults
        while self._faults_done < len(faults):
            f = faults[self._faults_done]
            self._faults_done += 1
            kind = FAULT_KINDS[f.device][f.kind]
            real = self.real_s(f.duration_s)
            if f.device == "monitor" and self.monitor is not None:
                self.monitor.inject(kind, real)
            elif f.device == "pump" and self.model is not None:
                self.model.inject(kind, real)
            elif f.device == "oximeter" and self.oximeter is not None:
                self.oximeter.inject(kind, real)
            else:
                continue
            self.faults_injected.append((self.course.t, f.device, f.kind))
            log.info("fault %s on the %s for %.1f s (real)", f.kind, f.device, real)


class SkipStep(Exception):
    """A step the sink cannot pass on (e.g. an action the dashboard link has no command for)."""


def link_fields(step: Step) -> dict[str, Any] | None:
    """The dashboard-link command fields for a session/nurse step, or None if the link has no such command."""
    from monitord.link.protocol import COMMANDS

    if step.action not in COMMANDS:
        return None
    fields = dict(step.args)
    fields.setdefault("actor", "md-sim" if step.action == "override" else ACTOR)
    if step.action == "order":
        fields.setdefault("drug", "ketamine")
    elif step.action == "rescue":
        fields.setdefault("route", "iv")
    return fields


class LinkSteps:
    """Sends session/nurse steps to a running daemon as dashboard-link commands."""

    def __init__(self, client: Any, connect_wait_s: float = 30.0) -> None:
        self.client = client
        self.connect_wait_s = connect_wait_s

    async def __call__(self, step: Step) -> None:
        fields = link_fields(step)
        if fields is None:
            raise SkipStep(f"the dashboard link has no '{step.action}' command")
        loop = asyncio.get_running_loop()
        end = loop.time() + self.connect_wait_s
        while not self.client.connected and loop.time() < end:
            await asyncio.sleep(0.1)
        await self.client.command(step.action, **fields)


def _transport(spec: str) -> tuple[str, int]:
    """'pty' | 'tcp' | 'tcp:PORT' | a device path -> (transport, tcp port)."""
    if spec == "pty":
        return "pty", 0
    if spec == "tcp":
        return "tcp", 0
    if spec.startswith("tcp:"):
        try:
            return "tcp", int(spec[4:])
        except ValueError:
            raise ValueError(f"bad port spec {spec!r}: use tcp:PORT") from None
    return spec, 0
