"""A simulated Masimo Rad-series / Radical pulse oximeter writing its serial output ("ASCII 1").

The device side of ``drivers.masimo``: every ``interval_s`` it writes one line built from
``values_at(t) -> {Vital: value or None}`` (SpO2 and pulse rate; ``t`` = seconds since ``run``
began), with the same encoder the driver's decoder is tested against. It never reads: the real
oximeter takes no commands on this output.

What it shows: ``sim.exceptions`` (EXC bits, ``drivers.masimo.EXC_*``) and ``sim.alarm_bits``
(ALARM bits). ``show_alarms(codes)`` sets the bits for ``probe_off`` (sensor off the patient),
``sensor_off`` (a defective sensor) and ``low_battery``; ``probe_off(True)`` takes the sensor
off. While the sensor is off, absent or unusable the values are dashes, as on the oximeter.

Faults (``inject(kind, duration_s)``, ``clear_faults()``):
- ``unplug``: the port disappears (a pty endpoint: the driver's open port reads EIO, like a
  USB adapter pulled) and comes back under the same name when the fault ends;
- ``silent``: the cable is out at the oximeter: the port stays, nothing arrives;
- ``garble``: random bytes in place of a few characters of each line, and noise between lines;
- ``partial``: only the first half of each line is sent.

Run standalone: ``python -m monitord.simulators.oximeter_sim --pty /tmp/oximeter`` (or ``--tcp 5030``);
``--scenario NAME`` follows a scenario file's course (``follow``), as ``monitord demo --oximeter`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from monitord.drivers import masimo as mx
from monitord.readings import DeviceAlarmCode, Vital
from monitord.simulators.pump_endpoint import Endpoint, PtyEndpoint, TcpEndpoint

log = logging.getLogger(__name__)

ValuesAt = Callable[[float], Mapping[Vital, float | None]]
NO_VALUES = (mx.EXC_NO_SENSOR | mx.EXC_SENSOR_OFF | mx.EXC_NO_CABLE | mx.EXC_DEFECTIVE_SENSOR
             | mx.EXC_UNRECOGNIZED_SENSOR | mx.EXC_INCOMPATIBLE_SENSOR | mx.EXC_PULSE_SEARCH)


class Fault(StrEnum):
    UNPLUG = "unplug"
    SILENT = "silent"
    GARBLE = "garble"
    PARTIAL = "partial"


class OximeterSimulator:
    def __init__(
        self,
        values_at: ValuesAt,
        endpoint: Endpoint,
        *,
        model: str = "rad8",
        interval_s: float = 1.0,
        serial_number: str = "0000056661",
        seed: int = 0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = datetime.now,
    ) -> None:
        if model not in mx.MODELS:
            raise ValueError(f"model: one of {', '.join(mx.MODELS)}")
        self.values_at = values_at
        self.endpoint = endpoint
        self.model = model
        self.interval_s = interval_s
        self.serial_number = serial_number
        self.exceptions = mx.EXC_SET  # a SET sensor on a patient, clean signal
        self.alarm_bits = 0
        self.lines_sent = 0
        self._mono = monotonic
        self._wall = wall
        self._rng = random.Random(seed)
        self._faults: dict[Fault, float] = {}
        self._started = monotonic()
        self._unplug_task: asyncio.Task[None] | None = None

    # -- the scenario-facing API ------------------------------------------------------------

    def probe_off(self, off: bool = True) -> None:
        """Take the sensor off the patient (or put it back)."""
        self.exceptions = (self.exceptions | mx.EXC_SENSOR_OFF) if off else (self.exceptions & ~mx.EXC_SENSOR_OFF)

    def show_alarms(self, codes: Iterable[DeviceAlarmCode]) -> set[DeviceAlarmCode]:
        """Set the bits that make the driver report ``codes``; returns those it cannot show."""
        wanted = set(codes)
        self.exceptions &= ~(mx.EXC_SENSOR_OFF | mx.EXC_DEFECTIVE_SENSOR)
        if DeviceAlarmCode.PROBE_OFF in wanted:
            self.exceptions |= mx.EXC_SENSOR_OFF
        if DeviceAlarmCode.SENSOR_OFF in wanted:
            self.exceptions |= mx.EXC_DEFECTIVE_SENSOR
        self.alarm_bits = (self.alarm_bits | mx.ALARM_LOW_BATTERY) if DeviceAlarmCode.LOW_BATTERY in wanted \
            else (self.alarm_bits & ~mx.ALARM_LOW_BATTERY)
        return wanted - {DeviceAlarmCode.PROBE_OFF, DeviceAlarmCode.SENSOR_OFF, DeviceAlarmCode.LOW_BATTERY}

    def inject(self, kind: Fault | str, duration_s: float) -> None:
        """Start fault ``kind`` now for ``duration_s`` seconds (extends one already running)."""
        fault = Fault(kind)
        self._faults[fault] = max(self._mono() + duration_s, self._faults.get(fault, 0.0))
        if fault is Fault.UNPLUG and (self._unplug_task is None or self._unplug_task.done()):
            self._unplug_task = asyncio.get_running_loop().create_task(self._unplugged(duration_s))
        log.info("oximeter sim: fault %s for %.1f s", fault.value, duration_s)

    def clear_faults(self) -> None:
        self._faults.clear()

    def active_faults(self) -> set[Fault]:
        now = self._mono()
        return {f for f, end in self._faults.items() if end > now}

    async def send_raw(self, data: bytes) -> None:
        """Write ``data`` as it is (garbage, floods)."""
        await self.endpoint.write(data)

    # -- building lines ---------------------------------------------------------------------

    def record_now(self) -> mx.Record:
        v = self.values_at(self._mono() - self._started)
        blank = bool(self.exceptions & NO_VALUES)
        spo2, pulse = v.get(Vital.SPO2), v.get(Vital.PULSE)
        return mx.Record(
            time=self._wall().replace(microsecond=0),
            spo2=None if blank or spo2 is None else round(spo2),
            pulse=None if blank or pulse is None else round(pulse),
            pi=None if blank else 3.6,
            alarm=self.alarm_bits,
            exceptions=self.exceptions,
            serial=self.serial_number,
        )

    def line_now(self) -> bytes:
        """The next line, with the active byte-level faults applied."""
        line = mx.encode_line(self.record_now(), self.model)
        faults = self.active_faults()
        if Fault.GARBLE in faults:
            b = bytearray(line)
            for _ in range(self._rng.randint(1, 3)):
                b[self._rng.randrange(len(b) - 2)] = self._rng.randrange(256)
            line = self._rng.randbytes(self._rng.randint(1, 16)) + bytes(b)
        if Fault.PARTIAL in faults:
            line = line[: len(line) // 2]
        return line

    # -- the serving loop -------------------------------------------------------------------

    async def run(self) -> None:
        self._started = self._mono()
        next_due = self._started
        try:
            while True:
                next_due += self.interval_s
                await asyncio.sleep(max(0.0, next_due - self._mono()))
                if next_due < self._mono() - self.interval_s:  # fell behind: keep the cadence from now
                    next_due = self._mono()
                if self.active_faults() & {Fault.UNPLUG, Fault.SILENT}:
                    continue
                await self.endpoint.write(self.line_now())
                self.lines_sent += 1
        finally:
            if self._unplug_task is not None:
                self._unplug_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._unplug_task

    async def _unplugged(self, duration_s: float) -> None:
        await self.endpoint.unplug(duration_s)


async def follow(sim: OximeterSimulator, course: Any, speed: float = 1.0, step_s: float = 0.1) -> None:
    """Make ``sim`` show what a scenario's ``Course`` says, as scenario time passes at ``speed``:
    its SpO2 and pulse rate (``course.oximeter_at``), ``oximeter_alarm`` steps (``probe_off``,
    ``sensor_off``, ``low_battery``) and ``fault`` steps on the ``oximeter`` (each ``inject``-ed
    once, for its duration at this speed)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    injected: set[int] = set()
    while True:
        t = (loop.time() - start) * speed
        course.advance(t)
        sim.show_alarms(course.oximeter_alarms)
        for i, f in enumerate(course.faults):
            if f.device == "oximeter" and i not in injected and f.active(t):
                injected.add(i)
                with contextlib.suppress(ValueError):  # a kind this simulator does not play
                    sim.inject(f.kind, (f.start_s + f.duration_s - t) / speed)
        await asyncio.sleep(step_s)


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pty", help="symlink to create for the pty (the driver's port)")
    parser.add_argument("--tcp", type=int, help="TCP port to listen on (driver: socket://127.0.0.1:PORT)")
    parser.add_argument("--model", choices=mx.MODELS, default="rad8")
    parser.add_argument("--spo2", type=float, default=97.0)
    parser.add_argument("--pulse", type=float, default=72.0)
    parser.add_argument("--scenario", metavar="FILE|NAME",
                        help="follow a scenario's SpO2, pulse rate, oximeter alarms and faults (instead of --spo2/--pulse)")
    parser.add_argument("--speed", type=float, default=1.0, help="with --scenario: scenario seconds per real second")
    args = parser.parse_args()
    endpoint: Endpoint = await TcpEndpoint(port=args.tcp).start() if args.tcp \
        else PtyEndpoint(args.pty or "/tmp/monitord-oximeter")
    print(f"Masimo oximeter simulator on {endpoint.url}", flush=True)
    if args.scenario:
        from monitord.scenario import Course, find_scenario, load_scenario

        scenario = load_scenario(find_scenario(args.scenario))
        course = Course(scenario)
        interval = scenario.oximeter.period_s if scenario.oximeter is not None else 1.0
        sim = OximeterSimulator(lambda t: course.oximeter_at(), endpoint, model=args.model,
                                interval_s=interval / args.speed if args.speed > 0 else interval)
        await asyncio.gather(sim.run(), follow(sim, course, args.speed))
        return
    values = {Vital.SPO2: args.spo2, Vital.PULSE: args.pulse}
    await OximeterSimulator(lambda t: values, endpoint, model=args.model).run()


if __name__ == "__main__":
    asyncio.run(_main())
