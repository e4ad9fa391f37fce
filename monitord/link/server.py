"""The daemon's end of the dashboard link: a Unix socket serving any number of dashboards.

On connect a client gets ``hello`` (protocol version, bed, the configuration the UI needs,
trend history), the full ``snapshot`` and the recent event log; then coalesced ``snapshot``
updates (at most every 0.5 s, only after the engine emitted something), each loggable
``event`` and a ``heartbeat``. Commands are checked, turned into engine inputs and run through
the rule loop; the reply carries the engine's verdict.

Monitoring never depends on this: a client that dies, stalls or sends garbage is dropped or
answered with an error, and a socket that cannot be opened is reported as an output fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections import deque
from pathlib import Path
from typing import Any

from monitord import __version__
from monitord import readings as r
from monitord.config import Config
from monitord.engine import Engine
from monitord.errors import ConfirmationRequired, Refused
from monitord.events import Event, EventKind
from monitord.link import protocol as p
from monitord.loop import RuleLoop
from monitord.rules.vitals import max_age

log = logging.getLogger(__name__)

# Pushed to dashboards one by one for the event log; vitals and infusion readings arrive at
# up to 1 Hz and reach the screen through the coalesced snapshot instead.
LOG_KINDS = frozenset(EventKind) - {EventKind.VITALS, EventKind.INFUSION}
LOG_BACKLOG = 100
TREND_VITALS = (r.Vital.HR, r.Vital.SBP, r.Vital.DBP, r.Vital.MAP, r.Vital.SPO2, r.Vital.RR, r.Vital.ETCO2)
TREND_BUCKET_S = 5.0  # one trend point per vital per 5 s (the last value seen in it)
TREND_HISTORY_S = 240 * 60.0
# A dashboard that does not read drops behind; past this much unsent data it is disconnected
# (it reconnects and starts again from a fresh hello) rather than growing the daemon's memory.
MAX_CLIENT_BUFFER = 4 * 1024 * 1024
COMMAND_TIMEOUT_S = 10.0


class _Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        self.reader = reader
        self.writer = writer
        self.name = f"dashboard#{number}"

    def send(self, msg: dict[str, Any]) -> None:
        if self.writer.is_closing():
            return
        try:
            self.writer.write(p.encode(msg))
        except (OSError, RuntimeError) as exc:
            log.info("%s: write failed (%s); dropping it", self.name, exc)
            self.writer.close()
            return
        if self.writer.transport.get_write_buffer_size() > MAX_CLIENT_BUFFER:
            log.warning("%s is not reading; disconnecting it", self.name)
            self.writer.transport.abort()


class DashboardServer:
    def __init__(self, config: Config, engine: Engine, loop: RuleLoop, socket_path: str | Path | None = None) -> None:
        self.config = config
        self.engine = engine
        self.loop = loop
        self.path = Path(socket_path or config.dashboard.socket)
        self.clients: set[_Client] = set()
        self.commands_handled = 0
        self.bad_messages = 0
        self._server: asyncio.AbstractServer | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dirty = True
        self._backlog: deque[dict[str, Any]] = deque(maxlen=LOG_BACKLOG)
        self._trends: dict[str, deque[tuple[float, float]]] = {
            v.value: deque(maxlen=int(TREND_HISTORY_S / TREND_BUCKET_S)) for v in TREND_VITALS
        }
        self._numbers = 0
        engine.subscribe(self._on_event)  # from now on, so trends and the log start filling at once

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        """False until ``start`` has opened the socket (the daemon retries ``start`` until then)."""
        return self._server is not None

    async def start(self) -> None:
        try:
            await self._clear_stale_socket()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=p.MAX_COMMAND_BYTES)
            os.chmod(self.path, 0o660)
        except (OSError, RuntimeError) as exc:
            log.error("dashboard link not available on %s: %s", self.path, exc)
            self.loop.put(r.OutputStatus("dashboard", False, f"{self.path}: {exc}"))
            return
        self.loop.put(r.OutputStatus("dashboard", True))  # clears an earlier fault; silent otherwise
        self._ticker = asyncio.create_task(self._tick(), name="dashboard-link")
        log.info("dashboard link listening on %s", self.path)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self._server is not None:
            self._server.close()
        for client in list(self.clients):
            client.writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *([self._ticker] if self._ticker else []), return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._server = self._ticker = None

    async def _clear_stale_socket(self) -> None:
        """Remove a socket file a crashed daemon left; refuse to touch a live one or a non-socket."""
        try:
            mode = self.path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise RuntimeError("exists and is not a socket; not removing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(probe, str(self.path)), 1.0)
        except (ConnectionRefusedError, FileNotFoundError, TimeoutError):
            log.info("removing stale dashboard socket %s", self.path)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        finally:
            probe.close()
        raise RuntimeError("another process is serving this socket (a second daemon for this bed?)")

    # -- engine side ----------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        self._dirty = True
        if event.kind is EventKind.VITALS:
            self._add_trend(event)
        if event.kind in LOG_KINDS:
            msg = {"type": "event", "event": event.to_dict()}
            self._backlog.append(msg)
            self._broadcast(msg)

    def _add_trend(self, event: Event) -> None:
        if event.data.get("quality") == r.Quality.INVALID.value:
            return
        for name, value in event.data.get("values", {}).items():
            series = self._trends.get(name)
            if series is None or value is None:
                continue
            if series and event.mono - series[-1][0] < TREND_BUCKET_S:
                series[-1] = (series[-1][0], float(value))
            else:
                series.append((event.mono, float(value)))

    def _broadcast(self, msg: dict[str, Any]) -> None:
        for client in list(self.clients):
            client.send(msg)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(p.HEARTBEAT_S)
            try:
                if self._dirty and self.clients:
                    self._dirty = False
                    self._broadcast({"type": "snapshot", "snapshot": self.engine.snapshot()})
                self._broadcast(self._heartbeat())
            except Exception:  # keep the link alive whatever one push did
                log.exception("dashboard push failed")

    def _heartbeat(self) -> dict[str, Any]:
        last = self.engine.last_evaluation_mono
        age = None if last is None else round(self.engine.clock.monotonic() - last, 1)
        return {"type": "heartbeat", "seq": self.engine.seq, "evaluated_age_s": age}

    def hello(self) -> dict[str, Any]:
        cfg = self.config
        now = self.engine.clock.monotonic()
        return {
            "type": "hello",
            "protocol": p.PROTOCOL_VERSION,
            "server": f"monitord {__version__}",
            "bed_id": self.engine.bed_id,
            "config": {
                "care_area": cfg.bed.care_area.value,
                "timezone": cfg.bed.timezone,
                "audio_pause_s": cfg.alarms.audio_pause_s,
                "checklist": [{"id": c.id, "text": c.text, "kind": c.kind} for c in cfg.checklist],
                "rescue_medications": list(cfg.ketamine.rescue_medications),
                "drug": {
                    "name": cfg.ketamine.name,
                    "concentrations_mg_ml": list(cfg.ketamine.concentrations_mg_ml),
                    "syringe_sizes_ml": list(cfg.ketamine.syringe_sizes_ml),
                },
                "effects": [e.value for e in r.Effect],
                "stale_after_s": {v.value: max_age(cfg, v) for v in r.Vital},
                "tick_s": cfg.watchdog.tick_s,
                "overridable": sorted(self.engine.overridable()),
            },
            "trends": {name: [[round(now - t, 1), v] for t, v in series] for name, series in self._trends.items()},
        }

    # -- one client -----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._numbers += 1
        client = _Client(reader, writer, self._numbers)
        self.clients.add(client)
        log.info("%s connected", client.name)
        try:
            client.send(self.hello())
            client.send({"type": "snapshot", "snapshot": self.engine.snapshot()})
            for msg in list(self._backlog):
                client.send(msg)
            client.send(self._heartbeat())
            await self._read_commands(client)
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
            log.info("%s: connection lost (%s)", client.name, exc)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("%s: unexpected error; dropping the client", client.name)
        finally:
            self.clients.discard(client)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            if task is not None:
                self._tasks.discard(task)
            log.info("%s disconnected", client.name)

    async def _read_commands(self, client: _Client) -> None:
        while True:
            try:
                line = await client.reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                return  # end of stream, possibly mid-message: nothing to act on
            except asyncio.LimitOverrunError:
                self.bad_messages += 1
                client.send({"type": "reply", "id": None, "ok": False,
                             "error": f"message longer than {p.MAX_COMMAND_BYTES} bytes"})
                return
            if not line.strip():
                continue
            client.send(await self._answer(line, client))

    async def _answer(self, line: bytes, client: _Client) -> dict[str, Any]:
        msg_id: Any = None
        try:
            msg = p.decode(line)
            msg_id = msg.get("id")
            if msg_id is not None and (isinstance(msg_id, bool) or not isinstance(msg_id, str | int)):
                msg_id = None
                raise p.ProtocolError("'id' must be text or a whole number")
            item = p.to_input(msg)
        except p.ProtocolError as exc:
            self.bad_messages += 1
            log.info("%s: bad message: %s", client.name, exc)
            return {"type": "reply", "id": msg_id, "ok": False, "error": f"Bad message: {exc}"}
        try:
            await asyncio.wait_for(self.loop.command(item), COMMAND_TIMEOUT_S)
        except ConfirmationRequired as exc:
            return {"type": "reply", "id": msg_id, "ok": False, "error": str(exc), "needs_confirmation": True,
                    "preview": exc.preview}
        except Refused as exc:
            return {"type": "reply", "id": msg_id, "ok": False, "error": str(exc)}
        except TimeoutError:
            return {"type": "reply", "id": msg_id, "ok": False,
                    "error": f"The monitor did not answer within {COMMAND_TIMEOUT_S:g} s; try again"}
        except Exception as exc:
            log.exception("%s: command %s failed", client.name, msg.get("type"))
            return {"type": "reply", "id": msg_id, "ok": False, "error": f"Internal error: {exc}"}
        self.commands_handled += 1
        return {"type": "reply", "id": msg_id, "ok": True}
