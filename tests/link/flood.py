"""Connection floods for link tests: many raw sockets to the dashboard socket, opened without
blocking the caller's event loop (the server may be in the same loop)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from pathlib import Path


async def open_connections(path: Path, n: int, timeout_s: float) -> tuple[list[socket.socket], int]:
    """Open ``n`` connections to ``path``, trying again whenever the listen queue is full
    (EAGAIN), for at most ``timeout_s``. Returns the connected sockets and the attempts made."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    socks: list[socket.socket] = []
    attempts = 0
    while len(socks) < n and loop.time() < deadline:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        attempts += 1
        err = s.connect_ex(str(path))
        if err == 0:
            socks.append(s)
            if len(socks) % 32 == 0:
                await asyncio.sleep(0)  # let a server in this loop accept
            continue
        s.close()
        assert err in (errno.EAGAIN, errno.ECONNREFUSED), errno.errorcode.get(err, err)
        await asyncio.sleep(0.005)
    return socks, attempts


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()


def received(s: socket.socket) -> bytes | None:
    """What the server sent so far, up to 64 KiB; None while it has sent nothing and not closed."""
    try:
        return s.recv(65536, socket.MSG_PEEK)
    except BlockingIOError:
        return None
    except OSError:
        return b""
