"""Where a simulator's device side lives: a pty pair, a real serial port, or a TCP socket.

``open_device_side`` returns a pyserial-like object the simulator reads and writes, and the path
a driver should open (for a pty, the slave's /dev/pts/N; for TCP, ``socket://host:port``).
"""

from __future__ import annotations

import contextlib
import os
import pty
import termios
import tty
from dataclasses import dataclass


@dataclass
class PtyPair:
    """A pseudo-terminal: the simulator holds ``master_fd``, the driver opens ``path``."""

    master_fd: int
    slave_fd: int
    path: str

    def close(self) -> None:
        for fd in (self.master_fd, self.slave_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def open_pty() -> PtyPair:
    """Open a raw pty pair. The slave fd stays open here so the pair survives driver reconnects."""
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    os.set_blocking(master, False)
    return PtyPair(master, slave, os.ttyname(slave))
