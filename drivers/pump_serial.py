"""A serial line for request/response pump protocols, on asyncio.

Opens a port with pyserial's ``serial_for_url`` (a device path, a pty, or ``socket://host:port``)
in non-blocking mode. While a reply is awaited the port's file descriptor is watched with
``loop.add_reader`` (as the Datex driver does), so the event loop sleeps until a byte arrives;
pump protocols are one request, one reply, so nothing is read in between. A port without a file
descriptor falls back to checking every ``READ_TICK_S``. Any OS-level failure becomes ``LinkLost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import serial

from monitord.config import SerialPort
from monitord.drivers.base import LinkLost, open_serial

READ_TICK_S = 0.002


class SerialLine:
    def __init__(self, settings: SerialPort) -> None:
        self.settings = settings
        self._port: serial.SerialBase | None = None

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        s = self.settings
        self._port = None
        self._port = open_serial(
            s.port,
            baudrate=s.baudrate,
            bytesize=s.bytesize,
            parity=s.parity,
            stopbits=s.stopbits,
            rtscts=s.rtscts,
            timeout=0,
            write_timeout=2.0,
        )

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(Exception):  # a vanished port may fail to close; it is gone
                port.close()

    def _require(self) -> serial.SerialBase:
        if self._port is None:
            raise LinkLost("port not open")
        return self._port

    def discard_input(self) -> bytes:
        """Drop (and return) whatever is waiting, so a late reply cannot answer the next request."""
        return self._read_now()

    def _read_now(self) -> bytes:
        port = self._require()
        try:
            waiting = port.in_waiting
            return bytes(port.read(max(waiting, 1)))
        except (serial.SerialException, OSError) as exc:
            raise LinkLost(f"{self.settings.port}: {exc}") from exc

    async def write(self, data: bytes) -> None:
        port = self._require()
        try:
            port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise LinkLost(f"{self.settings.port}: {exc}") from exc

    def _fileno(self) -> int | None:
        try:
            return int(self._require().fileno())
        except (AttributeError, NotImplementedError, OSError, ValueError, serial.SerialException):
            return None

    async def read_reply(
        self,
        complete: Callable[[bytes], bool],
        timeout_s: float,
        *,
        quiet_s: float = 0.0,
        max_bytes: int = 4096,
    ) -> bytes:
        """Collect bytes until ``complete(buffer)`` or the timeout; return what arrived.

        ``quiet_s`` > 0 waits that long after the last byte before calling it complete (Modbus
        RTU frame end); it still returns early once ``complete`` holds and the line is quiet.
        """
        fd = self._fileno()
        if fd is None:
            return await self._read_reply_ticking(complete, timeout_s, quiet_s, max_bytes)
        loop = asyncio.get_running_loop()
        buf = bytearray()
        arrived = asyncio.Event()
        lost: list[LinkLost] = []
        last_rx = time.monotonic()

        def on_readable() -> None:
            nonlocal last_rx
            try:
                chunk = self._read_now()
            except LinkLost as exc:
                lost.append(exc)
                loop.remove_reader(fd)
                arrived.set()
                return
            if chunk:
                buf.extend(chunk)
                last_rx = time.monotonic()
                arrived.set()

        deadline = time.monotonic() + timeout_s
        loop.add_reader(fd, on_readable)
        try:
            while True:
                if lost:
                    raise lost[0]
                now = time.monotonic()
                if len(buf) >= max_bytes:
                    return bytes(buf)
                wait = deadline - now
                if buf and complete(bytes(buf)):
                    quiet_left = quiet_s - (now - last_rx)
                    if quiet_left <= 0:
                        return bytes(buf)
                    wait = min(wait, quiet_left)
                if wait <= 0:
                    return bytes(buf)
                arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), wait)
        finally:
            if not lost:
                with contextlib.suppress(Exception):
                    loop.remove_reader(fd)

    async def _read_reply_ticking(
        self, complete: Callable[[bytes], bool], timeout_s: float, quiet_s: float, max_bytes: int
    ) -> bytes:
        buf = bytearray()
        deadline = time.monotonic() + timeout_s
        last_rx = time.monotonic()
        while True:
            chunk = self._read_now()
            now = time.monotonic()
            if chunk:
                buf += chunk
                last_rx = now
                if len(buf) >= max_bytes:
                    return bytes(buf)
            if buf and complete(bytes(buf)) and now - last_rx >= quiet_s:
                return bytes(buf)
            if now >= deadline:
                return bytes(buf)
            await asyncio.sleep(READ_TICK_S)
