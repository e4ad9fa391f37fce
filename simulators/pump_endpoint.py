"""The device end of a pump simulator's line: a pty, a real serial port, or a TCP socket.

For a pty the driver opens a stable symlink (``link``) to the current /dev/pts/N, as it would a
udev ``/dev/serial/by-id`` name, so an unplug can remove the device and a replug bring a new one
back under the same name. ``url`` is what a driver configures as its port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Callable
from pathlib import Path

import serial

from monitord.simulators.pump_model import Fault, PumpModel
from monitord.simulators.transport import PtyPair, open_pty


class Endpoint:
    """Byte pipe to the host. ``read()`` waits for data; ``unplug(s)`` drops the line for s seconds."""

    url: str

    def __init__(self) -> None:
        self._data = bytearray()
        self._event = asyncio.Event()
        self.connected = True

    def _received(self, data: bytes) -> None:
        self._data += data
        self._event.set()

    async def read(self, timeout_s: float | None = None) -> bytes:
        """Bytes received since the last read (waits for at least one; ``b""`` on timeout)."""
        if not self._data:
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout_s)
        out = bytes(self._data)
        self._data.clear()
        return out

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    async def unplug(self, duration_s: float) -> None:
        self._disconnect()
        self.connected = False
        await asyncio.sleep(duration_s)
        self._connect()
        self.connected = True

    def _disconnect(self) -> None:
        raise NotImplementedError

    def _connect(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.connected:
            self._disconnect()
            self.connected = False


class PtyEndpoint(Endpoint):
    def __init__(self, link: str | Path) -> None:
        super().__init__()
        self.link = Path(link)
        self.url = str(self.link)
        self.pty: PtyPair | None = None
        self._connect()

    def _connect(self) -> None:
        self.pty = open_pty()
        tmp = self.link.with_name(self.link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(self.pty.path)
        tmp.replace(self.link)
        asyncio.get_running_loop().add_reader(self.pty.master_fd, self._on_readable)

    def _on_readable(self) -> None:
        assert self.pty is not None
        try:
            data = os.read(self.pty.master_fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO while no process holds the slave open: nothing to read
        if data:
            self._received(data)

    def _disconnect(self) -> None:
        if self.pty is None:
            return
        asyncio.get_running_loop().remove_reader(self.pty.master_fd)
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        self.pty.close()  # the host's open slave now reads EIO, as a vanished USB adapter does
        self.pty = None

    async def write(self, data: bytes) -> None:
        if self.pty is None:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.pty.master_fd, view)
            except BlockingIOError:
                await asyncio.sleep(0.001)
                continue
            except OSError:
                return
            view = view[n:]


class SerialEndpoint(Endpoint):
    """A real port (the simulator on one USB adapter, the driver on another, null-modem between)."""

    def __init__(self, port: str, **settings: object) -> None:
        super().__init__()
        self.url = port
        self._settings = settings
        self._port: serial.SerialBase | None = None
        self._task: asyncio.Task[None] | None = None
        self._connect()

    def _connect(self) -> None:
        self._port = serial.serial_for_url(self.url, timeout=0, **self._settings)
        self._task = asyncio.get_running_loop().create_task(self._pump_input())

    async def _pump_input(self) -> None:
        while self._port is not None:
            try:
                data = self._port.read(4096)
            except (serial.SerialException, OSError):
                return
            if data:
                self._received(bytes(data))
            await asyncio.sleep(0.002)

    def _disconnect(self) -> None:
        # A real port cannot be unplugged from software: stop answering and drop the port.
        if self._task is not None:
            self._task.cancel()
        if self._port is not None:
            self._port.close()
            self._port = None

    async def write(self, data: bytes) -> None:
        if self._port is not None:
            self._port.write(data)


class TcpEndpoint(Endpoint):
    """Listens on host:port; the driver connects with ``socket://host:port``. One client at a time."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__()
        self.host, self.port = host, port
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> TcpEndpoint:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"socket://{self.host}:{self.port}"
        return self

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = writer
        while True:
            data = await reader.read(4096)
            if not data:
                break
            self._received(data)
        if self._writer is writer:
            self._writer = None

    async def write(self, data: bytes) -> None:
        if self._writer is not None:
            self._writer.write(data)
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()

    def _disconnect(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._server is not None:
            self._server.close()
            self._server = None

    def _connect(self) -> None:
        asyncio.get_running_loop().create_task(self.start())


async def send_reply(
    endpoint: Endpoint,
    model: PumpModel,
    reply: bytes,
    corrupt_check: Callable[[bytes], bytes],
    rng: random.Random,
) -> None:
    """Send ``reply`` as the model's active faults distort it."""
    model_fault = model.fault_active
    if not endpoint.connected or model_fault(Fault.UNPLUG) or model_fault(Fault.SILENT):
        return
    if model_fault(Fault.SLOW):
        await asyncio.sleep(model.slow_reply_s)
    if model_fault(Fault.GARBLE):
        reply = bytes(rng.randrange(256) for _ in range(max(1, len(reply))))
    elif model_fault(Fault.BAD_CRC):
        reply = corrupt_check(reply)
    if model_fault(Fault.PARTIAL):
        reply = reply[: max(1, len(reply) // 2)]
    await endpoint.write(reply)
