"""One logging set-up for every command.

Under systemd (stderr is the journal: ``$JOURNAL_STREAM`` names stderr's device and inode) each
line carries its syslog priority as a ``<N>`` prefix, which journald strips and stores, and no
timestamp (the journal has one). Elsewhere lines are ``time LEVEL logger: message``.

A warning repeated (the same logger, level and text, numbers aside: a garbled frame of 37 bytes
every second) is throttled: the first is written, the rest of a ``REPEAT_WINDOW_S`` window are
counted and summarised as one "repeated N times" line. Different text (another device, another
cause) is never held back by it. Alarm transitions are never throttled (``extra={"throttle": False}``).
Third-party libraries (Alembic, SQLAlchemy, paho) log at WARNING and above unless the level is
DEBUG, so ``monitord export`` prints only its data.

Alarm transitions are logged at a level that follows their alarm priority (``alarm_level``):
HIGH at CRITICAL (journal priority 2, "crit"), MEDIUM and LOW at WARNING (4), advisories and
the transitions that end or silence an alarm at INFO (6).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
QUIET_LIBRARIES = ("alembic", "sqlalchemy", "paho", "asyncio", "urllib3", "markdown_it", "matplotlib")
REPEAT_WINDOW_S = 60.0
MAX_TRACKED = 1000  # distinct warning texts remembered for throttling (bounds the memory it takes)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"
_DIGITS = re.compile(r"\d+")

# Alarm transitions that start or worsen an alarm; the others end or silence one.
_ALARM_STARTS = frozenset({"raised", "reactivated", "escalated", "latched"})
_ALARM_LEVELS = {"high": logging.CRITICAL, "medium": logging.WARNING, "low": logging.WARNING,
                 "advisory": logging.INFO}


def syslog_priority(levelno: int) -> int:
    """The syslog priority journald stores for a Python level."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def alarm_level(transition: str, priority: str) -> int:
    """The logging level of one alarm transition (see the module docstring)."""
    if transition in _ALARM_STARTS:
        return _ALARM_LEVELS.get(priority, logging.WARNING)
    return logging.INFO


def stderr_is_journal(stream: IO[str] | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` (stderr) is the journal stream systemd connected (sd_journal_stream_fd
    semantics: ``JOURNAL_STREAM=<device>:<inode>`` matching the stream's file)."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(part) for part in value.split(":"))
        st = os.fstat((stream or sys.stderr).fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``, every line of a multi-line record (a traceback) prefixed."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines() or [""])


@dataclass
class _Repeat:
    since: float
    count: int
    last: logging.LogRecord


class Handler(logging.StreamHandler):
    """A stream handler that throttles repeated warnings (see the module docstring)."""

    def __init__(self, stream: IO[str], window_s: float = REPEAT_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(stream)
        self.window_s = window_s
        self._clock = clock
        self._repeats: dict[tuple[str, int, str], _Repeat] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING or not getattr(record, "throttle", True):
            super().emit(record)
            return
        try:
            key = (record.name, record.levelno, _DIGITS.sub("#", record.getMessage()))
        except Exception:  # a bad format string: logging's own error report, never the caller's
            self.handleError(record)
            return
        now = self._clock()
        rep = self._repeats.get(key)
        if rep is not None and now - rep.since < self.window_s:
            rep.count += 1
            rep.last = record
            return
        if rep is not None and rep.count:
            super().emit(self._summary(rep, now))
        if rep is None and len(self._repeats) >= MAX_TRACKED:
            self.flush_repeats()  # windows that have ended
            while len(self._repeats) >= MAX_TRACKED:  # a flood of distinct texts: forget the oldest
                old = self._repeats.pop(next(iter(self._repeats)))
                if old.count:
                    super().emit(self._summary(old, now))
        self._repeats[key] = _Repeat(now, 0, record)
        super().emit(record)

    def flush_repeats(self, everything: bool = False) -> None:
        """Write the summary of every window that has ended (all of them with ``everything``)."""
        now = self._clock()
        for key, rep in list(self._repeats.items()):
            if everything or now - rep.since >= self.window_s:
                if rep.count:
                    self.acquire()
                    try:
                        super().emit(self._summary(rep, now))
                    finally:
                        self.release()
                del self._repeats[key]

    @staticmethod
    def _summary(rep: _Repeat, now: float) -> logging.LogRecord:
        last = rep.last
        attrs: dict[str, Any] = dict(last.__dict__)
        attrs.update(msg=f"{last.getMessage()} [repeated {rep.count} times in the last {now - rep.since:.0f} s]",
                     args=None, exc_info=None, exc_text=None, stack_info=None)
        return logging.makeLogRecord(attrs)


_installed: Handler | None = None
_root_level: int | None = None  # the root logger's level before setup_logging


def setup_logging(level: str | int = "info", stream: IO[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Handler:
    """Install the one handler on the root logger (again: replaces the previous one)."""
    global _installed, _root_level
    stream = stream or sys.stderr
    levelno = LEVELS[level] if isinstance(level, str) else level
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    else:
        _root_level = root.level
    handler = Handler(stream)
    journal = stderr_is_journal(stream, environ)
    handler.setFormatter(JournalFormatter() if journal else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(levelno)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET if levelno <= logging.DEBUG else logging.WARNING)
    _installed = handler
    return handler


def reset_logging() -> None:
    """Remove the handler ``setup_logging`` installed and give libraries their levels back."""
    global _installed
    if _installed is not None:
        root = logging.getLogger()
        root.removeHandler(_installed)
        if _root_level is not None:
            root.setLevel(_root_level)
        _installed = None
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET)


def flush_repeats(everything: bool = False) -> None:
    if _installed is not None:
        _installed.flush_repeats(everything)


def report_error(message: str, stream: IO[str] | None = None) -> None:
    """Print an error a command cannot go on with: plain on a terminal, at priority 3 in the journal."""
    stream = stream or sys.stderr
    if stderr_is_journal(stream):
        message = "\n".join("<3>" + line for line in message.splitlines())
    print(message, file=stream)
