"""systemd notification (sd_notify) and the watchdog that proves monitoring works.

``notify`` sends one datagram to ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract
namespace), as systemd's self-contained example does; without the variable it does nothing, so
tests and a shell run the same code as the service.

``Watchdog`` pets systemd's watchdog (``WatchdogSec=`` in the unit) only from the rule loop,
after an evaluation, and only if the engine's last evaluation is recent on the monotonic clock:
a stuck loop, a blocked rule or a dead event loop stops the petting and systemd restarts the
daemon. There is deliberately no timer thread that could keep petting a daemon that has stopped
monitoring.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from monitord.clock import Clock
from monitord.config import Config
from monitord.engine import Engine

log = logging.getLogger(__name__)


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (``KEY=value`` lines) to systemd. False when not run under systemd."""
    path = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    if path[0] == "@":  # abstract namespace
        path = "\0" + path[1:]
    if path[0] not in ("/", "\0"):
        return False  # vsock and other addresses: not used on the targets
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(path)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify to %r failed: %s", path, exc)
        return False
    return True


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """systemd's watchdog timeout in seconds, or None when no watchdog is asked of this process."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (we were exec'd by a wrapper)
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


class Watchdog:
    """Readiness, status and watchdog messages for one daemon.

    ``evaluated`` is appended to ``RuleLoop.on_evaluated``. It pets at most every half watchdog
    timeout, measured on the real monotonic clock (the one systemd measures). The freshness
    check uses the injected clock, the one the engine stamps evaluations with.
    """

    STATUS_EVERY_S = 10.0  # unchanged status is repeated this often
    STATUS_MIN_S = 1.0  # a changed status is sent at most this often

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        config: Config,
        environ: Mapping[str, str] | None = None,
        real_monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self._env = dict(os.environ if environ is None else environ)
        self._now = real_monotonic
        timeout = watchdog_interval_s(self._env)
        self.pet_every_s = timeout / 2 if timeout is not None else None
        # An evaluation older than this is not proof of life: the loop evaluates every tick_s.
        # The floor leaves room for slow subscribers (a store write on an SD card) in between.
        self.max_age_s = max(2 * config.watchdog.tick_s, 1.0)
        self._last_pet: float | None = None
        self._last_status: tuple[str, float] | None = None
        self.pets = 0

    def status_line(self) -> str:
        """One line for ``systemctl status``: bed, session state, highest alarm."""
        active = self.engine.alarms.active()
        if active:
            top = active[0]
            alarm = f"highest alarm {top.priority.value} {top.rule.id} ({len(active)} active)"
        else:
            alarm = "no alarm"
        return f"bed {self.engine.bed_id}: {self.engine.state.status.value}, {alarm}"

    def ready(self) -> None:
        status = self.status_line()
        notify(f"READY=1\nSTATUS={status}", self._env)
        self._last_status = (status, self._now())

    def fresh(self) -> bool:
        last = self.engine.last_evaluation_mono
        return last is not None and 0 <= self.clock.monotonic() - last <= self.max_age_s

    def evaluated(self) -> None:
        """Called by the rule loop after every successful evaluation."""
        if not self.fresh():
            log.warning("last evaluation is stale: not petting the watchdog")
            return
        now = self._now()
        lines = []
        if self.pet_every_s is not None and (self._last_pet is None or now - self._last_pet >= self.pet_every_s):
            lines.append("WATCHDOG=1")
            self._last_pet = now
            self.pets += 1
        status = self.status_line()
        last = self._last_status
        if last is None or now - last[1] >= (self.STATUS_MIN_S if status != last[0] else self.STATUS_EVERY_S):
            lines.append(f"STATUS={status}")
            self._last_status = (status, now)
        if lines:
            notify("\n".join(lines), self._env)

    def stopping(self) -> None:
        notify("STOPPING=1\nSTATUS=stopping", self._env)
