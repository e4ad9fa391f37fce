"""The dashboard's end of the link (asyncio): connects, keeps reconnecting, hands every
server message to a callback and sends commands that wait for their reply.

``responding()`` is what the "MONITOR NOT RESPONDING" banner shows: no message for
``NOT_RESPONDING_AFTER_S``, no connection, or a daemon whose rule loop stopped evaluating.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitord.link import protocol as p

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 15.0


class CommandFailed(Exception):
    """The daemon refused a command, or could not be asked; the message says why."""


class NeedsConfirmation(CommandFailed):
    """The daemon will accept the command only when it is sent again with ``confirm=True``;
    ``preview`` is what the nurse must see first (computed dose and care-area verdict, or the
    weight and the one it was checked against)."""

    def __init__(self, message: str, preview: dict[str, Any]) -> None:
        super().__init__(message)
        self.preview = preview


class LinkClient:
    def __init__(
        self,
        path: str | Path,
        on_message: Callable[[dict[str, Any]], None],
        *,
        on_state: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        retry_s: float = 1.0,
        not_responding_after_s: float = p.NOT_RESPONDING_AFTER_S,
    ) -> None:
        self.path = Path(path)
        self.on_message = on_message
        self.on_state = on_state
        self.clock = clock
        self.retry_s = retry_s
        self.not_responding_after_s = not_responding_after_s
        self.connected = False
        self.hello: dict[str, Any] | None = None
        self.last_heard: float | None = None
        self.evaluated_age_s: float | None = None
        self.last_error = ""
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._closing = False

    # -- state ------------------------------------------------------------------------------

    def responding(self) -> bool:
        if not self.connected or self.last_heard is None:
            return False
        if self.clock() - self.last_heard > self.not_responding_after_s:
            return False
        tick_s = float((self.hello or {}).get("config", {}).get("tick_s", 1.0))
        return self.evaluated_age_s is None or self.evaluated_age_s <= self.not_responding_after_s + tick_s

    def why_not_responding(self) -> str:
        """What the not-responding banner says after its headline (empty while responding)."""
        if not self.connected or self.last_heard is None:
            return self.last_error or "not connected to the monitor"
        quiet = self.clock() - self.last_heard
        if quiet > self.not_responding_after_s:
            return f"nothing heard from the monitor for {quiet:.0f} s"
        if not self.responding():
            return f"the monitor stopped evaluating its alarm rules {self.evaluated_age_s:.0f} s ago"
        return ""

    # -- connection -------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect and read until ``close``; reconnect whenever the link drops."""
        while not self._closing:
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.path), limit=p.MAX_SERVER_LINE_BYTES)
            except OSError as exc:
                self.last_error = f"cannot connect to {self.path}: {exc.strerror or exc}"
                await asyncio.sleep(self.retry_s)
                continue
            self._writer = writer
            try:
                await self._read(reader)
            except (OSError, ValueError, asyncio.LimitOverrunError) as exc:
                self.last_error = f"link lost: {exc}"
            finally:
                self._down(writer)
            if not self._closing:
                await asyncio.sleep(self.retry_s)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            line = await reader.readline()
            if not line.endswith(b"\n"):
                self.last_error = "the monitor closed the link"
                return
            try:
                msg = p.decode(line)
            except p.ProtocolError as exc:
                log.warning("ignoring a bad message from the monitor: %s", exc)
                continue
            if msg.get("type") == "refused":  # too many dashboards: the daemon says so and closes
                self.last_error = str(msg.get("error") or "the monitor refused the link")[:200]
                return
            self.last_heard = self.clock()
            kind = msg.get("type")
            if kind == "hello":
                self.hello = msg
                if msg.get("protocol") != p.PROTOCOL_VERSION:
                    self.last_error = f"monitor speaks link protocol {msg.get('protocol')}, this dashboard {p.PROTOCOL_VERSION}"
                    log.error(self.last_error)
                if not self.connected:
                    self.connected = True
                    self.last_error = ""
                    if self.on_state:
                        self.on_state(True)
            elif kind == "heartbeat":
                self.evaluated_age_s = msg.get("evaluated_age_s")
            elif kind == "reply":
                msg_id = msg.get("id")
                fut = self._pending.pop(msg_id, None) if isinstance(msg_id, int) else None
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                continue
            self.on_message(msg)

    def _down(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        self._writer = None
        was = self.connected
        self.connected = False
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(CommandFailed("The link to the monitor was lost; the action may not have been recorded"))
        self._pending.clear()
        if was and self.on_state:
            self.on_state(False)

    async def close(self) -> None:
        self._closing = True
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 1.0)

    # -- commands ---------------------------------------------------------------------------

    async def command(self, kind: str, **fields: Any) -> None:
        """Send one command and wait for the daemon's verdict. Raises ``CommandFailed``."""
        if self._writer is None or not self.connected:
            raise CommandFailed("Not connected to the monitor: the action was not recorded")
        msg_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        try:
            self._writer.write(p.encode({"type": kind, "id": msg_id, **fields}))
            await self._writer.drain()
            reply = await asyncio.wait_for(fut, COMMAND_TIMEOUT_S)
        except TimeoutError:
            raise CommandFailed("The monitor did not answer: the action may not have been recorded") from None
        except (OSError, ValueError) as exc:
            raise CommandFailed(f"Could not send to the monitor: {exc}") from None
        finally:
            self._pending.pop(msg_id, None)
        if not reply.get("ok"):
            error = str(reply.get("error") or "refused")
            if reply.get("needs_confirmation"):
                preview = reply.get("preview")
                raise NeedsConfirmation(error, preview if isinstance(preview, dict) else {})
            raise CommandFailed(error)
