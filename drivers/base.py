"""What every device driver shares: the link-state machine, reconnect backoff, error counting.

A driver subclasses ``Driver`` and implements ``connect``, ``poll`` and ``close``. ``run`` owns
the cycle: connect, poll on the interval, and on any failure report the link state, close, wait
with exponential backoff and reconnect. Drivers hand typed readings to ``emit``; they hold no
clinical policy. Nothing a device sends may raise out of ``run``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from monitord.readings import DeviceInput, DeviceRole, LinkState, LinkStatus

log = logging.getLogger(__name__)

Emit = Callable[[DeviceInput], None]


class ProtocolError(Exception):
    """Bytes arrived that do not form a valid frame or reply."""


class LinkLost(Exception):
    """The port is gone (unplugged adapter, closed pty, refused socket)."""


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
    ) -> None:
        self.name = name
        self._emit = emit
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._monotonic = monotonic
        self.link_state: LinkState | None = None
        self.protocol_errors = 0
        self.frames_ok = 0
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
        self._emit(item)

    def frame_ok(self) -> None:
        """Call when a valid frame was decoded: the link is alive."""
        self.frames_ok += 1
        self._last_good = self._monotonic()
        self._set_link(LinkState.CONNECTED)

    def protocol_error(self, detail: str) -> None:
        """Count and log a bad frame; the link shows as garbled while only bad frames come."""
        self.protocol_errors += 1
        log.warning("%s: protocol error #%d: %s", self.name, self.protocol_errors, detail)
        if self._monotonic() - self._last_good > self.poll_interval_s * 2:
            self._set_link(LinkState.GARBLED, detail)

    # -- the cycle ------------------------------------------------------------------------

    def _set_link(self, state: LinkState, detail: str = "") -> None:
        if state is self.link_state:
            return
        self.link_state = state
        log.info("%s: link %s %s", self.name, state.value, detail)
        self._emit(LinkStatus(self.name, self.role, state, detail, self.protocol_errors))

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        backoff = self.backoff_initial_s
        while not self._stopping:
            try:
                await self.connect()
            except (OSError, LinkLost) as exc:
                self._set_link(LinkState.RECONNECTING, f"cannot open: {exc}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            self._last_good = self._monotonic()
            try:
                await self._poll_loop()
                backoff = self.backoff_initial_s
            except (OSError, LinkLost) as exc:
                self._set_link(LinkState.RECONNECTING, f"link lost: {exc}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a driver bug must not kill monitoring of the other device
                log.exception("%s: unexpected driver error", self.name)
                self._set_link(LinkState.RECONNECTING, f"driver error: {exc!r}")
            finally:
                await self.close()
            if not self._stopping:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)

    async def _poll_loop(self) -> None:
        while not self._stopping:
            started = self._monotonic()
            try:
                await self.poll()
            except ProtocolError as exc:
                self.protocol_error(str(exc))
            if self._monotonic() - self._last_good > self.timeout_s:
                self._set_link(LinkState.SILENT, f"no valid reply for {self.timeout_s:.0f} s")
            elapsed = self._monotonic() - started
            await asyncio.sleep(max(0.0, self.poll_interval_s - elapsed))
