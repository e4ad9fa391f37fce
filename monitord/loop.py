"""The rule loop: the one task that feeds the engine.

Drivers ``put`` readings; the dashboard link and CLI ``command`` actions and wait for the
verdict. Between inputs the loop ticks the engine every ``tick_s`` so silence, delays and
overdue checks fire on time. After every successful evaluation it calls the ``on_evaluated``
callbacks: the systemd watchdog is petted there, so a stuck loop stops petting it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

from monitord.engine import Engine
from monitord.errors import Refused
from monitord.readings import Input

log = logging.getLogger(__name__)


class RuleLoop:
    def __init__(self, engine: Engine, tick_s: float) -> None:
        if not (math.isfinite(tick_s) and tick_s > 0):  # the config refuses these; so does the loop
            raise ValueError(f"tick_s must be a positive finite number of seconds, not {tick_s!r}")
        self.engine = engine
        self.tick_s = tick_s
        self._queue: asyncio.Queue[tuple[Input, asyncio.Future[None] | None]] = asyncio.Queue()
        self.on_evaluated: list[Callable[[], None]] = []
        self._running = False

    def put(self, item: Input) -> None:
        """Queue a device input (call from the event loop's thread)."""
        self._queue.put_nowait((item, None))

    def put_threadsafe(self, loop: asyncio.AbstractEventLoop, item: Input) -> None:
        loop.call_soon_threadsafe(self.put, item)

    async def command(self, item: Input) -> None:
        """Submit a nurse action and wait for the engine's verdict; raises ``Refused``."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, fut))
        await fut

    async def run(self) -> None:
        self._running = True
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self.tick_s
        while self._running:
            timeout = max(0.0, next_tick - loop.time())
            try:
                item, fut = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                self._evaluate(None, None)
                next_tick = loop.time() + self.tick_s
                continue
            self._evaluate(item, fut)
            if loop.time() >= next_tick:
                self._evaluate(None, None)
                next_tick = loop.time() + self.tick_s

    def stop(self) -> None:
        self._running = False

    def _evaluate(self, item: Input | None, fut: asyncio.Future[None] | None) -> None:
        try:
            if item is None:
                self.engine.tick()
            else:
                self.engine.submit(item)
        except Refused as exc:
            if fut is not None and not fut.done():
                fut.set_exception(exc)
            return
        except Exception as exc:  # never let one bad input end monitoring
            log.exception("engine failed on %r", item)
            if fut is not None and not fut.done():
                fut.set_exception(exc)
            return
        if fut is not None and not fut.done():
            fut.set_result(None)
        for cb in self.on_evaluated:
            cb()
