"""What every device driver shares: the link-state machine, reconnect backoff, error counting,
throttled logging and the lateness of timestamped frames.

A driver subclasses ``Driver`` and implements ``connect``, ``poll`` and ``close``. ``run`` owns
the cycle: connect, poll on the interval, and on any failure report the link state, close, wait
with exponential backoff and reconnect. Drivers hand typed readings to ``emit``; they hold no
clinical policy. Nothing a device, a port or a setting does may raise out of ``run``: every
exception is caught, logged (at most one line per cause per ``log_interval_s``, then a count)
and shown as the link state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import serial

from monitord.readings import DeviceInput, DeviceRole, LinkState, LinkStatus

log = logging.getLogger(__name__)

Emit = Callable[[DeviceInput], None]

# One line per cause per minute: a port spewing garbage writes a line a minute, not thousands.
LOG_INTERVAL_S = 60.0


class ProtocolError(Exception):
    """Bytes arrived that do not form a valid frame or reply. ``cause``: a short stable kind
    for the log throttle (default: the message up to its first colon)."""

    def __init__(self, message: str, cause: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class LinkLost(Exception):
    """The port is gone (unplugged adapter, closed pty, refused socket) or cannot be opened."""


@dataclass
class _Cause:
    since: float  # when the current interval began (the last line written for this cause)
    held: int = 0  # occurrences not written since
    level: int = logging.WARNING


class LogThrottle:
    """At most one log line per cause per interval; what was held back is counted and written
    as "repeated N times" with the next line of that cause, or by ``flush`` once the interval
    is over. A cause is a short stable text (an error kind), never the varying detail."""

    MAX_CAUSES = 64

    def __init__(
        self,
        logger: logging.Logger,
        name: str,
        *,
        interval_s: float = LOG_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.name = name
        self.interval_s = interval_s
        self._monotonic = monotonic
        self._causes: dict[str, _Cause] = {}

    def log(self, level: int, cause: str, msg: str, *args: object, exc_info: bool = False) -> bool:
        """Write ``msg`` unless ``cause`` was written less than an interval ago; True if written."""
        now = self._monotonic()
        if cause not in self._causes and len(self._causes) >= self.MAX_CAUSES:
            cause = "other"
        entry = self._causes.get(cause)
        if entry is not None and now - entry.since < self.interval_s:
            entry.held += 1
            return False
        if entry is not None and entry.held:
            msg += " [repeated %d times in the last %.0f s]"
            args = (*args, entry.held, now - entry.since)
        self._causes[cause] = _Cause(now, 0, level)
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def flush(self) -> None:
        """Write the count for each cause whose interval is over and that repeated in it."""
        now = self._monotonic()
        for cause, entry in list(self._causes.items()):
            if now - entry.since < self.interval_s:
                continue
            if entry.held:
                self.logger.log(entry.level, "%s: %s: repeated %d times in the last %.0f s",
                                self.name, cause, entry.held, now - entry.since)
                self._causes[cause] = _Cause(now, 0, entry.level)
            else:
                del self._causes[cause]


def open_serial(url: str, **settings: Any) -> Any:
    """``serial.serial_for_url`` that raises only ``LinkLost``, naming the cause: a port that
    cannot be opened, or a setting pyserial or the OS rejects (a baud rate too large for the
    driver raises OverflowError in pyserial, an unknown parity ValueError)."""
    try:
        return serial.serial_for_url(url, **settings)
    except (ValueError, OverflowError, TypeError) as exc:
        shown = ", ".join(f"{k}={settings[k]}" for k in ("baudrate", "bytesize", "parity", "stopbits")
                          if k in settings)
        raise LinkLost(f"{url}: serial settings rejected ({shown}): {exc}") from exc
    except OSError as exc:  # serial.SerialException is an OSError
        raise LinkLost(f"{url}: {exc}") from exc


def cause_of(detail: str) -> str:
    """A stable cause for a message: its text before the first colon (where details begin)."""
    return detail.split(":", 1)[0].strip()[:60] or "unknown"


class FrameDelay:
    """How late each timestamped frame arrives, from the device's own time stamps.

    The device's clock is not the host's, so a frame's delay cannot be read from its time stamp
    alone. The offset ``arrival - device time`` of the fastest frame in the last ``window_s``
    is the clock difference plus the line's own latency; a frame whose offset is larger arrived
    that much later than the fastest one did. Arrivals are taken on the host's monotonic clock,
    so an NTP step on the host is not mistaken for lateness. Differences up to ``tolerance_s``
    (time-stamp resolution and scheduling jitter) count as on time; a delay over ``window_s``
    is taken as the device's clock having been set back, and the estimate starts again.
    """

    def __init__(self, *, window_s: float = 300.0, tolerance_s: float = 1.5) -> None:
        self.window_s = window_s
        self.tolerance_s = tolerance_s
        self._samples: deque[tuple[float, float]] = deque()  # (arrival, offset)

    def update(self, device_s: float, arrival: float) -> float:
        """Seconds the frame stamped ``device_s`` (device clock) arrived late at ``arrival``."""
        offset = arrival - device_s
        while self._samples and arrival - self._samples[0][0] > self.window_s:
            self._samples.popleft()
        self._samples.append((arrival, offset))
        late = offset - min(o for _, o in self._samples)
        if late > self.window_s:
            self._samples.clear()
            self._samples.append((arrival, offset))
            return 0.0
        return late if late > self.tolerance_s else 0.0


class PortReader:
    """For a driver that reads its port as bytes arrive (``loop.add_reader`` on its file
    descriptor) and hands them to ``_on_bytes``. A read that fails, or a bug while handling the
    bytes, is kept in ``_lost`` and raised by the driver's next ``poll`` (``_raise_if_lost``):
    logged once per cause by ``Driver.run``, shown as the link state, and the port reconnected.
    The driver sets ``_ser``, ``_loop``, ``_fd`` and ``_wake`` when it connects."""

    port: str
    _ser: Any = None
    _loop: asyncio.AbstractEventLoop | None = None
    _fd: int | None = None
    _lost: BaseException | None = None
    _wake: asyncio.Event

    def _on_bytes(self, data: bytes) -> None:
        raise NotImplementedError

    def _raise_if_lost(self) -> None:
        lost = self._lost
        if lost is None:
            return
        if isinstance(lost, (OSError, LinkLost)):
            raise LinkLost(f"{self.port}: {lost}")
        raise lost  # a driver bug found while reading: run() logs it and reconnects

    def _lose(self, exc: BaseException) -> None:
        self._lost = exc
        if self._loop is not None and self._fd is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
            self._fd = None
        self._wake.set()

    def _on_readable(self) -> None:
        if self._ser is None:
            return
        try:
            data = self._ser.read(4096)
        except (OSError, serial.SerialException) as exc:
            self._lose(exc)
            return
        try:
            self._on_bytes(data)
        except Exception as exc:  # a bug here would otherwise be logged by asyncio on every byte
            self._lose(exc)


class Driver(ABC):
    role: DeviceRole

    def __init__(
        self,
        name: str,
        emit: Emit,
        *,
        poll_interval_s: float,
        timeout_s: float,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
        log_interval_s: float = LOG_INTERVAL_S,
    ) -> None:
        self.name = name
        self._emit = emit
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._monotonic = monotonic
        self.logs = LogThrottle(log, name, interval_s=log_interval_s, monotonic=monotonic)
        self.link_state: LinkState | None = None
        self.link_detail = ""
        self.protocol_errors = 0
        self.frames_ok = 0
        self.connect_attempts = 0
        self._last_good = monotonic()
        self._stopping = False

    # -- for subclasses -------------------------------------------------------------------

    @abstractmethod
    async def connect(self) -> None:
        """Open the port; raise ``LinkLost`` (or OSError) if it cannot be opened."""

    @abstractmethod
    async def poll(self) -> None:
        """One request/response cycle: emit readings, raise ProtocolError or LinkLost."""

    @abstractmethod
    async def close(self) -> None:
        """Release the port; must not raise."""

    def emit(self, item: DeviceInput) -> None:
        """Hand ``item`` on. A consumer that raises is logged, never allowed to stop the driver
        (if nothing reaches the engine, its silence check raises the alarm)."""
        try:
            self._emit(item)
        except Exception as exc:
            self.logs.log(logging.ERROR, "emit failed", "%s: could not hand on %s: %r", self.name,
                          type(item).__name__, exc, exc_info=True)

    def frame_ok(self) -> None:
        """Call when a valid frame was decoded: the link is alive."""
        self.frames_ok += 1
        self._last_good = self._monotonic()
        self._set_link(LinkState.CONNECTED)

    def protocol_error(self, detail: str, cause: str | None = None) -> None:
        """Count and log a bad frame; the link shows as garbled while only bad frames come."""
        self.protocol_errors += 1
        self.logs.log(logging.WARNING, f"protocol {cause or cause_of(detail)}",
                      "%s: protocol error #%d: %s", self.name, self.protocol_errors, detail)
        if self._monotonic() - self._last_good > self.poll_interval_s * 2:
            self._set_link(LinkState.GARBLED, detail)

    # -- the cycle ------------------------------------------------------------------------

    def _set_link(self, state: LinkState, detail: str = "") -> None:
        if state is self.link_state:
            return
        self.link_state = state
        self.link_detail = detail
        self.logs.log(logging.INFO, f"link {state.value}", "%s: link %s %s", self.name, state.value, detail)
        self.emit(LinkStatus(self.name, self.role, state, detail, self.protocol_errors))

    def stop(self) -> None:
        self._stopping = True

    async def _close(self) -> None:
        try:
            await self.close()
        except Exception as exc:  # close must not raise; if it does, the next connect retries
            self.logs.log(logging.WARNING, f"close {type(exc).__name__}", "%s: closing the port failed: %r",
                          self.name, exc)

    def _failed(self, what: str, exc: BaseException) -> None:
        """Log (throttled, by cause) and show as link state a failure of the cycle."""
        detail = f"{what}: {exc}" if str(exc) else f"{what}: {type(exc).__name__}"
        if isinstance(exc, (OSError, LinkLost)):
            self.logs.log(logging.WARNING, f"{what} {exc}"[:120], "%s: %s", self.name, detail)
        else:  # a driver bug or a setting the port rejects: keep the traceback, once per cause
            self.logs.log(logging.ERROR, f"{what} {type(exc).__name__} {exc}"[:120], "%s: %s", self.name,
                          detail, exc_info=True)
        self._set_link(LinkState.RECONNECTING, detail)

    async def run(self) -> None:
        backoff = self.backoff_initial_s
        while not self._stopping:
            self.connect_attempts += 1
            try:
                await self.connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure to open, a rejected setting included
                self._failed("cannot open", exc)
                await self._close()
                self.logs.flush()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            self._last_good = self._monotonic()
            frames_before = self.frames_ok
            try:
                await self._poll_loop()
            except asyncio.CancelledError:
                raise
            except (OSError, LinkLost) as exc:
                self._failed("link lost", exc)
            except Exception as exc:  # a driver bug must not kill monitoring of the other device
                self._failed("driver error", exc)
            finally:
                await self._close()
            if self.frames_ok > frames_before:  # the device answered: the next loss starts afresh
                backoff = self.backoff_initial_s
            self.logs.flush()
            if not self._stopping:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)

    async def _poll_loop(self) -> None:
        while not self._stopping:
            started = self._monotonic()
            try:
                await self.poll()
            except ProtocolError as exc:
                self.protocol_error(str(exc), exc.cause)
            if self._monotonic() - self._last_good > self.timeout_s:
                self._set_link(LinkState.SILENT, f"no valid reply for {self.timeout_s:.0f} s")
            self.logs.flush()
            elapsed = self._monotonic() - started
            await asyncio.sleep(max(0.0, self.poll_interval_s - elapsed))
