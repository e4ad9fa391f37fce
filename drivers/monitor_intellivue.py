"""Patient monitor driver: Philips IntelliVue Data Export over RS-232 (the MIB port).

The Computer Client speaks first. On connect the driver sends an Association Request; the
monitor accepts, sends the MDS Create Event Report (with its clock) and the driver answers with
the MDS Create Result. From then on, every ``poll_interval_s`` (at least 1 s: the monitor
serves one poll per object type a second), the driver sends an extended poll for the numerics
and one for the alert monitor; the replies are read as they arrive (``loop.add_reader`` on the
port's file descriptor). The polls also keep the association alive (the monitor drops an
association it hears nothing on for 10 s). The messages live in ``drivers.intellivue``.

Re-association: no valid reply for ``reassociate_after_s`` (two poll intervals and a second),
an Abort or a Refuse from the monitor, or an error reply, and the driver asks again (an Abort
first, for an association the monitor may still hold). A port that disappears is a lost link:
the base class reconnects with backoff and the connect associates again. On shutdown the driver
sends a Release Request and waits briefly for the result.

What the driver reports (see docs/devices.md, "Philips IntelliVue"):
- ``VitalsReading`` per numerics poll result: HR (ECG), SpO2, pulse rate (pleth), NIBP
  systolic/diastolic/mean, RR (airway, else impedance), EtCO2, temperature, each in the quality
  its MeasurementState gives (INVALID/UNAVAILABLE/test or demo data or a special FLOAT value:
  ``None``, INVALID; QUESTIONABLE, calibrating or an early estimate: QUESTIONABLE). Values in
  kPa or degrees Fahrenheit are converted; a unit the driver does not know withholds the value
  (``None``, INVALID) and raises IMPLAUSIBLE.
- ``device_time``: the poll result's time stamp; ``nibp_time``: the NIBP numeric's own time
  stamp. The monitor's clock has no time zone: both are mapped to UTC through the offset
  between the monitor's clock and the host's, taken at association (and kept while it agrees
  within 2 s). An NIBP without its own time stamp is withheld (its age is unknown).
- ``DeviceAlarm`` from the alert monitor's alarm lists: APNOEA (NOM_EVT_APNEA), LEADS_OFF
  (NOM_EVT_LEAD_DISCONN, NOM_EVT_LEADS_OFF), PROBE_OFF (NOM_EVT_SENSOR_DISCONN from SpO2),
  SENSOR_OFF (a sensor or tube disconnected/occluded from another source), IMPLAUSIBLE (a unit
  the driver does not know); on the first results after each association and on every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import serial

from monitord.config import MonitorDevice
from monitord.drivers import intellivue as iv
from monitord.drivers import intellivue_frame as ivf
from monitord.drivers.base import Driver, Emit, FrameDelay, PortReader, open_serial
from monitord.readings import DeviceAlarm, DeviceAlarmCode, DeviceRole, Quality, Vital, VitalsReading

log = logging.getLogger(__name__)

DEFAULT_BAUDRATE = 115200  # the MIB/RS232 port's fixed-baudrate protocol (docs/devices.md)
WRITE_TIMEOUT_S = 0.3
RELEASE_WAIT_S = 1.0  # on shutdown, how long to wait for the Release Result
CLOCK_TOLERANCE_S = 2.0  # the monitor/host clock offset is kept while new estimates agree this well
KPA_TO_MMHG = 760.0 / 101.325

# physio id -> vital; a vital with several sources takes the first one present in this order
VITAL_SOURCES: dict[Vital, tuple[int, ...]] = {
    Vital.HR: (iv.NOM_ECG_CARD_BEAT_RATE,),
    Vital.SPO2: (iv.NOM_PULS_OXIM_SAT_O2,),
    Vital.PULSE: (iv.NOM_PLETH_PULS_RATE,),
    Vital.SBP: (iv.NOM_PRESS_BLD_NONINV_SYS,),
    Vital.DBP: (iv.NOM_PRESS_BLD_NONINV_DIA,),
    Vital.MAP: (iv.NOM_PRESS_BLD_NONINV_MEAN,),
    Vital.RR: (iv.NOM_AWAY_RESP_RATE, iv.NOM_RESP_RATE),
    Vital.ETCO2: (iv.NOM_AWAY_CO2_ET,),
    Vital.TEMP: (iv.NOM_TEMP, iv.NOM_TEMP_CORE, iv.NOM_TEMP_ESOPH, iv.NOM_TEMP_NASOPH, iv.NOM_TEMP_ART,
                 iv.NOM_TEMP_SKIN),
}
NIBP_IDS = frozenset((iv.NOM_PRESS_BLD_NONINV_SYS, iv.NOM_PRESS_BLD_NONINV_DIA, iv.NOM_PRESS_BLD_NONINV_MEAN))

# the unit each vital is reported in, and the units converted to it
_PER_MIN = {iv.NOM_DIM_BEAT_PER_MIN: 1.0, iv.NOM_DIM_RESP_PER_MIN: 1.0, 0x09E0: 1.0, 0x0AC0: 1.0}
_PRESSURE = {iv.NOM_DIM_MMHG: 1.0, iv.NOM_DIM_KILO_PASCAL: KPA_TO_MMHG}
UNITS: dict[Vital, dict[int, float]] = {
    Vital.HR: _PER_MIN, Vital.PULSE: _PER_MIN, Vital.RR: _PER_MIN,
    Vital.SPO2: {iv.NOM_DIM_PERCENT: 1.0},
    Vital.SBP: _PRESSURE, Vital.DBP: _PRESSURE, Vital.MAP: _PRESSURE, Vital.ETCO2: _PRESSURE,
    Vital.TEMP: {iv.NOM_DIM_DEGC: 1.0},  # Fahrenheit is handled apart (an offset, not a factor)
}

_INVALID_STATE = iv.MS_INVALID | iv.MS_UNAVAILABLE | iv.MS_TEST_DATA | iv.MS_DEMO_DATA
_DOUBTFUL_STATE = iv.MS_QUESTIONABLE | iv.MS_CALIBRATION_ONGOING | iv.MS_EARLY_INDICATION

SPO2_SOURCES = frozenset((iv.NOM_PULS_OXIM_SAT_O2, iv.NOM_PULS_OXIM_PLETH, iv.NOM_PLETH_PULS_RATE))


class Phase(StrEnum):
    IDLE = "idle"  # nothing sent yet (or the association ended)
    ASSOCIATING = "associating"  # request sent, no answer yet
    WAIT_MDS = "wait_mds"  # accepted, waiting for the MDS Create Event
    ASSOCIATED = "associated"  # polling



NumericsByPhysio = dict[int, tuple[iv.NuObsValue, datetime | None]]


def numerics_of(result: iv.PollResult) -> NumericsByPhysio:
    """Each numeric in a poll result, by physio id, with its object's own absolute time stamp
    (the first object that carries a physio id wins). Raises ``iv.MessageError`` if malformed."""
    out: NumericsByPhysio = {}
    for obs in result.observations:
        raw_stamp = obs.attributes.get(iv.NOM_ATTR_TIME_STAMP_ABS)
        stamp = iv.decode_abs_time(raw_stamp) if raw_stamp is not None else None
        values: list[iv.NuObsValue] = []
        raw = obs.attributes.get(iv.NOM_ATTR_NU_VAL_OBS)
        if raw is not None:
            values.append(iv.decode_nu_obs(raw))
        raw = obs.attributes.get(iv.NOM_ATTR_NU_CMPD_VAL_OBS)
        if raw is not None:
            values += iv.decode_nu_cmpd(raw)
        for v in values:
            out.setdefault(v.physio_id, (v, stamp))
    return out


def value_of(vital: Vital, nu: iv.NuObsValue) -> tuple[float | None, Quality, str]:
    """A numeric -> (value in monitord's unit, quality, the unit problem if any)."""
    x = nu.value
    if nu.state & _INVALID_STATE or not math.isfinite(x):
        return None, Quality.INVALID, ""
    if vital is Vital.TEMP and nu.unit == iv.NOM_DIM_FAHR:
        x = round((x - 32.0) * 5.0 / 9.0, 2)
    else:
        factor = UNITS[vital].get(nu.unit)
        if factor is None:
            return None, Quality.INVALID, f"{vital.value} sent in unit {nu.unit:#06x}: withheld"
        if factor != 1.0:
            x = round(x * factor, 1)
    quality = Quality.QUESTIONABLE if nu.state & _DOUBTFUL_STATE else Quality.VALID
    return x, quality, ""


def readings_of(
    name: str,
    nums: NumericsByPhysio,
    *,
    device_time: datetime | None,
    to_utc: Callable[[datetime | None], datetime | None],
    age_s: float = 0.0,
) -> tuple[list[VitalsReading], list[str], bool]:
    """One numerics poll result -> (one reading per quality, unit problems, NIBP withheld?).

    A vital the monitor has no numeric for is left out (the reading says nothing about it)."""
    by_quality: dict[Quality, dict[Vital, float | None]] = {q: {} for q in Quality}
    problems: list[str] = []
    nibp_time: datetime | None = None
    nibp_withheld = False
    for vital, sources in VITAL_SOURCES.items():
        found = next((nums[p] for p in sources if p in nums), None)
        if found is None:
            continue
        nu, stamp = found
        if nu.physio_id in NIBP_IDS:
            when = to_utc(stamp)
            if when is None:
                nibp_withheld = True
                continue
            nibp_time = when
        value, quality, problem = value_of(vital, nu)
        if problem:
            problems.append(problem)
        by_quality[quality][vital] = value
    out = []
    for quality, values in by_quality.items():
        if values:
            has_nibp = any(v in values for v in (Vital.SBP, Vital.DBP, Vital.MAP))
            out.append(VitalsReading(name, values, quality, device_time, nibp_time if has_nibp else None, age_s))
    return out, problems, nibp_withheld


def alert_codes(entries: list[iv.AlarmEntry]) -> tuple[set[DeviceAlarmCode], list[str]]:
    """The device alarms an alert monitor's alarm lists show, with readable details."""
    codes: set[DeviceAlarmCode] = set()
    details: list[str] = []

    def add(code: DeviceAlarmCode, detail: str, e: iv.AlarmEntry) -> None:
        codes.add(code)
        details.append(detail + (f" ({e.text})" if e.text else ""))

    for e in entries:
        if e.code == iv.NOM_EVT_APNEA:
            add(DeviceAlarmCode.APNOEA, "monitor reports apnoea", e)
        elif e.code in (iv.NOM_EVT_LEAD_DISCONN, iv.NOM_EVT_LEADS_OFF):
            add(DeviceAlarmCode.LEADS_OFF, "ECG lead off", e)
        elif e.code == iv.NOM_EVT_SENSOR_DISCONN and e.source in SPO2_SOURCES:
            add(DeviceAlarmCode.PROBE_OFF, "SpO2 sensor disconnected", e)
        elif e.code == iv.NOM_EVT_SENSOR_DISCONN:
            add(DeviceAlarmCode.SENSOR_OFF, f"sensor disconnected (source {e.source:#06x})", e)
        elif e.code in (iv.NOM_EVT_TUBE_DISCONN, iv.NOM_EVT_TUBE_OCCL):
            add(DeviceAlarmCode.SENSOR_OFF, f"sampling line {'occluded' if e.code == iv.NOM_EVT_TUBE_OCCL else 'disconnected'}"
                f" (source {e.source:#06x})", e)
    return codes, details


def alarm_entries(result: iv.PollResult) -> list[iv.AlarmEntry]:
    out: list[iv.AlarmEntry] = []
    for obs in result.observations:
        for attr in (iv.NOM_ATTR_AL_MON_P_AL_LIST, iv.NOM_ATTR_AL_MON_T_AL_LIST):
            raw = obs.attributes.get(attr)
            if raw is not None:
                out += iv.decode_alarm_list(raw)
    return out


class IntelliVueMonitorDriver(PortReader, Driver):
    role = DeviceRole.MONITOR

    def __init__(
        self,
        name: str,
        emit: Emit,
        *,
        port: str,
        baudrate: int = DEFAULT_BAUDRATE,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: int = 1,
        rtscts: bool = False,
        poll_interval_s: float = 1.0,
        timeout_s: float = 15.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        interval = max(1.0, poll_interval_s)
        super().__init__(name, emit, poll_interval_s=interval, timeout_s=timeout_s,
                         backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s, monotonic=monotonic)
        self.port = port
        self._serial_kw: dict[str, Any] = {"baudrate": baudrate, "bytesize": bytesize, "parity": parity,
                                           "stopbits": stopbits, "rtscts": rtscts}
        self.interval_s = interval
        self.reassociate_after_s = 2.0 * interval + 1.0
        self._wall = wall
        self.decoder = iv.MessageDecoder()
        self.phase = Phase.IDLE
        self._phase_since = monotonic()
        self._last_poll = 0.0
        self._invoke = 0
        self._poll_number = 0
        self._ser: Any = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lost: BaseException | None = None
        self._wake = asyncio.Event()
        self._released = asyncio.Event()
        self._clock_offset: timedelta | None = None
        self._alert: frozenset[DeviceAlarmCode] = frozenset()
        self._alert_detail: list[str] = []
        self._unit_problems: list[str] = []
        self._alarms: tuple[frozenset[DeviceAlarmCode], str] | None = None
        self.delay = FrameDelay()
        self.age_s = 0.0
        # counters, for tests and the log
        self.assoc_requests = 0
        self.associations = 0  # accepted
        self.mds_results_sent = 0
        self.polls_sent = 0
        self.results = 0
        self.releases_sent = 0
        self.releases_confirmed = 0
        self.aborts_received = 0

    # -- Driver -----------------------------------------------------------------------------

    async def connect(self) -> None:
        ser = open_serial(self.port, timeout=0, write_timeout=WRITE_TIMEOUT_S, **self._serial_kw)
        self._ser = ser
        self._lost = None
        self._wake = asyncio.Event()
        self._released = asyncio.Event()
        self.decoder.reset()
        self._set_phase(Phase.IDLE)
        self._loop = asyncio.get_running_loop()
        try:
            self._fd = ser.fileno()
            self._loop.add_reader(self._fd, self._on_readable)
            self._associate()
        except BaseException:
            await self.close()
            raise

    async def poll(self) -> None:
        self._raise_if_lost()
        now = self._monotonic()
        if self.phase is Phase.ASSOCIATED:
            if now - self._last_good > self.reassociate_after_s:
                self.logs.log(logging.WARNING, "reassociating", "%s: no reply for %.0f s, associating again",
                              self.name, now - self._last_good)
                self._associate(abort_first=True)
            elif now - self._last_poll >= self.interval_s - 0.05:
                self._send_polls()
        elif now - self._phase_since > self.reassociate_after_s:
            self.logs.log(logging.INFO, "asking again", "%s: association not complete (%s) after %.0f s, asking again",
                          self.name, self.phase.value, now - self._phase_since)
            self._associate(abort_first=self.phase is not Phase.IDLE)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self.interval_s)
        self._raise_if_lost()

    def stop(self) -> None:
        super().stop()
        self._wake.set()

    async def close(self) -> None:
        if (self._stopping and self._lost is None and self._ser is not None and self._fd is not None
                and self.phase is not Phase.IDLE):
            self._released.clear()
            self._write(iv.frame(iv.encode_release_request()))
            self.releases_sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), RELEASE_WAIT_S)
        if self._loop is not None and self._fd is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
        self._fd = None
        self._set_phase(Phase.IDLE)
        ser, self._ser = self._ser, None
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()

    # -- sending --------------------------------------------------------------------------

    def _set_phase(self, phase: Phase) -> None:
        self.phase = phase
        self._phase_since = self._monotonic()

    def _next_invoke(self) -> int:
        self._invoke = (self._invoke + 1) & 0xFFFF
        return self._invoke

    def _write(self, data: bytes) -> None:
        if self._ser is None:
            return
        try:
            self._ser.write(data)
        except serial.SerialTimeoutException:
            self.logs.log(logging.WARNING, "not sent", "%s: %s does not accept data", self.name, self.port)
        except (OSError, serial.SerialException) as exc:
            self._lose(exc)

    def _associate(self, *, abort_first: bool = False) -> None:
        user = iv.UserInfo(min_poll_period=int(self.interval_s * iv.TICKS_PER_S))
        data = iv.frame(iv.encode_assoc_request(user))
        if abort_first:  # end any association the monitor still holds for us
            data = iv.frame(iv.encode_abort()) + data
        self._write(data)
        self.assoc_requests += 1
        self._set_phase(Phase.ASSOCIATING)

    def _send_polls(self) -> None:
        self._last_poll = self._monotonic()
        out = b""
        for obj in (iv.NOM_MOC_VMO_METRIC_NU, iv.NOM_MOC_VMO_AL_MON):
            self._poll_number = (self._poll_number + 1) & 0xFFFF
            out += iv.frame(iv.encode_poll_request(self._next_invoke(), self._poll_number, obj))
        self._write(out)
        self.polls_sent += 2

    # -- receiving ------------------------------------------------------------------------

    def _lose(self, exc: BaseException) -> None:
        super()._lose(exc)
        self._released.set()  # close() need not wait for a release reply that cannot come

    def _on_bytes(self, data: bytes) -> None:
        for item in self.decoder.feed(data):
            self._on_item(item)

    def _on_item(self, item: iv.Message | ivf.FrameError | iv.MessageFault) -> None:
        if isinstance(item, (ivf.FrameError, iv.MessageFault)):
            self.protocol_error(f"{item.kind}: {item.detail}", cause=item.kind)
        elif isinstance(item, iv.PollResult):
            self.frame_ok()
            self.results += 1
            try:
                if item.obj_code == iv.NOM_MOC_VMO_METRIC_NU:
                    self._on_numerics(item)
                elif item.obj_code == iv.NOM_MOC_VMO_AL_MON:
                    self._on_alerts(item)
            except iv.MessageError as exc:
                self.protocol_error(f"{exc.kind}: {exc}", cause=exc.kind)
        elif isinstance(item, iv.MdsCreateEvent):
            self.frame_ok()
            self._write(iv.frame(iv.encode_mds_create_result(item.invoke_id, item.mds, item.event_time)))
            self.mds_results_sent += 1
            self._note_clock(item.abs_time)
            first = self.phase is not Phase.ASSOCIATED
            self._set_phase(Phase.ASSOCIATED)
            self._alarms = None  # the first alarm poll after each association is reported
            if first:
                self.logs.log(logging.INFO, "associated", "%s: associated", self.name)
            self._send_polls()
        elif isinstance(item, iv.AssocResponse):
            self.frame_ok()
            if self.phase is Phase.ASSOCIATING:
                self.associations += 1
                self._set_phase(Phase.WAIT_MDS)
        elif isinstance(item, iv.AssocRefuse):
            self.logs.log(logging.WARNING, "refused", "%s: the monitor refused the association", self.name)
            self._set_phase(Phase.IDLE)
        elif isinstance(item, iv.Abort):
            self.aborts_received += 1
            self.logs.log(logging.WARNING, "aborted", "%s: the monitor aborted the association", self.name)
            self._associate()
        elif isinstance(item, iv.ReleaseResponse):
            self.releases_confirmed += 1
            self._released.set()
            self._set_phase(Phase.IDLE)
        elif isinstance(item, iv.ReleaseRequest):
            self._write(iv.frame(iv.encode_release_response()))
            self._set_phase(Phase.IDLE)
        elif isinstance(item, iv.RemoteError):
            self.frame_ok()
            self.logs.log(logging.WARNING, f"error {item.error_value}", "%s: the monitor answered error %d",
                          self.name, item.error_value)
        else:
            self.frame_ok()
            log.debug("%s: ignoring %s", self.name, type(item).__name__)

    def _note_clock(self, monitor_time: datetime | None) -> None:
        if monitor_time is None:
            return
        est = self._wall() - monitor_time.replace(tzinfo=UTC)
        est = timedelta(seconds=round(est.total_seconds()))
        if self._clock_offset is None or abs((est - self._clock_offset).total_seconds()) > CLOCK_TOLERANCE_S:
            self._clock_offset = est

    def _to_utc(self, monitor_time: datetime | None) -> datetime | None:
        if monitor_time is None or self._clock_offset is None:
            return None
        return monitor_time.replace(tzinfo=UTC) + self._clock_offset

    def _on_numerics(self, res: iv.PollResult) -> None:
        if self._clock_offset is None:
            self._note_clock(res.abs_time)
        nums = numerics_of(res)
        if res.abs_time is not None:
            stamp = res.abs_time.replace(tzinfo=UTC).timestamp()
            self.age_s = round(self.delay.update(stamp, self._monotonic()), 1)
            if self.age_s:
                self.logs.log(logging.WARNING, "late results", "%s: results arrive %.1f s after their time stamp",
                              self.name, self.age_s)
        readings, problems, withheld = readings_of(self.name, nums, device_time=self._to_utc(res.abs_time),
                                                   to_utc=self._to_utc, age_s=self.age_s)
        if withheld:
            self.logs.log(logging.WARNING, "nibp no time", "%s: NIBP without a measurement time stamp: withheld",
                          self.name)
        for reading in readings:
            self.emit(reading)
        if problems != self._unit_problems:
            self._unit_problems = problems
            if self._alarms is not None:
                self._emit_alarms()

    def _on_alerts(self, res: iv.PollResult) -> None:
        codes, details = alert_codes(alarm_entries(res))
        self._alert, self._alert_detail = frozenset(codes), details
        self._emit_alarms()

    def _emit_alarms(self) -> None:
        codes = set(self._alert)
        details = list(self._alert_detail)
        if self._unit_problems:
            codes.add(DeviceAlarmCode.IMPLAUSIBLE)
            details += self._unit_problems
        now = (frozenset(codes), "; ".join(details))
        if now != self._alarms:
            self._alarms = now
            self.emit(DeviceAlarm(self.name, DeviceRole.MONITOR, now[0], now[1]))


def build(cfg: MonitorDevice, emit: Emit) -> IntelliVueMonitorDriver:
    s = cfg.serial
    return IntelliVueMonitorDriver(
        cfg.name,
        emit,
        port=s.port,
        baudrate=s.baudrate,
        bytesize=s.bytesize,
        parity=s.parity,
        stopbits=s.stopbits,
        rtscts=bool(getattr(s, "rtscts", False)),
        poll_interval_s=cfg.poll_interval_s,
        timeout_s=cfg.timeout_s,
    )
