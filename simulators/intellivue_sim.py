"""A simulated Philips IntelliVue monitor speaking Data Export on its MIB/RS-232 port, byte for byte.

The device side of ``drivers.intellivue``: it answers an Association Request with an Accept and
its MDS Create Event Report, waits for the client's MDS Create Result, then answers every
(extended) poll for numerics or for the alert monitor with a poll result built from
``values_at(t) -> {Vital: value or None}`` (``t`` = seconds since ``start``), the same vitals
source the Datex simulator and the scenario runner use. A Release Request is answered with a
Release Result; an association the client leaves without a message for ``assoc_timeout_s``
(10 s, the monitor's own time-out for poll periods under 3.3 s) is aborted, as the monitor does.

NIBP: ``measure_nibp(sys, dia, mean)`` completes a measurement now (its numeric carries that
time stamp); ``values_at`` returning new SBP/DBP/MAP counts as a measurement too.
``flags.nibp_measuring`` sets MSMT_ONGOING on the NIBP numeric.

Device alarms: ``show_alarms(codes)`` puts the alerts that stand for ``DeviceAlarmCode`` values
in the alarm lists: apnoea (NOM_EVT_APNEA, a P-alarm), leads off (NOM_EVT_LEAD_DISCONN, ECG
values invalid), probe off (NOM_EVT_SENSOR_DISCONN from SpO2, SpO2 and pulse invalid), sensor off
(NOM_EVT_SENSOR_DISCONN from CO2); it returns the codes the lists cannot carry.
``units[vital] = unit code`` sends that vital in another unit (kPa, degrees Fahrenheit, or one the
driver does not know).

Faults (``inject(kind, duration_s)``, ``clear_faults()``), for the scenario runner:
- ``unplug``: the port disappears (a pty: the driver's open port reads EIO, as when a USB adapter
  is pulled) and comes back under the same name when the fault ends;
- ``silent``: the cable is out at the monitor: nothing is sent, what the host sends is lost;
- ``power_cycle``: as ``silent``, and the monitor forgets the association;
- ``garble``, ``bad_checksum``, ``partial``, ``slow``: each frame sent is damaged, carries a wrong
  FCS, is cut in half, or trickles out in ``slow_chunk`` byte pieces.

Run standalone: ``python -m monitord.simulators.intellivue_sim --pty /tmp/intellivue``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import random
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from monitord.drivers import intellivue as iv
from monitord.drivers import intellivue_frame as ivf
from monitord.readings import DeviceAlarmCode, Vital
from monitord.simulators.pump_endpoint import Endpoint, PtyEndpoint, TcpEndpoint
from monitord.simulators.scenario_runner import Ports, ScenarioRunner

log = logging.getLogger(__name__)

ValuesAt = Callable[[float], Mapping[Vital, float | None]]
ASSOC_TIMEOUT_S = 10.0

# The numerics the simulated monitor has: (object handle, physio id, unit)
NUMERICS: dict[Vital, tuple[int, int, int]] = {
    Vital.HR: (0x0101, iv.NOM_ECG_CARD_BEAT_RATE, iv.NOM_DIM_BEAT_PER_MIN),
    Vital.SPO2: (0x0102, iv.NOM_PULS_OXIM_SAT_O2, iv.NOM_DIM_PERCENT),
    Vital.PULSE: (0x0103, iv.NOM_PLETH_PULS_RATE, iv.NOM_DIM_BEAT_PER_MIN),
    Vital.RR: (0x0105, iv.NOM_AWAY_RESP_RATE, iv.NOM_DIM_RESP_PER_MIN),
    Vital.ETCO2: (0x0106, iv.NOM_AWAY_CO2_ET, iv.NOM_DIM_MMHG),
    Vital.TEMP: (0x0107, iv.NOM_TEMP, iv.NOM_DIM_DEGC),
}
NIBP_HANDLE = 0x0104
ALERT_HANDLE = 0x0001
_NIBP_VITALS = (Vital.SBP, Vital.DBP, Vital.MAP)
_NIBP_IDS = (iv.NOM_PRESS_BLD_NONINV_SYS, iv.NOM_PRESS_BLD_NONINV_DIA, iv.NOM_PRESS_BLD_NONINV_MEAN)

ALERTS: dict[DeviceAlarmCode, iv.AlarmEntry] = {
    DeviceAlarmCode.APNOEA: iv.AlarmEntry(iv.NOM_AWAY_RESP_RATE, iv.NOM_EVT_APNEA, iv.HI_PRI_P_AL, 0, "APNEA"),
    DeviceAlarmCode.LEADS_OFF: iv.AlarmEntry(iv.NOM_ECG_CARD_BEAT_RATE, iv.NOM_EVT_LEAD_DISCONN, iv.MED_PRI_T_AL, 0,
                                             "LEADS OFF"),
    DeviceAlarmCode.PROBE_OFF: iv.AlarmEntry(iv.NOM_PULS_OXIM_SAT_O2, iv.NOM_EVT_SENSOR_DISCONN, iv.MED_PRI_T_AL, 0,
                                             "SpO2 NO SENSOR"),
    DeviceAlarmCode.SENSOR_OFF: iv.AlarmEntry(iv.NOM_AWAY_CO2_ET, iv.NOM_EVT_SENSOR_DISCONN, iv.MED_PRI_T_AL, 0,
                                              "CO2 NO SENSOR"),
}


class Fault(StrEnum):
    UNPLUG = "unplug"
    SILENT = "silent"
    POWER_CYCLE = "power_cycle"
    GARBLE = "garble"
    BAD_CHECKSUM = "bad_checksum"
    PARTIAL = "partial"
    SLOW = "slow"


class State(StrEnum):
    IDLE = "idle"
    WAIT_MDS_RESULT = "wait_mds_result"
    ASSOCIATED = "associated"


@dataclass
class SimFlags:
    nibp_measuring: bool = False


class IntelliVueSimulator:
    def __init__(
        self,
        values_at: ValuesAt,
        endpoint: Endpoint | None = None,
        *,
        seed: int = 0,
        assoc_timeout_s: float = ASSOC_TIMEOUT_S,
        slow_chunk: int = 16,
        slow_delay_s: float = 0.05,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.values_at = values_at
        self.endpoint = endpoint
        self.assoc_timeout_s = assoc_timeout_s
        self.slow_chunk = slow_chunk
        self.slow_delay_s = slow_delay_s
        self.flags = SimFlags()
        self.units: dict[Vital, int] = {}
        self.alarms: set[DeviceAlarmCode] = set()
        self.state = State.IDLE
        self.path = ""
        self._mono = monotonic
        self._wall = wall
        self._rng = random.Random(seed)
        self._decoder = iv.MessageDecoder()
        self._faults: dict[Fault, float] = {}
        self._started = monotonic()
        self._last_host = monotonic()
        self._invoke = 0
        self._nibp: tuple[float, float, float] | None = None
        self._nibp_time: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        self._unplug_task: asyncio.Task[None] | None = None
        self._tmpdir: Path | None = None
        # counters, for tests and scenario logs
        self.assoc_requests = 0
        self.associations = 0
        self.mds_results = 0
        self.polls = 0
        self.polls_ignored = 0
        self.numeric_results = 0
        self.alarm_results = 0
        self.releases = 0
        self.aborts_sent = 0
        self.aborts_received = 0
        self.bytes_dropped = 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> str:
        """Open the port (a pty behind a stable symlink, unless an endpoint was given) and serve;
        returns the path a driver should open."""
        if self.endpoint is None:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="monitord-intellivue-"))
            self.endpoint = PtyEndpoint(self._tmpdir / "intellivue")
        self._started = self._mono()
        self.path = self.endpoint.url
        self._task = asyncio.create_task(self._run(), name="intellivue-sim")
        return self.path

    async def stop(self) -> None:
        for task in (self._task, self._unplug_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._unplug_task = None
        if self.endpoint is not None:
            self.endpoint.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    # -- the scenario-facing API -----------------------------------------------------------

    def inject(self, kind: Fault | str, duration_s: float) -> None:
        """Start fault ``kind`` now for ``duration_s`` seconds (extends one already running)."""
        fault = Fault(kind)
        self._faults[fault] = max(self._mono() + duration_s, self._faults.get(fault, 0.0))
        if fault is Fault.POWER_CYCLE:
            self.state = State.IDLE
        if fault is Fault.UNPLUG and self.endpoint is not None and (
                self._unplug_task is None or self._unplug_task.done()):
            self._unplug_task = asyncio.get_running_loop().create_task(self.endpoint.unplug(duration_s))
        log.info("intellivue sim: fault %s for %.1f s", fault.value, duration_s)

    def clear_faults(self) -> None:
        self._faults.clear()

    def active_faults(self) -> set[Fault]:
        now = self._mono()
        return {f for f, end in self._faults.items() if end > now}

    @property
    def deaf(self) -> bool:
        return bool(self.active_faults() & {Fault.UNPLUG, Fault.SILENT, Fault.POWER_CYCLE})

    @property
    def streaming_interval_s(self) -> int:
        """1 while a client polls (the monitor serves a poll a second), else 0."""
        return 1 if self.state is State.ASSOCIATED else 0

    def measure_nibp(self, sys: float, dia: float, mean: float) -> None:
        self._nibp = (sys, dia, mean)
        self._nibp_time = self._wall().replace(microsecond=0)
        self.flags.nibp_measuring = False

    def clear_nibp(self) -> None:
        self._nibp = None
        self._nibp_time = None

    def show_alarms(self, codes: Iterable[DeviceAlarmCode]) -> set[DeviceAlarmCode]:
        wanted = set(codes)
        self.alarms = wanted & set(ALERTS)
        return wanted - set(ALERTS)

    async def send_raw(self, data: bytes) -> None:
        if self.endpoint is not None:
            await self.endpoint.write(data)

    # -- building messages ----------------------------------------------------------------------

    def _rel_time(self) -> int:
        return int((self._mono() - self._started) * iv.TICKS_PER_S) & 0xFFFFFFFF

    def numeric_observations(self) -> list[iv.Observation]:
        now = self._wall().replace(microsecond=0)
        v = dict(self.values_at(self._mono() - self._started))
        nibp_in = tuple(v.get(x) for x in _NIBP_VITALS)
        if all(x is not None for x in nibp_in) and nibp_in != self._nibp:
            self.measure_nibp(*(float(x or 0.0) for x in nibp_in))
        out = []
        stamp = iv.encode_abs_time(now)
        for vital, (handle, physio, unit) in NUMERICS.items():
            value = v.get(vital)
            state = 0
            if (vital is Vital.HR and DeviceAlarmCode.LEADS_OFF in self.alarms) or (
                    vital in (Vital.SPO2, Vital.PULSE) and DeviceAlarmCode.PROBE_OFF in self.alarms):
                value, state = None, iv.MS_INVALID
            if value is None:
                value, state = math.nan, state | iv.MS_UNAVAILABLE
            else:
                value, unit = self._in_unit(vital, float(value), unit)
            out.append(iv.Observation(0, handle, {iv.NOM_ATTR_NU_VAL_OBS: iv.encode_nu_obs(physio, value, unit, state),
                                                  iv.NOM_ATTR_TIME_STAMP_ABS: stamp}))
        if self._nibp is not None:
            state = iv.MS_MSMT_ONGOING if self.flags.nibp_measuring else 0
            parts = []
            for physio, x in zip(_NIBP_IDS, self._nibp, strict=True):
                value, unit = self._in_unit(Vital.SBP, x, iv.NOM_DIM_MMHG)
                parts.append((physio, value, unit, state))
            out.append(iv.Observation(0, NIBP_HANDLE, {iv.NOM_ATTR_NU_CMPD_VAL_OBS: iv.encode_nu_cmpd(parts),
                                                       iv.NOM_ATTR_TIME_STAMP_ABS: iv.encode_abs_time(self._nibp_time)}))
        return out

    def _in_unit(self, vital: Vital, value: float, unit: int) -> tuple[float, int]:
        wanted = self.units.get(vital)
        if wanted is None or wanted == unit:
            return round(value, 2), unit
        if wanted == iv.NOM_DIM_KILO_PASCAL:
            return round(value * 101.325 / 760.0, 2), wanted
        if wanted == iv.NOM_DIM_FAHR:
            return round(value * 9.0 / 5.0 + 32.0, 1), wanted
        return round(value, 2), wanted  # a unit the driver must not trust: the number unchanged

    def alert_observations(self) -> list[iv.Observation]:
        p = [ALERTS[c] for c in sorted(self.alarms) if ALERTS[c].type >= iv.LOW_PRI_P_AL]
        t = [ALERTS[c] for c in sorted(self.alarms) if ALERTS[c].type < iv.LOW_PRI_P_AL]
        max_p = max((e.type for e in p), default=iv.NO_ALERT)
        max_t = max((e.type for e in t), default=iv.NO_ALERT)
        cond = struct.pack(">HHHHH", 0, 0, max_p, max_t, max(max_p, max_t))
        return [iv.Observation(0, ALERT_HANDLE, {iv.NOM_ATTR_DEV_AL_COND: cond,
                                                 iv.NOM_ATTR_AL_MON_P_AL_LIST: iv.encode_alarm_list(p),
                                                 iv.NOM_ATTR_AL_MON_T_AL_LIST: iv.encode_alarm_list(t)})]

    # -- serving ------------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self.endpoint is not None
        while True:
            data = await self.endpoint.read(0.1)
            now = self._mono()
            if self.state is not State.IDLE and now - self._last_host > self.assoc_timeout_s and not self.deaf:
                log.info("intellivue sim: no message for %.0f s, aborting the association", now - self._last_host)
                await self._send(iv.encode_abort())
                self.aborts_sent += 1
                self.state = State.IDLE
            if not data or self.deaf:
                if data:
                    self.bytes_dropped += len(data)
                continue
            for item in self._decoder.feed(data):
                if isinstance(item, (ivf.FrameError, iv.MessageFault)):
                    continue
                self._last_host = self._mono()
                await self._on_message(item)

    async def _on_message(self, m: iv.Message) -> None:
        if isinstance(m, iv.AssocRequest):
            self.assoc_requests += 1
            if not m.user.system_type & iv.SYST_CLIENT:
                await self._send(iv.encode_refuse())
                return
            user = iv.UserInfo(system_type=iv.SYST_SERVER, min_poll_period=m.user.min_poll_period,
                               max_mtu_rx=min(m.user.max_mtu_rx, iv.MAX_MTU_RS232),
                               max_mtu_tx=min(m.user.max_mtu_tx, iv.MAX_MTU_RS232),
                               ext_options=iv.POLL_EXT_PERIOD_NU_1SEC if m.user.ext_options else None)
            await self._send(iv.encode_assoc_response(user))
            self.associations += 1
            self._invoke = (self._invoke + 1) & 0xFFFF
            attrs = [(iv.NOM_ATTR_TIME_ABS, iv.encode_abs_time(self._wall())),
                     (iv.NOM_ATTR_TIME_REL, struct.pack(">I", self._rel_time()))]
            await self._send(iv.encode_mds_create_event(self._invoke, self._rel_time(), attrs))
            self.state = State.WAIT_MDS_RESULT
        elif isinstance(m, iv.MdsCreateResult):
            if self.state is State.WAIT_MDS_RESULT:
                self.mds_results += 1
                self.state = State.ASSOCIATED
        elif isinstance(m, iv.PollRequest):
            if self.state is not State.ASSOCIATED:
                self.polls_ignored += 1
                return
            self.polls += 1
            if m.obj_code == iv.NOM_MOC_VMO_METRIC_NU:
                obs = self.numeric_observations()
                self.numeric_results += 1
            elif m.obj_code == iv.NOM_MOC_VMO_AL_MON:
                obs = self.alert_observations()
                self.alarm_results += 1
            else:
                await self._send(iv.encode_error(m.invoke_id, iv.NO_SUCH_OBJECT_CLASS))
                return
            await self._send(iv.encode_poll_result(m.invoke_id, m.poll_number, m.obj_code, obs,
                                                   rel_time=self._rel_time(), abs_time=self._wall(),
                                                   attr_group=m.attr_group, extended=m.extended))
        elif isinstance(m, iv.ReleaseRequest):
            await self._send(iv.encode_release_response())
            self.releases += 1
            self.state = State.IDLE
        elif isinstance(m, iv.Abort):
            self.aborts_received += 1
            self.state = State.IDLE

    def frame_of(self, message: bytes) -> bytes:
        faults = self.active_faults()
        data = ivf.encode_frame(message, bad_fcs=Fault.BAD_CHECKSUM in faults)
        if Fault.GARBLE in faults:
            b = bytearray(data)
            for _ in range(self._rng.randint(1, 3)):
                b[self._rng.randrange(1, len(b) - 1)] ^= self._rng.randint(1, 255)
            data = self._rng.randbytes(self._rng.randint(1, 16)) + bytes(b)
        if Fault.PARTIAL in faults:
            data = data[: len(data) // 2]
        return data

    async def _send(self, message: bytes) -> None:
        if self.endpoint is None or self.deaf:
            return
        data = self.frame_of(message)
        if Fault.SLOW in self.active_faults():
            for i in range(0, len(data), self.slow_chunk):
                await self.endpoint.write(data[i : i + self.slow_chunk])
                await asyncio.sleep(self.slow_delay_s)
        else:
            await self.endpoint.write(data)


# --- the scenario runner with this monitor -----------------------------------------------------


class IntelliVuePorts(Ports):
    def describe(self) -> list[str]:
        out = super().describe()
        return [line.replace("monitor (Datex S/5, 19200 8N1)", "monitor (Philips IntelliVue, 115200 8N1)")
                for line in out]


class IntelliVueScenarioRunner(ScenarioRunner):
    """``ScenarioRunner`` with the IntelliVue simulator as the monitor: the same course, vitals,
    NIBP cycle, device alarms and faults."""

    async def open(self) -> Ports:
        port, self.monitor_port = self.monitor_port, None
        try:
            await super().open()
        finally:
            self.monitor_port = port
        self.ports = IntelliVuePorts(**vars(self.ports))
        if port:
            endpoint = await self._open_endpoint(port, "monitor", baudrate=115200)
            sim = IntelliVueSimulator(self._monitor_values, endpoint, seed=self.scenario.seed)
            self.monitor = sim  # type: ignore[assignment]  # the runner uses the same API
            self.ports.monitor = await sim.start()
        return self.ports


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pty", help="symlink to create for the pty (the driver's port)")
    parser.add_argument("--tcp", type=int, help="TCP port to listen on (driver: socket://127.0.0.1:PORT)")
    args = parser.parse_args()
    endpoint: Endpoint = await TcpEndpoint(port=args.tcp).start() if args.tcp \
        else PtyEndpoint(args.pty or "/tmp/monitord-intellivue")
    values: dict[Vital, float | None] = {Vital.HR: 72.0, Vital.SPO2: 97.0, Vital.PULSE: 71.0, Vital.RR: 14.0,
                                         Vital.ETCO2: 38.0, Vital.TEMP: 36.8}
    sim = IntelliVueSimulator(lambda t: values, endpoint)
    print(f"IntelliVue simulator on {await sim.start()}", flush=True)
    sim.measure_nibp(120, 80, 93)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_main())
