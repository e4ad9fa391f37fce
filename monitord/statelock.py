"""One daemon per state directory: an exclusive ``flock`` on ``<state_dir>/monitord.lock``, held for
the daemon's life (the kernel releases it when the process ends, however it ends).

Two daemons on one state directory would interleave their events in one store and overwrite each
other's records; the second one is refused with the first one's pid, which the lock file holds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from pathlib import Path

from monitord.errors import StartupError

log = logging.getLogger(__name__)

LOCK_FILENAME = "monitord.lock"


class StateDirLock:
    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / LOCK_FILENAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``StartupError`` naming the holder."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            # O_CLOEXEC: a child process must never inherit (and so keep) the lock.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise StartupError(
                f"cannot use the state directory {self.dir}: {exc.strerror or exc}. It must exist and be "
                "writable by the service user (StateDirectory= in the unit; docs/install.md)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                # A filesystem without locks (ENOLCK): monitoring matters more than the guard.
                log.warning("cannot lock %s (%s): a second daemon on this state directory would not be refused",
                            self.path, exc.strerror or exc)
                self._fd = fd
                return
            holder = _read_pid(fd)
            os.close(fd)
            raise StartupError(
                f"another monitord (pid {holder}) is already running on the state directory {self.dir} "
                f"(it holds {self.path}). Stop it first (systemctl stop monitord), or give this one its own "
                "[store] state_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no stale pid for the next reader; the file itself stays
        os.close(fd)  # closing the descriptor releases the lock

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
