"""``monitord central --web``: the overview in a browser (Starlette, served by uvicorn).

One tile per bed, fed by the same ``FeedConsumer`` and ``Overview`` as the terminal overview and
judged by the same rules (``monitord.central.view``). The page receives tiles by server-sent
events (``/events``): first every bed, then only the beds that changed. A bed's tile is sent
again when the bed sends anything, or when time alone changes what it shows (NO DATA, a stale
value); the page ages what it shows between tiles. A bed page (``/bed/<id>``) shows trends and
the alarm history from ``/api/beds/<id>``.

Read-only: every route is GET; nothing that acknowledges or changes anything is ever sent to the
beds. The one message it publishes is a delivery receipt for each alarm transition it has pushed
to at least one open page (none while no page is open: nobody is looking). Feed strings reach the page
only as JSON and are put into it as text, never as HTML; the Content-Security-Policy allows no
inline script.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from monitord.central import view as v
from monitord.central.consumer import FeedConsumer
from monitord.central.feed import Overview
from monitord.central.receipts import Receipts
from monitord.config import Config, MqttConfig

log = logging.getLogger(__name__)

TICK_S = 0.25  # beds that sent something are pushed at most this late
FULL_S = 1.0  # every bed is judged again this often: NO DATA and stale values come with time alone
KEEPALIVE_S = 15.0
CLIENT_QUEUE = 64  # updates a slow page may fall behind before it is dropped (it reconnects for a snapshot)
STATIC = resources.files("monitord.central").joinpath("static")
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [h for h in message["headers"] if h[0].lower() != b"cache-control"]
                message["headers"] += SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


class Broadcaster:
    """Turns the model into tile updates and hands each to every connected page."""

    def __init__(self, overview: Overview, limits: v.Limits, connected: Callable[[], bool],
                 clock: Callable[[], float] = time.monotonic, receipts: Receipts | None = None) -> None:
        self.overview = overview
        self.receipts = receipts
        self.limits = limits
        self.connected = connected
        self.clock = clock
        self.tiles: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, tuple[int, int, str]] = {}
        self.order: list[str] = []
        self.clients: set[asyncio.Queue[str | None]] = set()
        self._sent: dict[str, tuple[int, tuple[Any, ...]]] = {}  # bed -> (its version, what was shown)
        self._version = 0
        self._last_full = -math.inf
        self._was_connected: bool | None = None

    def _message(self, tiles: list[dict[str, Any]], order: list[str] | None, full: bool) -> str:
        body: dict[str, Any] = {"now": time.time(), "connected": self.connected(), "count": len(self.tiles),
                                "tiles": tiles, "full": full}
        if order is not None:
            body["order"] = order
        return json.dumps(body, separators=(",", ":"))

    def snapshot(self) -> str:
        return self._message([self.tiles[b] for b in self.order], self.order, True)

    def step(self) -> str | None:
        """One tick: the update to send, or None when nothing changed."""
        now = self.clock()
        full = now - self._last_full >= FULL_S
        if full:
            self._last_full = now
            self._version = self.overview.version  # first: a change after this is sent again next tick
            beds = self.overview.all()
        else:
            beds, self._version = self.overview.changed_since(self._version)
        changed = []
        for bed in beds:
            tile = v.tile(bed, now, self.limits)
            shown = tile.shown()
            if self._sent.get(bed.bed_id) == (bed.version, shown):
                continue
            self._sent[bed.bed_id] = (bed.version, shown)
            self.tiles[bed.bed_id] = tile.to_json()
            self.keys[bed.bed_id] = tile.sort_key()
            changed.append(self.tiles[bed.bed_id])
        order = sorted(self.keys, key=self.keys.__getitem__)
        new_order = order if order != self.order else None
        self.order = order
        connected = self.connected()
        if not changed and new_order is None and connected == self._was_connected:
            return None
        self._was_connected = connected
        return self._message(changed, new_order, False)

    def publish(self, message: str) -> None:
        for q in list(self.clients):
            try:
                q.put_nowait(message)
            except asyncio.QueueFull:  # too slow: drop it; the page reconnects and starts from a snapshot
                self.clients.discard(q)
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
                q.put_nowait(None)

    def tick(self) -> None:
        """One step, pushed to the pages; then the receipts of what they now show."""
        arrived = self.receipts.take() if self.receipts is not None else []  # before the step: all in it
        message = self.step()
        if message is not None:
            self.publish(message)
        if self.receipts is not None and arrived:
            if self.clients:
                self.receipts.send(arrived)
            else:
                self.receipts.give_back(arrived)

    async def run(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(TICK_S)

    def close(self) -> None:
        for q in list(self.clients):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        self.clients.clear()


def create_web_app(overview: Overview, limits: v.Limits, consumer: FeedConsumer | None = None,
                   clock: Callable[[], float] = time.monotonic) -> Starlette:
    """The ASGI app. ``consumer`` is started and stopped with the app; None: the caller feeds ``overview``."""
    connected = (lambda: consumer.connected) if consumer is not None else (lambda: True)
    hub = Broadcaster(overview, limits, connected, clock, consumer.receipts if consumer is not None else None)

    async def index(request: Request) -> Response:
        return FileResponse(str(STATIC.joinpath("index.html")))

    async def bed_page(request: Request) -> Response:
        return FileResponse(str(STATIC.joinpath("bed.html")))

    async def beds(request: Request) -> Response:
        return Response(hub.snapshot(), media_type="application/json")

    async def bed_detail(request: Request) -> Response:
        got = overview.detail(request.path_params["bed_id"])
        if got is None:
            return JSONResponse({"error": "no such bed"}, status_code=404)
        bed, history, trend = got
        tile = v.tile(bed, clock(), limits)
        return JSONResponse({"now": time.time(), "connected": connected(), "tile": tile.to_json(),
                             "history": history, "trend": trend})

    async def events(request: Request) -> Response:
        q: asyncio.Queue[str | None] = asyncio.Queue(CLIENT_QUEUE)
        first = hub.snapshot()
        hub.clients.add(q)

        async def stream() -> AsyncIterator[str]:
            try:
                yield f"retry: 2000\ndata: {first}\n\n"
                while True:
                    try:
                        message = await asyncio.wait_for(q.get(), KEEPALIVE_S)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if message is None:
                        return
                    yield f"data: {message}\n\n"
            finally:
                hub.clients.discard(q)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if consumer is not None:
            consumer.start()
        task = asyncio.create_task(hub.run())
        try:
            yield
        finally:
            hub.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if consumer is not None:
                consumer.stop()

    routes = [
        Route("/", index),
        Route("/bed/{bed_id}", bed_page),
        Route("/api/beds", beds),
        Route("/api/beds/{bed_id}", bed_detail),
        Route("/events", events),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.broadcaster = hub
    app.add_middleware(SecurityHeaders)
    return app


def serve(mqtt_cfg: MqttConfig, config: Config, host: str, port: int, station: str | None = None) -> int:
    """``station``: the id of this view's delivery receipts (None: it sends none)."""
    import uvicorn

    overview = Overview(mqtt_cfg.topic_root)
    app = create_web_app(overview, v.Limits.from_config(config), FeedConsumer(mqtt_cfg, overview, station=station))
    log.info("central web view on http://%s:%d/", host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
    return 0
