"""MLLP sender: the outbox's oldest message to the receiver, one at a time, each acknowledged.

- ``AA``/``CA``: delivered, deleted from the outbox.
- ``AR``/``CR``: rejected (the receiver cannot take this message at all): parked, logged, counted;
  the next message goes on.
- ``AE``/``CE``: an application error at the receiver: sent again after a pause, up to
  ``max_errors`` times, then parked.
- No connection, no answer within ``ack_timeout_s``, a garbled answer or one for another message:
  the connection is closed and the same message is sent again, with backoff from ``retry_min_s``
  doubling to ``retry_max_s``, for as long as it takes. The receiver may so see a message twice
  (it was processed but the ACK was lost); MSH-10 is the same both times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from monitord.hl7.er7 import FRAME_MAX, Ack, AckError, frame, parse_ack, read_frame
from monitord.hl7.outbox import Outbox, Queued

log = logging.getLogger(__name__)


@dataclass
class SenderStats:
    delivered: int = 0
    errors: int = 0  # AE/CE answers
    rejected: int = 0  # AR/CR answers
    link_failures: int = 0  # connects refused, timeouts, garbled or mismatched answers


class Sender:
    def __init__(self, outbox: Outbox, host: str, port: int, *, ack_timeout_s: float = 30.0,
                 connect_timeout_s: float = 10.0, retry_min_s: float = 1.0, retry_max_s: float = 30.0,
                 max_errors: int = 3) -> None:
        self.outbox = outbox
        self.host, self.port = host, port
        self.ack_timeout_s = ack_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self.max_errors = max_errors
        self.stats = SenderStats()
        self.connected = False
        self._backoff = retry_min_s
        self._wake = asyncio.Event()
        self._stopping = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._down_since: float | None = None

    def wake(self) -> None:
        """New messages are queued (call on the sender's event loop)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        try:
            while not self._stopping:
                item = self.outbox.peek()
                if item is None:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), 1.0)
                    continue
                await self._send(item)
        finally:
            await self._close()

    async def _send(self, item: Queued) -> None:
        try:
            ack = await self._exchange(item)
        except (OSError, TimeoutError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:
            await self._link_failed(item, exc)
            return
        if ack.control_id != item.control_id:
            await self._link_failed(item, AckError(f"answer for {ack.control_id!r}, not {item.control_id!r}"))
            return
        if self._down_since is not None:
            log.info("hl7: receiver %s:%d accepting again after %.0f s", self.host, self.port,
                     time.monotonic() - self._down_since)
            self._down_since = None
        self._backoff = self.retry_min_s
        if ack.accepted:
            self.outbox.done(item)
            self.stats.delivered += 1
        elif ack.rejected:
            self.stats.rejected += 1
            log.error("hl7: %s rejected by the receiver (%s %s): parked", item.control_id, ack.code, ack.text)
            self.outbox.park(item, f"{ack.code} {ack.text}".strip())
        else:
            self.stats.errors += 1
            n = self.outbox.failed(item)
            if n >= self.max_errors:
                log.error("hl7: %s refused %d times (%s %s): parked", item.control_id, n, ack.code, ack.text)
                self.outbox.park(item, f"{ack.code} {ack.text} (after {n} attempts)".strip())
            else:
                log.warning("hl7: %s: receiver error (%s %s), sending again", item.control_id, ack.code, ack.text)
                await self._pause()

    async def _exchange(self, item: Queued) -> Ack:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=FRAME_MAX), self.connect_timeout_s)
            self.connected = True
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        writer.write(frame(item.text))
        await writer.drain()
        return parse_ack(await asyncio.wait_for(read_frame(reader), self.ack_timeout_s))

    async def _link_failed(self, item: Queued, exc: BaseException) -> None:
        self.stats.link_failures += 1
        await self._close()
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("hl7: cannot deliver to %s:%d (%s: %s); %d message(s) queued, retrying", self.host,
                        self.port, type(exc).__name__, exc, self.outbox.size())
        else:
            log.debug("hl7: %s not delivered: %s", item.control_id, exc)
        await self._pause()
        self._backoff = min(self.retry_max_s, self._backoff * 2)

    async def _pause(self) -> None:
        end = time.monotonic() + self._backoff
        while not self._stopping and time.monotonic() < end:
            await asyncio.sleep(min(0.2, max(0.0, end - time.monotonic())))

    async def _close(self) -> None:
        self.connected = False
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
