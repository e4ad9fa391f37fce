"""A simulated GE S/5 / CARESCAPE monitor speaking the Computer Interface, byte for byte.

The device side of ``drivers.datex_s5``: it waits for a host's displayed-values request and
then sends a displayed-values record every requested interval, built from
``values_at(t) -> {Vital: value or None}`` (``t`` = seconds since ``start``).

Where it lives (``transport``):
- ``"pty"``: a pseudo-terminal; the driver opens ``sim.path`` (``/dev/pts/N``).
- ``"tcp"``: a TCP server on ``host:port`` (port 0 picks one); the driver opens ``sim.path``
  (``socket://127.0.0.1:PORT``). One client at a time; a new one replaces the old.
- any other string: a real serial port (e.g. ``/dev/ttyUSB1``), for a null-modem loop test.

NIBP: ``measure_nibp(sys, dia, mean)`` completes a measurement now; if ``values_at`` returns
SBP/DBP/MAP and they differ from the last ones, that counts as a new measurement too. The NIBP
group's "older than 60 s" flag is set 60 s after the measurement, as the monitor does.
Status flags (lead off, CO2 occlusion...) are set on ``sim.flags``.

Faults, for a scenario engine: ``inject(kind, duration_s)`` starts one, ``clear_faults()`` ends
all. Several may be active at once. Kinds (``Fault``):
- ``unplug``: the cable is out. Nothing is sent; whatever the host sends meanwhile is lost.
  Over TCP the connection is dropped and new ones are closed until the fault ends. The
  transmission carries on afterwards, as a monitor's does when a cable is re-seated.
- ``power_cycle``: as ``unplug``, and the monitor forgets the request (the host must ask again).
- ``garble``: random bytes before each frame and a few bytes of each frame flipped.
- ``bad_checksum``: frames carry a wrong checksum.
- ``partial``: only the first half of each frame is sent.
- ``slow``: each frame trickles out in ``slow_chunk`` byte pieces ``slow_delay_s`` apart.
- ``late``: frames are held back and delivered ``late_s`` seconds after they were stamped (a
  buffering line or terminal server); frames held when the fault ends still go out late, in order.

Device alarms: ``show_alarms(codes)`` sets the status bits that stand for ``DeviceAlarmCode``
values (leads off, CO2 sampling line, apnoea, an ambient pressure in another unit);
``ambient_wire_mmhg`` puts a wrong ambient pressure on the wire while the EtCO2 % stays that of
the true one. ``send_raw(data)`` writes bytes as they are (garbage, floods).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from monitord.drivers import datex_s5 as dx
from monitord.readings import DeviceAlarmCode, Vital
from monitord.simulators.transport import PtyPair, open_pty

log = logging.getLogger(__name__)

ValuesAt = Callable[[float], Mapping[Vital, float | None]]

# Standard atmosphere, used to express EtCO2 (mmHg) as the % of ambient the record carries.
STANDARD_AMBIENT_MMHG = 760.0
NIBP_OLD_AFTER_S = 60.0
ECG_HR_SOURCE_ECG = 1 << dx.ECG_HR_SOURCE_SHIFT
NIBP_CUFF_ADULT = 3
TEMP_LABEL_AXILLARY = 6
CO2_RR_SOURCE_CO2 = 1


class Fault(StrEnum):
    UNPLUG = "unplug"
    POWER_CYCLE = "power_cycle"
    GARBLE = "garble"
    BAD_CHECKSUM = "bad_checksum"
    PARTIAL = "partial"
    SLOW = "slow"
    LATE = "late"


@dataclass
class SimFlags:
    """Status bits the simulated monitor reports."""

    ecg_leads_off: bool = False  # channel 1 off; HR becomes invalid
    ecg_noise: bool = False
    co2_occlusion: bool = False  # EtCO2 and RR become invalid
    co2_air_leak: bool = False
    co2_apnea: bool = False
    co2_zeroing: bool = False  # EtCO2 and RR questionable
    nibp_measuring: bool = False


class DatexSimulator:
    def __init__(
        self,
        values_at: ValuesAt,
        *,
        transport: str = "pty",
        host: str = "127.0.0.1",
        port: int = 0,
        baudrate: int = 19200,
        dri_level: int = dx.DRI_LEVEL_2005,
        ambient_mmhg: float = STANDARD_AMBIENT_MMHG,
        seed: int = 0,
        slow_chunk: int = 16,
        slow_delay_s: float = 0.05,
        late_s: float = 12.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.values_at = values_at
        self.transport = transport
        self.host = host
        self.port = port
        self.baudrate = baudrate
        self.dri_level = dri_level
        self.ambient_mmhg = ambient_mmhg
        self.slow_chunk = slow_chunk
        self.slow_delay_s = slow_delay_s
        self.late_s = late_s
        # The ambient pressure sent, when not the true one (a monitor set to another unit).
        self.ambient_wire_mmhg: float | None = None
        self._held: deque[tuple[float, bytes]] = deque()  # (when due, frame) under ``late``
        self.flags = SimFlags()
        self.path = ""
        self._mono = monotonic
        self._wall = wall
        self._rng = random.Random(seed)
        self._decoder = dx.StreamDecoder()
        self._faults: dict[Fault, float] = {}  # kind -> monotonic end
        self._interval = 0
        self._next_send = 0.0
        self._send_once = False
        self._started = 0.0
        self._nibp: tuple[float, float, float] | None = None
        self._nibp_mono = 0.0
        self._r_nbr = 0
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # fd transports (pty, serial)
        self._pty: PtyPair | None = None
        self._serial: Any = None
        self._fd: int | None = None
        self._reading = False
        # tcp
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        # counters, for tests and scenario logs
        self.requests = 0
        self.requests_ignored = 0
        self.records_sent = 0
        self.bytes_dropped = 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> str:
        """Open the transport and start serving; returns the path a driver should open."""
        self._loop = asyncio.get_running_loop()
        self._started = self._mono()
        if self.transport == "pty":
            self._pty = open_pty()
            self._fd = self._pty.master_fd
            self.path = self._pty.path
        elif self.transport == "tcp":
            self._server = await asyncio.start_server(self._on_client, self.host, self.port)
            sock_port = self._server.sockets[0].getsockname()[1]
            self.path = f"socket://{self.host}:{sock_port}"
        else:
            import serial

            self._serial = serial.Serial(self.transport, baudrate=self.baudrate, timeout=0)
            self._fd = self._serial.fileno()
            os.set_blocking(self._fd, False)
            self.path = self.transport
        self._start_reading()
        self._task = asyncio.create_task(self._run(), name="datex-sim")
        return self.path

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._stop_reading()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._pty is not None:
            self._pty.close()
            self._pty = None
        if self._serial is not None:
            with contextlib.suppress(Exception):
                self._serial.close()
            self._serial = None
        self._fd = None

    # -- the scenario-facing API -----------------------------------------------------------

    def inject(self, kind: Fault | str, duration_s: float) -> None:
        """Start fault ``kind`` now for ``duration_s`` seconds (extends one already running)."""
        fault = Fault(kind)
        end = self._mono() + duration_s
        self._faults[fault] = max(end, self._faults.get(fault, 0.0))
        if fault in (Fault.UNPLUG, Fault.POWER_CYCLE):
            if fault is Fault.POWER_CYCLE:
                self._interval = 0
                self._send_once = False
            self._unplug()
        log.info("datex sim: fault %s for %.1f s", fault.value, duration_s)

    def clear_faults(self) -> None:
        was_unplugged = self.unplugged
        self._faults.clear()
        if was_unplugged:
            self._replug()

    def active_faults(self) -> set[Fault]:
        now = self._mono()
        return {f for f, end in self._faults.items() if end > now}

    @property
    def unplugged(self) -> bool:
        return bool(self.active_faults() & {Fault.UNPLUG, Fault.POWER_CYCLE})

    @property
    def streaming_interval_s(self) -> int:
        """The interval the host asked for (0 = not transmitting)."""
        return self._interval

    def measure_nibp(self, sys: float, dia: float, mean: float) -> None:
        """A NIBP measurement completes now with these values (mmHg)."""
        self._nibp = (sys, dia, mean)
        self._nibp_mono = self._mono()
        self.flags.nibp_measuring = False

    def clear_nibp(self) -> None:
        """The monitor shows no NIBP (e.g. a failed measurement)."""
        self._nibp = None

    def show_alarms(self, codes: Iterable[DeviceAlarmCode]) -> set[DeviceAlarmCode]:
        """Set the status bits that make the driver report ``codes``; returns those the record
        cannot carry (PROBE_OFF: no SpO2 probe-off bit; pump alarms). SENSOR_OFF is shown as a
        CO2 sampling-line leak (values stay on screen); IMPLAUSIBLE as an ambient pressure sent
        in hPa into the mmHg field (1013 hPa read as 101.3 mmHg)."""
        wanted = set(codes)
        f = self.flags
        f.ecg_leads_off = DeviceAlarmCode.LEADS_OFF in wanted
        f.co2_air_leak = DeviceAlarmCode.SENSOR_OFF in wanted
        f.co2_apnea = DeviceAlarmCode.APNOEA in wanted
        self.ambient_wire_mmhg = 101.3 if DeviceAlarmCode.IMPLAUSIBLE in wanted else None
        shown = {DeviceAlarmCode.LEADS_OFF, DeviceAlarmCode.SENSOR_OFF, DeviceAlarmCode.APNOEA,
                 DeviceAlarmCode.IMPLAUSIBLE}
        return wanted - shown

    def send_raw(self, data: bytes) -> int:
        """Write ``data`` to the host as it is; returns the bytes the line took."""
        dropped = self.bytes_dropped
        self._write(data)
        return len(data) - (self.bytes_dropped - dropped)

    # -- building records ---------------------------------------------------------------------

    def displayed_values(self, now_mono: float | None = None) -> dx.DisplayedValues:
        """The record the simulated monitor would send now."""
        now = self._mono() if now_mono is None else now_mono
        v = dict(self.values_at(now - self._started))
        nibp_in = (v.get(Vital.SBP), v.get(Vital.DBP), v.get(Vital.MAP))
        if all(x is not None for x in nibp_in) and nibp_in != self._nibp:
            self._nibp = (float(nibp_in[0] or 0), float(nibp_in[1] or 0), float(nibp_in[2] or 0))
            self._nibp_mono = now
        f = self.flags
        base = dx.ST_EXISTS | dx.ST_ACTIVE
        ecg_status = base | ECG_HR_SOURCE_ECG
        hr = v.get(Vital.HR)
        if f.ecg_leads_off:
            ecg_status |= dx.ECG_CH1_OFF
            hr = None
        if f.ecg_noise:
            ecg_status |= dx.ECG_NOISE
        co2_status = base
        etco2_mmhg, rr = v.get(Vital.ETCO2), v.get(Vital.RR)
        if f.co2_apnea:
            co2_status |= dx.CO2_APNEA
        if f.co2_air_leak:
            co2_status |= dx.CO2_AIR_LEAK
        if f.co2_zeroing:
            co2_status |= dx.CO2_ZEROING
        if f.co2_occlusion:
            co2_status |= dx.CO2_OCCLUSION
            etco2_mmhg = rr = None
        nibp_label = NIBP_CUFF_ADULT | dx.NIBP_AUTO
        if f.nibp_measuring:
            nibp_label |= dx.NIBP_MEASURING
        if self._nibp is not None and now - self._nibp_mono > NIBP_OLD_AFTER_S:
            nibp_label |= dx.NIBP_OLDER_THAN_60S
        sys_, dia, mean = self._nibp if self._nibp is not None else (None, None, None)
        wall = int(self._wall())
        return dx.DisplayedValues(
            time=wall,
            record_time=wall,
            ecg=dx.GroupHeader(ecg_status, 0x2),  # channel 1 = lead II
            hr=hr,
            nibp=dx.GroupHeader(base, nibp_label),
            nibp_sys=sys_,
            nibp_dia=dia,
            nibp_mean=mean,
            temp=(
                dx.GroupHeader(base, TEMP_LABEL_AXILLARY),
                dx.GroupHeader(),
                dx.GroupHeader(),
                dx.GroupHeader(),
            ),
            temps=(v.get(Vital.TEMP), None, None, None),
            spo2_group=dx.GroupHeader(base, 0),
            spo2=v.get(Vital.SPO2),
            spo2_pr=v.get(Vital.PULSE),
            co2=dx.GroupHeader(co2_status, CO2_RR_SOURCE_CO2),
            co2_et=None if etco2_mmhg is None else etco2_mmhg / self.ambient_mmhg * 100.0,
            co2_rr=rr,
            amb_press=self.ambient_mmhg if self.ambient_wire_mmhg is None else self.ambient_wire_mmhg,
        )

    def frame_now(self) -> bytes:
        """The next displayed-values frame, with any active byte-level faults applied."""
        self._r_nbr = (self._r_nbr + 1) & 0xFF
        record = dx.encode_displayed(self.displayed_values(), r_nbr=self._r_nbr, dri_level=self.dri_level)
        faults = self.active_faults()
        frame = dx.encode_frame(record, bad_checksum=Fault.BAD_CHECKSUM in faults)
        if Fault.GARBLE in faults:
            b = bytearray(frame)
            for _ in range(self._rng.randint(1, 3)):
                i = self._rng.randrange(1, len(b) - 1)
                b[i] ^= self._rng.randint(1, 255)
            frame = self._rng.randbytes(self._rng.randint(1, 16)) + bytes(b)
        if Fault.PARTIAL in faults:
            frame = frame[: len(frame) // 2]
        return frame

    # -- the serving loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        tick = 0.02
        while True:
            await asyncio.sleep(tick)
            now = self._mono()
            expired = [f for f, end in self._faults.items() if end <= now]
            if expired:
                was_unplugged = any(f in (Fault.UNPLUG, Fault.POWER_CYCLE) for f in expired)
                for f in expired:
                    del self._faults[f]
                if was_unplugged and not self.unplugged:
                    self._replug()
            if self.unplugged:
                continue
            while self._held and self._held[0][0] <= now:
                await self._send(self._held.popleft()[1])
            due = self._send_once or (self._interval > 0 and now >= self._next_send)
            if not due:
                continue
            self._send_once = False
            if self._interval > 0:
                self._next_send += self._interval
                if self._next_send <= now:  # fell behind (unplugged, slow): keep the cadence from now
                    self._next_send = now + self._interval
            frame = self.frame_now()
            self.records_sent += 1
            if Fault.LATE in self.active_faults() or self._held:
                delay = self.late_s if Fault.LATE in self.active_faults() else 0.0
                self._held.append((now + delay, frame))
            else:
                await self._send(frame)

    async def _send(self, data: bytes) -> None:
        if Fault.SLOW in self.active_faults():
            for i in range(0, len(data), self.slow_chunk):
                self._write(data[i : i + self.slow_chunk])
                await asyncio.sleep(self.slow_delay_s)
                if self.unplugged:
                    return
        else:
            self._write(data)
        if self._writer is not None:
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()

    def _write(self, data: bytes) -> None:
        if self._fd is not None:
            try:
                n = os.write(self._fd, data)
            except (BlockingIOError, OSError):
                n = 0
            self.bytes_dropped += len(data) - n
        elif self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)
        else:
            self.bytes_dropped += len(data)

    def _on_host_bytes(self, data: bytes) -> None:
        for item in self._decoder.feed(data):
            if not isinstance(item, dx.PhdbRequest):
                continue
            if item.dri_level != self.dri_level or item.record_type != dx.PH_DISPL:
                self.requests_ignored += 1
                continue
            self.requests += 1
            if item.interval_s > 0:
                if self._interval <= 0:
                    self._next_send = self._mono()
                self._interval = item.interval_s
            elif item.interval_s == 0:
                self._interval = 0
            else:
                self._send_once = True

    # -- fd transports ------------------------------------------------------------------------

    def _start_reading(self) -> None:
        if self._fd is not None and self._loop is not None and not self._reading:
            self._loop.add_reader(self._fd, self._on_fd_readable)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._fd is not None and self._loop is not None and self._reading:
            self._loop.remove_reader(self._fd)
        self._reading = False

    def _on_fd_readable(self) -> None:
        if self._fd is None:
            return
        try:
            data = os.read(self._fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._stop_reading()  # the driver side is gone; nothing to read until it returns
            return
        if data:
            self._on_host_bytes(data)

    def _drain_input(self) -> None:
        """Discard what the host sent while the cable was out."""
        if self._fd is None:
            return
        while True:
            try:
                if not os.read(self._fd, 4096):
                    return
            except OSError:
                return

    def _unplug(self) -> None:
        self._stop_reading()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _replug(self) -> None:
        self._drain_input()
        self._decoder.reset()
        self._start_reading()
        log.info("datex sim: cable back")

    # -- tcp ----------------------------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.unplugged:
            writer.close()
            return
        if self._writer is not None:
            self._writer.close()
        self._writer = writer
        self._decoder.reset()
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                if self._writer is not writer or self.unplugged:
                    continue
                self._on_host_bytes(data)
        except ConnectionError:
            pass
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
