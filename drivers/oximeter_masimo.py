"""Standalone pulse oximeter driver: Masimo Rad-series and Radical serial output ("ASCII 1").

The oximeter talks without being asked: a line a second. Bytes are read as they arrive
(``loop.add_reader`` on the port's file descriptor); ``poll`` only notices a lost port and
paces the link checks. The wire format lives in ``drivers.masimo``.

What the driver reports (see docs/devices.md, "Pulse oximeter"):
- ``VitalsReading`` per line with SpO2 and pulse rate. A sensor that is off, absent, unusable
  or with its cable missing gives ``None`` values marked INVALID (the oximeter may still print
  numbers such as 000). Values while it flags low perfusion, interference, ambient light, low
  signal IQ, pulse search or a sensor calibrating are QUESTIONABLE. SpO2 000 with pulse rate 000
  is "no measurement" (``None``, INVALID), as the oximeter's own trend output writes it.
- ``age_s``: how late the line arrived, from its time stamps (``FrameDelay``). The oximeter's
  clock has no time zone, so ``device_time`` is not set.
- ``DeviceAlarm``: PROBE_OFF (no sensor, sensor off the patient, no patient cable), SENSOR_OFF
  (a sensor or cable that is defective, unrecognised, incompatible or expired), LOW_BATTERY
  (alarm status bit 0x40); on the first line after each connect and whenever the set changes.
  The oximeter's own SpO2 and pulse limit alarms are not passed on: monitord judges the values.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from monitord.config import OximeterDevice
from monitord.drivers import masimo as mx
from monitord.drivers.base import Driver, Emit, FrameDelay, PortReader, open_serial
from monitord.readings import DeviceAlarm, DeviceAlarmCode, DeviceRole, Quality, Vital, VitalsReading

log = logging.getLogger(__name__)

PROBE_OFF = mx.EXC_NO_SENSOR | mx.EXC_SENSOR_OFF | mx.EXC_NO_CABLE
SENSOR_UNUSABLE = (mx.EXC_DEFECTIVE_SENSOR | mx.EXC_UNRECOGNIZED_SENSOR | mx.EXC_INCOMPATIBLE_SENSOR
                   | mx.EXC_CABLE_EXPIRED | mx.EXC_INCOMPATIBLE_CABLE | mx.EXC_UNRECOGNIZED_CABLE
                   | mx.EXC_DEFECTIVE_CABLE | mx.EXC_SENSOR_EXPIRED)
DOUBTFUL = (mx.EXC_LOW_PERFUSION | mx.EXC_INTERFERENCE | mx.EXC_AMBIENT_LIGHT | mx.EXC_LOW_SIGNAL_IQ
            | mx.EXC_PULSE_SEARCH | mx.EXC_SENSOR_CALIBRATING)
_EPOCH = datetime(1970, 1, 1)


def exception_names(bits: int) -> list[str]:
    """The exceptions set in ``bits``, in words (unknown bits as hex)."""
    names = [name for bit, name in mx.EXC_NAMES.items() if bits & bit]
    unknown = bits & ~sum(mx.EXC_NAMES) & ~mx.EXC_SET
    return names + ([f"exception bits {unknown:#x}"] if unknown else [])


def reading_of(name: str, rec: mx.Record, age_s: float = 0.0) -> VitalsReading:
    """One line -> one reading of SpO2 and pulse rate."""
    values: dict[Vital, float | None]
    if rec.exceptions & (PROBE_OFF | SENSOR_UNUSABLE) or (rec.spo2 == 0 and rec.pulse == 0):
        values, quality = {Vital.SPO2: None, Vital.PULSE: None}, Quality.INVALID
    else:
        values = {Vital.SPO2: None if rec.spo2 is None else float(rec.spo2),
                  Vital.PULSE: None if rec.pulse is None else float(rec.pulse)}
        quality = Quality.QUESTIONABLE if rec.exceptions & DOUBTFUL else Quality.VALID
    return VitalsReading(name, values, quality, None, None, age_s)


def alarms_of(rec: mx.Record) -> tuple[frozenset[DeviceAlarmCode], str]:
    """Device alarms a line shows, with a readable detail."""
    codes: set[DeviceAlarmCode] = set()
    details: list[str] = []
    if rec.exceptions & PROBE_OFF:
        codes.add(DeviceAlarmCode.PROBE_OFF)
        details += exception_names(rec.exceptions & PROBE_OFF)
    if rec.exceptions & SENSOR_UNUSABLE:
        codes.add(DeviceAlarmCode.SENSOR_OFF)
        details += exception_names(rec.exceptions & SENSOR_UNUSABLE)
    if rec.alarm & mx.ALARM_LOW_BATTERY:
        codes.add(DeviceAlarmCode.LOW_BATTERY)
        details.append("oximeter battery low")
    return frozenset(codes), "; ".join(details)


class MasimoOximeterDriver(PortReader, Driver):
    role = DeviceRole.OXIMETER

    def __init__(
        self,
        name: str,
        emit: Emit,
        *,
        port: str,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: int = 1,
        rtscts: bool = False,
        poll_interval_s: float = 1.0,
        timeout_s: float = 5.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name, emit, poll_interval_s=poll_interval_s, timeout_s=timeout_s,
                         backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s, monotonic=monotonic)
        self.port = port
        self._serial_kw: dict[str, Any] = {"baudrate": baudrate, "bytesize": bytesize, "parity": parity,
                                           "stopbits": stopbits, "rtscts": rtscts}
        self.decoder = mx.LineDecoder()
        self.delay = FrameDelay()
        self.age_s = 0.0  # how late the last line arrived
        self.last: mx.Record | None = None  # the last line (perfusion index, serial number, raw bits)
        self._ser: Any = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lost: BaseException | None = None
        self._wake = asyncio.Event()
        self._alarms: frozenset[DeviceAlarmCode] | None = None

    # -- Driver -----------------------------------------------------------------------------

    async def connect(self) -> None:
        ser = open_serial(self.port, timeout=0, **self._serial_kw)
        self._ser = ser
        self._lost = None
        self._wake = asyncio.Event()
        self._alarms = None
        self.decoder.reset()
        self._loop = asyncio.get_running_loop()
        try:
            self._fd = ser.fileno()
            self._loop.add_reader(self._fd, self._on_readable)
        except BaseException:
            await self.close()  # run() does not close after a failed connect
            raise

    async def poll(self) -> None:
        self._raise_if_lost()
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)
        self._raise_if_lost()

    async def close(self) -> None:
        if self._loop is not None and self._fd is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
        self._fd = None
        ser, self._ser = self._ser, None
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()

    # -- internals --------------------------------------------------------------------------

    def _on_bytes(self, data: bytes) -> None:
        for item in self.decoder.feed(data):
            if isinstance(item, mx.LineError):
                self.protocol_error(f"{item.kind}: {item.detail}", cause=item.kind)
            else:
                self._on_record(item)

    def _on_record(self, rec: mx.Record) -> None:
        self.frame_ok()
        self.last = rec
        self.age_s = round(self.delay.update((rec.time - _EPOCH).total_seconds(), self._monotonic()), 1)
        if self.age_s:
            self.logs.log(logging.WARNING, "late lines", "%s: lines arrive %.1f s after their time stamp",
                          self.name, self.age_s)
        if rec.exceptions & DOUBTFUL:
            self.logs.log(logging.INFO, "doubtful", "%s: values questionable: %s", self.name,
                          ", ".join(exception_names(rec.exceptions & DOUBTFUL)))
        self.emit(reading_of(self.name, rec, self.age_s))
        codes, detail = alarms_of(rec)
        if codes != self._alarms:
            self._alarms = codes
            self.emit(DeviceAlarm(self.name, DeviceRole.OXIMETER, codes, detail))


def build(cfg: OximeterDevice, emit: Emit) -> MasimoOximeterDriver:
    s = cfg.serial
    return MasimoOximeterDriver(
        cfg.name,
        emit,
        port=s.port,
        baudrate=s.baudrate,
        bytesize=s.bytesize,
        parity=s.parity,
        stopbits=s.stopbits,
        rtscts=s.rtscts,
        poll_interval_s=cfg.poll_interval_s,
        timeout_s=cfg.timeout_s,
    )
