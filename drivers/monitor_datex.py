"""Patient monitor driver: GE Datex-Ohmeda S/5 and CARESCAPE B-series Computer Interface.

On connect the driver asks the monitor for displayed values every ``poll_interval_s`` (whole
seconds, at least 1) and then only listens: records arrive unprompted. Bytes are read as they
arrive (``loop.add_reader`` on the port's file descriptor), so readings are not delayed by the
poll cycle; ``poll`` only re-sends the request when nothing valid came for a while and notices
a lost port. The wire format lives in ``drivers.datex_s5``.

What the driver reports (see docs/devices.md for the reasoning):
- ``VitalsReading`` per record; values of a group the monitor flags (ECG noise/artefact/learning,
  CO2 calibrating/zeroing, NIBP calibrating) go in a second reading marked QUESTIONABLE.
- EtCO2 in mmHg is derived from the record's % and its ambient pressure; an ambient pressure
  outside ``AMBIENT_MMHG_MIN``-``AMBIENT_MMHG_MAX`` (another unit, a corrupt value) withholds
  the EtCO2 (None, INVALID) and raises IMPLAUSIBLE, so a wrong EtCO2 never reaches a rule.
- ``device_time`` = the values' time stamp (monitor clock); ``age_s`` = how late the record
  arrived, from those time stamps (``FrameDelay``); NIBP with ``nibp_time`` (``NibpClock``).
- ``DeviceAlarm``: LEADS_OFF (ECG channel off), SENSOR_OFF (CO2 sampling line occluded or
  leaking), APNOEA (the CO2 module's apnoea flag), IMPLAUSIBLE (ambient pressure); emitted on
  the first record after each connect and whenever the set changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import serial

from monitord.config import MonitorDevice
from monitord.drivers import datex_s5 as dx
from monitord.drivers.base import Driver, Emit, FrameDelay, PortReader, open_serial
from monitord.readings import (
    DeviceAlarm,
    DeviceAlarmCode,
    DeviceRole,
    Quality,
    Vital,
    VitalsReading,
)

log = logging.getLogger(__name__)

# The NIBP group's "older than 60 s" flag bounds the age of a value first seen on connect.
NIBP_OLD_FLAG_S = 60.0
# A request is 147 bytes (77 ms at 19200 baud); never block the event loop much longer.
WRITE_TIMEOUT_S = 0.3
# Plausible ambient (barometric) pressure for the EtCO2 conversion, mmHg. ICAO Standard
# Atmosphere (ISO 2533:1975): 760 mmHg at sea level, 405 at 5,000 m, 354 at 6,000 m (above the
# highest settlements, about 5,100 m); the highest sea-level pressure on record is 1083.8 hPa
# (813 mmHg, WMO) and the lowest shore on land (Dead Sea, -430 m) has about 800 mmHg. A value
# outside 350-850 mmHg is another unit or a corrupt field (1013 hPa read as 101.3 mmHg, 29.92
# inHg as 29.9 mmHg, tenths of hPa as 1013.0 mmHg), never an atmosphere a patient breathes
# (hyperbaric chambers excepted, where monitord is not used).
AMBIENT_MMHG_MIN = 350.0
AMBIENT_MMHG_MAX = 850.0


def device_time(unix_s: int) -> datetime | None:
    """Monitor timestamp (unix seconds) -> UTC datetime; 0 means the monitor sent none."""
    if unix_s <= 0:
        return None
    return datetime.fromtimestamp(unix_s, UTC)


def measured_at(dv: dx.DisplayedValues) -> int:
    """When the values were measured, monitor clock: the subrecord's time, else the record's."""
    return dv.time if dv.time > 0 else dv.record_time


def ambient_plausible(dv: dx.DisplayedValues) -> bool:
    """Whether the record's ambient pressure can be used (a missing one is not implausible)."""
    return dv.amb_press is None or AMBIENT_MMHG_MIN <= dv.amb_press <= AMBIENT_MMHG_MAX


class NibpClock:
    """Works out when the NIBP on the monitor's screen was measured.

    The displayed-values record carries the last NIBP but not its measurement time. A new
    measurement is recognised when the values change, when the "measuring" flag clears, or when
    the "older than 60 s" flag clears; its time is the device time of that record (late by at
    most one record interval). A value already on screen when the driver first sees it is dated
    60 s back if its "older than 60 s" flag is clear; if that flag is set its age is unknown
    and the value is withheld until the next measurement, so an old pressure is never shown as
    current. The clock survives reconnects: the same values are the same measurement.
    """

    def __init__(self) -> None:
        self._values: tuple[float, float, float] | None = None
        self._time: datetime | None = None
        self._known = False
        self._measuring = False
        self._old = False

    def update(self, dv: dx.DisplayedValues, now: datetime | None) -> tuple[bool, datetime | None]:
        """Feed one record; return (report the NIBP values?, their measurement time)."""
        label = dv.nibp.label
        measuring = bool(label & dx.NIBP_MEASURING)
        old = bool(label & dx.NIBP_OLDER_THAN_60S)
        if dv.nibp_sys is None or dv.nibp_dia is None or dv.nibp_mean is None:
            values = None
        else:
            values = (dv.nibp_sys, dv.nibp_dia, dv.nibp_mean)
        if values is None:
            self._values, self._time, self._known = None, None, True
        elif self._values is None and not self._known:
            # first sighting with no history: bound the age from the "old" flag
            self._values = values
            if old or now is None:
                self._time, self._known = None, False
            else:
                self._time, self._known = now - timedelta(seconds=NIBP_OLD_FLAG_S), True
        elif values != self._values or (self._measuring and not measuring) or (self._old and not old):
            self._values, self._time, self._known = values, now, now is not None
        self._measuring, self._old = measuring, old
        if values is None:
            return True, None
        return self._known, self._time


_ECG_DOUBTFUL = dx.ECG_NOISE | dx.ECG_ARTIFACT | dx.ECG_LEARNING
_CO2_DOUBTFUL = dx.CO2_CALIBRATING | dx.CO2_ZEROING


def alarms_of(dv: dx.DisplayedValues) -> tuple[frozenset[DeviceAlarmCode], str]:
    """Device alarms the status bits of a displayed-values record show, with a readable detail."""
    codes: set[DeviceAlarmCode] = set()
    details: list[str] = []
    off = [
        str(n)
        for n, bit in ((1, dx.ECG_CH1_OFF), (2, dx.ECG_CH2_OFF), (3, dx.ECG_CH3_OFF))
        if dv.ecg.status & bit
    ]
    if off:
        codes.add(DeviceAlarmCode.LEADS_OFF)
        details.append(f"ECG lead off (channel {', '.join(off)})")
    if dv.co2.status & dx.CO2_OCCLUSION:
        codes.add(DeviceAlarmCode.SENSOR_OFF)
        details.append("CO2 sampling line occluded")
    if dv.co2.status & dx.CO2_AIR_LEAK:
        codes.add(DeviceAlarmCode.SENSOR_OFF)
        details.append("CO2 sampling air leak")
    if dv.co2.status & dx.CO2_APNEA:
        codes.add(DeviceAlarmCode.APNOEA)
        details.append("monitor reports apnoea (CO2)")
    if not ambient_plausible(dv):
        codes.add(DeviceAlarmCode.IMPLAUSIBLE)
        details.append(
            f"ambient pressure {dv.amb_press:g} mmHg outside {AMBIENT_MMHG_MIN:g}-{AMBIENT_MMHG_MAX:g} mmHg "
            "(another unit?): EtCO2 withheld"
        )
    return frozenset(codes), "; ".join(details)


def readings_of(
    name: str,
    dv: dx.DisplayedValues,
    *,
    report_nibp: bool,
    nibp_time: datetime | None,
    age_s: float = 0.0,
) -> list[VitalsReading]:
    """One record -> one reading per quality (VALID first, then QUESTIONABLE, then INVALID)."""
    ecg_q = Quality.QUESTIONABLE if dv.ecg.status & _ECG_DOUBTFUL else Quality.VALID
    co2_q = Quality.QUESTIONABLE if dv.co2.status & _CO2_DOUBTFUL else Quality.VALID
    nibp_q = Quality.QUESTIONABLE if dv.nibp.label & dx.NIBP_CALIBRATING else Quality.VALID
    by_quality: dict[Quality, dict[Vital, float | None]] = {q: {} for q in Quality}

    def put(vital: Vital, value: float | None, quality: Quality = Quality.VALID) -> None:
        by_quality[quality][vital] = value

    put(Vital.HR, dv.hr, ecg_q)
    put(Vital.SPO2, dv.spo2)
    put(Vital.PULSE, dv.spo2_pr)
    if ambient_plausible(dv):
        etco2 = dv.etco2_mmhg
        put(Vital.ETCO2, None if etco2 is None else round(etco2, 1), co2_q)
    else:  # derived from a pressure that cannot be right: withheld, never a wrong number
        put(Vital.ETCO2, None, Quality.INVALID)
    if dv.co2_rr is not None:
        put(Vital.RR, dv.co2_rr, co2_q)
    else:
        put(Vital.RR, dv.imp_rr, ecg_q)
    put(Vital.TEMP, next((t for t in dv.temps if t is not None), None))
    if report_nibp:
        put(Vital.SBP, dv.nibp_sys, nibp_q)
        put(Vital.DBP, dv.nibp_dia, nibp_q)
        put(Vital.MAP, dv.nibp_mean, nibp_q)
    when = device_time(measured_at(dv))
    out = []
    for quality, values in by_quality.items():
        if values:
            has_nibp = Vital.SBP in values
            out.append(VitalsReading(name, values, quality, when, nibp_time if has_nibp else None, age_s))
    return out


class DatexMonitorDriver(PortReader, Driver):
    role = DeviceRole.MONITOR

    def __init__(
        self,
        name: str,
        emit: Emit,
        *,
        port: str,
        baudrate: int = 19200,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: int = 1,
        rtscts: bool = False,
        poll_interval_s: float = 5.0,
        timeout_s: float = 15.0,
        request_levels: tuple[int, ...] = (dx.DRI_LEVEL_2005, dx.DRI_LEVEL_2003, dx.DRI_LEVEL_2001),
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            name,
            emit,
            poll_interval_s=poll_interval_s,
            timeout_s=timeout_s,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            monotonic=monotonic,
        )
        self.port = port
        self._serial_kw: dict[str, Any] = {
            "baudrate": baudrate,
            "bytesize": bytesize,
            "parity": parity,
            "stopbits": stopbits,
            "rtscts": rtscts,
        }
        self.interval_s = max(1, round(poll_interval_s))
        self.request_levels = request_levels
        # Ask again when no valid record came for two intervals (monitor restarted, cable swapped).
        self.rerequest_after_s = 2.0 * self.interval_s + 1.0
        self.requests_sent = 0
        self.decoder = dx.StreamDecoder()
        self.nibp_clock = NibpClock()
        self._ser: Any = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lost: BaseException | None = None
        self._wake = asyncio.Event()
        self._last_request = 0.0
        self._alarms: frozenset[DeviceAlarmCode] | None = None
        self.delay = FrameDelay()
        self.age_s = 0.0  # how late the last record arrived

    # -- Driver -----------------------------------------------------------------------------

    async def connect(self) -> None:
        ser = open_serial(self.port, timeout=0, write_timeout=WRITE_TIMEOUT_S, **self._serial_kw)
        self._ser = ser
        self._lost = None
        self._wake = asyncio.Event()
        self._alarms = None
        self.decoder.reset()
        self._loop = asyncio.get_running_loop()
        try:
            self._fd = ser.fileno()
            self._loop.add_reader(self._fd, self._on_readable)
            self._send_request()
        except BaseException:
            await self.close()  # run() does not close after a failed connect
            raise

    async def poll(self) -> None:
        self._raise_if_lost()
        now = self._monotonic()
        if now - max(self._last_good, self._last_request) > self.rerequest_after_s:
            self.logs.log(logging.INFO, "asking again", "%s: nothing valid for %.0f s, asking again",
                          self.name, now - self._last_good)
            self._send_request()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)
        self._raise_if_lost()

    async def close(self) -> None:
        if self._loop is not None and self._fd is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
        self._fd = None
        ser, self._ser = self._ser, None
        if ser is None:
            return
        if self._stopping and self._lost is None:
            with contextlib.suppress(Exception):  # be polite: stop the transmission
                ser.write(b"".join(dx.request_frames(0, (lv,)) for lv in self.request_levels))
        with contextlib.suppress(Exception):
            ser.close()

    # -- internals --------------------------------------------------------------------------

    def _send_request(self) -> None:
        self._last_request = self._monotonic()
        try:
            self._ser.write(dx.request_frames(self.interval_s, self.request_levels))
        except serial.SerialTimeoutException:
            # The port is there but takes no data (CTS low, or nobody reading a pty): the link
            # shows as silent; the request is tried again later.
            self.logs.log(logging.WARNING, "request not sent", "%s: request not sent, %s does not accept data",
                          self.name, self.port)
        except (OSError, serial.SerialException) as exc:
            self._lose(exc)
            self._raise_if_lost()
        self.requests_sent += 1

    def _on_bytes(self, data: bytes) -> None:
        for item in self.decoder.feed(data):
            if isinstance(item, dx.FrameError):
                self.protocol_error(f"{item.kind}: {item.detail}", cause=item.kind)
            elif isinstance(item, dx.DisplayedValues):
                self._on_displayed(item)
            else:
                self.frame_ok()  # a valid record of another kind: the link works
                log.debug("%s: ignoring %s", self.name, type(item).__name__)

    def _on_displayed(self, dv: dx.DisplayedValues) -> None:
        self.frame_ok()
        stamp = measured_at(dv)
        self.age_s = round(self.delay.update(stamp, self._monotonic()), 1) if stamp > 0 else 0.0
        if self.age_s:
            self.logs.log(logging.WARNING, "late records", "%s: records arrive %.1f s after their time stamp",
                          self.name, self.age_s)
        when = device_time(stamp)
        report_nibp, nibp_time = self.nibp_clock.update(dv, when)
        for reading in readings_of(self.name, dv, report_nibp=report_nibp, nibp_time=nibp_time, age_s=self.age_s):
            self.emit(reading)
        codes, detail = alarms_of(dv)
        if codes != self._alarms:
            self._alarms = codes
            self.emit(DeviceAlarm(self.name, DeviceRole.MONITOR, codes, detail))


def build(cfg: MonitorDevice, emit: Emit) -> DatexMonitorDriver:
    s = cfg.serial
    return DatexMonitorDriver(
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
