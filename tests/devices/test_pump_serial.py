"""The pump drivers' serial line waits for a reply on the port's file descriptor, not by polling."""

from __future__ import annotations

import asyncio
import os

import pytest

from monitord.config import SerialPort
from monitord.drivers.base import LinkLost
from monitord.drivers.pump_serial import SerialLine
from monitord.simulators.transport import open_pty


async def test_waiting_for_a_reply_reads_only_when_bytes_arrive() -> None:
    pty = open_pty()
    line = SerialLine(SerialPort(port=pty.path))
    line.open()
    reads = 0
    read_now = line._read_now

    def counting() -> bytes:
        nonlocal reads
        reads += 1
        return read_now()

    line._read_now = counting  # type: ignore[method-assign]
    try:
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, os.write, pty.master_fd, b"AB")
        loop.call_later(0.5, os.write, pty.master_fd, b"CD\r")
        reply = await line.read_reply(lambda b: b.endswith(b"\r"), timeout_s=5.0)
        assert reply == b"ABCD\r"
        # Two arrivals, two reads (a 2 ms polling loop made about 250 here).
        assert reads <= 4
        reads = 0
        assert await line.read_reply(lambda b: True, timeout_s=0.2) == b""  # silence: the timeout
        assert reads <= 1
    finally:
        line.close()
        pty.close()


async def test_quiet_time_after_a_complete_reply_is_waited_out() -> None:
    pty = open_pty()
    line = SerialLine(SerialPort(port=pty.path))
    line.open()
    try:
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, os.write, pty.master_fd, b"12")
        loop.call_later(0.10, os.write, pty.master_fd, b"34")  # within the quiet time: still this reply
        reply = await line.read_reply(lambda b: len(b) >= 2, timeout_s=5.0, quiet_s=0.2)
        assert reply == b"1234"
    finally:
        line.close()
        pty.close()


async def test_a_vanished_port_while_waiting_is_a_lost_link() -> None:
    pty = open_pty()
    line = SerialLine(SerialPort(port=pty.path))
    line.open()
    try:
        asyncio.get_running_loop().call_later(0.1, pty.close)  # the adapter is pulled: the port reads EIO
        with pytest.raises(LinkLost):
            await line.read_reply(lambda b: False, timeout_s=5.0)
    finally:
        line.close()
