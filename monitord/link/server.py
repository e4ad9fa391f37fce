"""The daemon's end of the dashboard link: a Unix socket serving a few dashboards.

On connect a client gets ``hello`` (protocol version, bed, the configuration the UI needs,
trend history), the full ``snapshot`` and the recent event log; then coalesced ``snapshot``
updates (at most every 0.5 s, only after the engine emitted something), each loggable
``event`` and a ``heartbeat``. Commands are checked, turned into engine inputs and run through
the rule loop; the reply carries the engine's verdict, and an accepted entry is answered only
once the store has committed it (or, after ``STORE_WAIT_S``, as accepted but not yet stored,
followed by a ``stored`` message when it is).

Monitoring never depends on this: a client that dies, stalls or sends garbage is dropped or
answered with an error, and a socket that cannot be opened is reported as an output fault.
Every resource a client can make the daemon spend is bounded (docs/reliability.md): at most
``MAX_CLIENTS`` connections (more are refused with a message and closed), connections accepted
at a bounded rate (the rest wait in the kernel's listen queue, costing the daemon nothing),
``MAX_CLIENT_BUFFER`` of unsent data per client, ``protocol.MAX_COMMAND_BYTES`` per command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import time
from collections import deque
from pathlib import Path
from typing import Any, Protocol

from monitord import __version__
from monitord import readings as r
from monitord.config import Config
from monitord.engine import Engine
from monitord.errors import ConfirmationRequired, Refused
from monitord.events import Event, EventKind
from monitord.link import protocol as p
from monitord.link.trend_ring import TrendRing
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
# One bed has one bedside screen; a few more cover a second screen, a service laptop and a
# socat session. Each further connection is refused with a message and closed at once.
MAX_CLIENTS = 8
# A dashboard that does not read drops behind; past this much unsent data it is disconnected
# (it reconnects and starts again from a fresh hello) rather than growing the daemon's memory.
# A hello with the full 240 min of trends is about 0.3 MiB (tests/link/test_limits.py).
MAX_CLIENT_BUFFER = 1024 * 1024
# A snapshot is skipped for a client with this much still unsent: the next one supersedes it.
SNAPSHOT_SKIP_BUFFER = 256 * 1024
# Connections are taken from the listen queue at ACCEPT_RATE_PER_S (bursts of ACCEPT_BURST); a
# refusal costs REFUSAL_COST of one. A flood waits in the kernel's queue (LISTEN_BACKLOG), and
# the rule loop keeps the event loop: at most 10 hellos and 200 refusals a second.
ACCEPT_RATE_PER_S = 10.0
ACCEPT_BURST = 20.0
REFUSAL_COST = 0.05
LISTEN_BACKLOG = 32
ACCEPT_ERROR_PAUSE_S = 1.0  # accept() failed (out of file descriptors): try again after this
# A client that sends this many malformed messages is a broken program, not a nurse: dropped.
MAX_BAD_MESSAGES = 100
COMMAND_TIMEOUT_S = 10.0
CURVE_MAX_POINTS = 1440  # the estimate's plot: a day at one point a minute
# How long an accepted entry's reply waits for the store's commit before it says "accepted,
# not yet stored". A commit takes milliseconds; seconds mean the database is failing.
STORE_WAIT_S = 3.0
MAX_UNSTORED = 64  # per client, entries whose later "stored" message is still owed
NOT_STORED = ("Accepted, not yet stored: the database has not confirmed it within {:g} s (see the store "
              "alarm); a 'stored' message follows once it has")


class Durable(Protocol):
    """What the link needs of the store: how far it has committed, and a way to wait for it."""

    @property
    def committed_seq(self) -> int: ...

    async def wait_stored(self, seq: int, timeout_s: float) -> bool: ...


class _Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        self.reader = reader
        self.writer = writer
        self.name = f"dashboard#{number}"
        self.slow = False
        self.bad = 0
        self.unstored: deque[tuple[int, Any]] = deque(maxlen=MAX_UNSTORED)  # (seq, command id)

    def send(self, msg: dict[str, Any]) -> None:
        self.send_bytes(p.encode(msg))

    def send_bytes(self, data: bytes, skippable: bool = False) -> None:
        """Queue ``data``; a client with more than ``MAX_CLIENT_BUFFER`` unsent is dropped.
        ``skippable`` data (a snapshot) is left out for a client that is behind."""
        if self.writer.is_closing():
            return
        transport = self.writer.transport
        if skippable and transport.get_write_buffer_size() > SNAPSHOT_SKIP_BUFFER:
            return
        try:
            self.writer.write(data)
        except (OSError, RuntimeError) as exc:
            log.info("%s: write failed (%s); dropping it", self.name, exc)
            self.writer.close()
            return
        if transport.get_write_buffer_size() > MAX_CLIENT_BUFFER:
            log.warning("%s is not reading (%d bytes unsent); disconnecting it", self.name,
                        transport.get_write_buffer_size())
            self.slow = True
            transport.abort()


class DashboardServer:
    def __init__(self, config: Config, engine: Engine, loop: RuleLoop, socket_path: str | Path | None = None,
                 store: Durable | None = None) -> None:
        self.config = config
        self.engine = engine
        self.loop = loop
        self.store = store
        self.path = Path(socket_path or config.dashboard.socket)
        self.clients: set[_Client] = set()
        # Counters (``stats``): what the limits turned away.
        self.commands_handled = 0
        self.bad_messages = 0
        self.refused = 0  # connections refused: MAX_CLIENTS were connected
        self.dropped_slow = 0  # clients disconnected for not reading
        self.dropped_bad = 0  # clients disconnected for an over-long line or too many bad messages
        self.not_stored = 0  # entries answered "accepted, not yet stored"
        self.accept_errors = 0
        self._listener: socket.socket | None = None
        self._acceptor: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._sessions: set[asyncio.Task[Any]] = set()
        self._dirty = True
        self._backlog: deque[dict[str, Any]] = deque(maxlen=LOG_BACKLOG)
        self._trends: dict[str, TrendRing] = {v.value: TrendRing(int(TREND_HISTORY_S / TREND_BUCKET_S))
                                               for v in TREND_VITALS}
        self._numbers = 0
        self._refusal_logged = -1e9
        self._curve_key: tuple[Any, ...] | None = None
        engine.subscribe(self._on_event)  # from now on, so trends and the log start filling at once

    def stats(self) -> dict[str, int]:
        return {"clients": len(self._sessions), "commands": self.commands_handled, "bad_messages": self.bad_messages,
                "refused": self.refused, "dropped_slow": self.dropped_slow, "dropped_bad": self.dropped_bad,
                "not_stored": self.not_stored, "accept_errors": self.accept_errors}

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        """False until ``start`` has opened the socket (the daemon retries ``start`` until then)."""
        return self._listener is not None

    async def start(self) -> None:
        try:
            await self._clear_stale_socket()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            listener = self._listen()
        except (OSError, RuntimeError) as exc:
            log.error("dashboard link not available on %s: %s", self.path, exc)
            self.loop.put(r.OutputStatus("dashboard", False, f"{self.path}: {exc}"))
            return
        self._listener = listener
        self.loop.put(r.OutputStatus("dashboard", True))  # clears an earlier fault; silent otherwise
        self._ticker = asyncio.create_task(self._tick(), name="dashboard-link")
        self._acceptor = asyncio.create_task(self._accept(listener), name="dashboard-accept")
        log.info("dashboard link listening on %s", self.path)

    def _listen(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o660)
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def stop(self) -> None:
        tasks = [t for t in (self._ticker, self._acceptor) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
        for client in list(self.clients):
            client.writer.close()
        sessions = list(self._sessions)
        for task in sessions:
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)
        if self._listener is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._listener = None
        self._ticker = self._acceptor = None

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

    # -- accepting ------------------------------------------------------------------------------

    async def _accept(self, listener: socket.socket) -> None:
        """Take connections from the listen queue at a bounded rate (a token bucket)."""
        aloop = asyncio.get_running_loop()
        tokens, last = ACCEPT_BURST, aloop.time()
        while True:
            cost = REFUSAL_COST if len(self._sessions) >= MAX_CLIENTS else 1.0
            now = aloop.time()
            tokens, last = min(ACCEPT_BURST, tokens + (now - last) * ACCEPT_RATE_PER_S), now
            if tokens < cost:
                await asyncio.sleep((cost - tokens) / ACCEPT_RATE_PER_S)
                continue
            try:
                conn, _ = await aloop.sock_accept(listener)
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: leave the queue alone a while
                self.accept_errors += 1
                log.error("dashboard link: cannot accept a connection: %s", exc)
                await asyncio.sleep(ACCEPT_ERROR_PAUSE_S)
                continue
            if len(self._sessions) >= MAX_CLIENTS:
                tokens -= REFUSAL_COST
                self._refuse(conn)
                continue
            tokens -= 1.0
            self._numbers += 1
            task = asyncio.create_task(self._session(conn, self._numbers), name=f"dashboard#{self._numbers}")
            self._sessions.add(task)
            task.add_done_callback(self._sessions.discard)

    def _refuse(self, conn: socket.socket) -> None:
        self.refused += 1
        try:
            conn.setblocking(False)
            conn.send(p.encode({"type": "refused", "error": f"Too many dashboards are connected to this monitor "
                                                            f"({MAX_CLIENTS}); close one, then reconnect"}))
        except OSError:
            pass
        finally:
            conn.close()
        now = time.monotonic()
        if now - self._refusal_logged >= 60.0:
            self._refusal_logged = now
            log.warning("dashboard link: %d dashboards connected, refusing more (%d refused since start)",
                        MAX_CLIENTS, self.refused)

    async def _session(self, conn: socket.socket, number: int) -> None:
        try:
            conn.setblocking(False)
            reader, writer = await asyncio.open_unix_connection(sock=conn, limit=p.MAX_COMMAND_BYTES)
        except OSError as exc:
            conn.close()
            log.info("dashboard#%d: connection failed (%s)", number, exc)
            return
        await self._serve(reader, writer, number)

    # -- engine side ----------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        self._dirty = True
        if event.kind is EventKind.VITALS:
            self._add_trend(event)
        elif event.kind is EventKind.SESSION and event.data.get("action") in ("admitted", "discharged"):
            for series in self._trends.values():  # a new patient's trends start empty
                series.clear()
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
            if series and event.mono - series.last_time() < TREND_BUCKET_S:
                series.set_last(float(value))
            else:
                series.append(event.mono, float(value))

    def _broadcast(self, msg: dict[str, Any], skippable: bool = False) -> None:
        if not self.clients:
            return
        data = p.encode(msg)
        for client in list(self.clients):
            client.send_bytes(data, skippable)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(p.HEARTBEAT_S)
            try:
                if self._dirty and self.clients:
                    self._dirty = False
                    self._broadcast({"type": "snapshot", "snapshot": self.engine.snapshot()}, skippable=True)
                    if self._curve_changed():
                        self._broadcast(self.estimate_curve())
                self._broadcast(self._heartbeat())
                self._confirm_stored()
            except Exception:  # keep the link alive whatever one push did
                log.exception("dashboard push failed")

    def _confirm_stored(self) -> None:
        """Tell each client which of its "not yet stored" entries the store has now committed."""
        if self.store is None:
            return
        committed = self.store.committed_seq
        for client in list(self.clients):
            while client.unstored and client.unstored[0][0] <= committed:
                seq, msg_id = client.unstored.popleft()
                client.send({"type": "stored", "id": msg_id, "seq": seq})

    def _heartbeat(self) -> dict[str, Any]:
        last = self.engine.last_evaluation_mono
        age = None if last is None else round(self.engine.clock.monotonic() - last, 1)
        return {"type": "heartbeat", "seq": self.engine.seq, "evaluated_age_s": age}

    def _curve_changed(self) -> bool:
        est = self.engine.state.estimate
        key = None if est is None else (id(est), len(est.samples), est.samples[-1][0] if est.samples else None,
                                        self.engine.clock.monotonic() // est.curve_step_s)
        changed, self._curve_key = key != self._curve_key, key
        return changed

    def estimate_curve(self) -> dict[str, Any]:
        """The plasma-concentration model estimate over the course, for the dashboard's plot:
        ``points`` ``[[age_s, ng_ml], ...]`` one per ``curve_step_s``, oldest first (after the last
        delivery: the model's fall with nothing more given); empty when there is none."""
        est = self.engine.state.estimate
        now = self.engine.clock.monotonic()
        if est is None or est.t is None:
            return {"type": "estimate_curve", "kind": "model_estimate", "points": []}
        curve = [(t, c) for t, c in est.samples if t <= now]
        step = est.curve_step_s
        t = (curve[-1][0] if curve else est.t) + step
        while t <= now:  # nothing delivered since the last report: the model's fall
            curve.append((t, est.concentration_at(t)))
            t += step
        return {"type": "estimate_curve", "kind": "model_estimate",
                "points": [[round(now - t, 1), round(c, 1)] for t, c in curve[-CURVE_MAX_POINTS:]]}

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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        client = _Client(reader, writer, number)
        self.clients.add(client)
        log.info("%s connected", client.name)
        try:
            client.send(self.hello())
            client.send({"type": "snapshot", "snapshot": self.engine.snapshot()})
            client.send(self.estimate_curve())
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
            if client.slow:
                self.dropped_slow += 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            log.info("%s disconnected", client.name)

    async def _read_commands(self, client: _Client) -> None:
        while not client.writer.is_closing():
            try:
                line = await client.reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                return  # end of stream, possibly mid-message: nothing to act on
            except asyncio.LimitOverrunError:
                self.bad_messages += 1
                self.dropped_bad += 1
                log.warning("%s sent a line over %d bytes; disconnecting it", client.name, p.MAX_COMMAND_BYTES)
                client.send({"type": "reply", "id": None, "ok": False,
                             "error": f"message longer than {p.MAX_COMMAND_BYTES} bytes"})
                return
            if line.strip():
                client.send(await self._answer(line, client))
            if client.bad >= MAX_BAD_MESSAGES:
                self.dropped_bad += 1
                log.warning("%s sent %d malformed messages; disconnecting it", client.name, client.bad)
                return
            # Lines already buffered are read without a pause: give the rule loop its turn.
            await asyncio.sleep(0)

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
            client.bad += 1
            if client.bad <= 3:  # a program sending garbage would fill the log
                log.info("%s: bad message: %s", client.name, str(exc)[:200])
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
        reply: dict[str, Any] = {"type": "reply", "id": msg_id, "ok": True}
        if self.store is not None:
            # Every event up to here (the entry's own and any alarm it changed) must be on disk
            # before the nurse is told "ok". The rule loop goes on meanwhile: only this client waits.
            seq = self.engine.seq
            try:
                stored = await self.store.wait_stored(seq, STORE_WAIT_S)
            except Exception:
                log.exception("%s: waiting for the store failed", client.name)
                stored = False
            reply["stored"] = stored
            if not stored:
                self.not_stored += 1
                reply["note"] = NOT_STORED.format(STORE_WAIT_S)
                client.unstored.append((seq, msg_id))
        return reply
