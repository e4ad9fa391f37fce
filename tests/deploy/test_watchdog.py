"""The systemd watchdog is petted only while the rule loop really evaluates.

A real ``RuleLoop`` and ``Engine`` run with a ``Watchdog`` whose ``NOTIFY_SOCKET`` is a Unix
datagram socket bound here, as systemd binds it. WATCHDOG=1 must arrive while monitoring works,
stop arriving while the loop is stuck (a blocked rule) or every evaluation fails, and come back
after. Markers sent through the same socket order the datagrams, so no assertion depends on
how fast this machine is: waits are event-based with generous timeouts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitord import readings as r
from monitord.clock import FakeClock, SystemClock
from monitord.config import Config, load_config
from monitord.engine import Engine
from monitord.loop import RuleLoop
from monitord.notify import Watchdog, notify

TICK_S = 0.02
WATCHDOG_USEC = 200_000  # WatchdogSec=0.2 s: petted every 0.1 s at most
STALL_S = 3 * WATCHDOG_USEC / 1e6  # longer than the timeout: systemd would act
WAIT_S = 20.0  # generous bound for anything that should happen promptly


class NotifySocket:
    """A bound Unix datagram socket collecting sd_notify messages in a thread."""

    def __init__(self, address: str) -> None:
        self.address = address  # as NOTIFY_SOCKET spells it
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self._sock.settimeout(0.05)
        self.messages: list[list[str]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            with self._cond:
                self.messages.append(data.decode().splitlines())
                self._cond.notify_all()

    def lines(self) -> list[str]:
        with self._cond:
            return [line for msg in self.messages for line in msg]

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = WAIT_S) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate([ln for m in self.messages for ln in m]), timeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


def pets_after(lines: list[str], marker: str) -> int:
    return lines[lines.index(marker) + 1:].count("WATCHDOG=1") if marker in lines else 0


def pets_between(lines: list[str], start: str, end: str) -> int:
    return lines[lines.index(start) + 1:lines.index(end)].count("WATCHDOG=1")


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    sock = NotifySocket(f"@monitord-test-{uuid.uuid4().hex}")  # abstract namespace, as systemd uses
    monkeypatch.setenv("NOTIFY_SOCKET", sock.address)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


def config() -> Config:
    return load_config(overrides={"watchdog": {"tick_s": TICK_S}})


class LoopThread:
    """The rule loop on its own event loop in a thread, so the test can watch it stall."""

    def __init__(self, engine: Engine, watchdog: Watchdog) -> None:
        self.rule_loop = RuleLoop(engine, TICK_S)
        self.rule_loop.on_evaluated.append(watchdog.evaluated)
        self.heartbeats = 0  # proves the event loop itself stays alive
        self.aloop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self.aloop = asyncio.get_running_loop()

        async def heartbeat() -> None:
            while True:
                self.heartbeats += 1
                await asyncio.sleep(0.01)

        beat = asyncio.create_task(heartbeat())
        self._started.set()
        await self.rule_loop.run()
        beat.cancel()

    def __enter__(self) -> LoopThread:
        self._thread.start()
        assert self._started.wait(WAIT_S)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.aloop is not None
        self.aloop.call_soon_threadsafe(self.rule_loop.stop)
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive()


def test_a_blocked_rule_stops_the_watchdog_and_recovery_resumes_it(notify_socket: NotifySocket) -> None:
    cfg = config()
    engine = Engine(cfg, SystemClock())
    watchdog = Watchdog(engine, SystemClock(), cfg)
    stall, stalled, release = threading.Event(), threading.Event(), threading.Event()

    original = engine.rules[0]

    def blocking_check(state: Any, now: float, c: Config) -> Any:
        if stall.is_set():
            stall.clear()
            notify("MARK=stalled")  # same socket as the daemon's messages: keeps their order
            stalled.set()
            release.wait(WAIT_S)
        return original.check(state, now, c)

    engine.rules[0] = dataclasses.replace(original, check=blocking_check)

    with LoopThread(engine, watchdog):
        assert notify_socket.wait_for(lambda ls: ls.count("WATCHDOG=1") >= 3), "no WATCHDOG=1 while monitoring"
        stall.set()
        assert stalled.wait(WAIT_S)
        t_stall = time.monotonic()
        time.sleep(STALL_S)  # the daemon now has several pet intervals in which it must stay silent
        notify("MARK=released")
        release.set()
        assert notify_socket.wait_for(lambda ls: pets_after(ls, "MARK=released") >= 2), "petting did not resume"
        stalled_for = time.monotonic() - t_stall

    lines = notify_socket.lines()
    assert pets_between(lines, "MARK=stalled", "MARK=released") == 0
    assert stalled_for > WATCHDOG_USEC / 1e6  # so systemd would have restarted the daemon


def test_failing_evaluations_do_not_pet_though_the_event_loop_runs(notify_socket: NotifySocket) -> None:
    cfg = config()
    engine = Engine(cfg, SystemClock())
    watchdog = Watchdog(engine, SystemClock(), cfg)
    failing = threading.Event()
    update = engine.alarms.update

    def broken_update(*args: Any) -> None:
        if failing.is_set():
            raise RuntimeError("alarm manager broken")
        update(*args)

    engine.alarms.update = broken_update  # type: ignore[method-assign]

    with LoopThread(engine, watchdog) as lt:
        assert notify_socket.wait_for(lambda ls: ls.count("WATCHDOG=1") >= 2)
        notify("MARK=failing")
        failing.set()
        beats = lt.heartbeats
        deadline = time.monotonic() + WAIT_S
        # Let the loop fail for longer than the watchdog timeout while the event loop keeps running.
        time.sleep(STALL_S)
        while lt.heartbeats < beats + 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lt.heartbeats >= beats + 10, "event loop did not run during the failure"
        notify("MARK=fixed")
        failing.clear()
        assert notify_socket.wait_for(lambda ls: pets_after(ls, "MARK=fixed") >= 2), "petting did not resume"

    assert pets_between(notify_socket.lines(), "MARK=failing", "MARK=fixed") == 0


def test_a_stale_evaluation_is_no_proof_of_life() -> None:
    with tempfile.TemporaryDirectory(prefix="wd") as d:
        sock = NotifySocket(str(Path(d) / "notify"))  # a filesystem path this time
        try:
            env = {"NOTIFY_SOCKET": sock.address, "WATCHDOG_USEC": "20000000"}
            clock, cfg = FakeClock(), load_config()
            engine = Engine(cfg, clock)
            now = [0.0]
            watchdog = Watchdog(engine, clock, cfg, environ=env, real_monotonic=lambda: now[0])
            assert watchdog.pet_every_s == 10.0  # half of WatchdogSec=20s

            watchdog.ready()
            engine.tick()
            watchdog.evaluated()
            now[0] += 10.0
            clock.advance(30)  # the engine has not evaluated for 30 s of monotonic time
            watchdog.evaluated()
            now[0] += 10.0
            engine.tick()
            watchdog.evaluated()
            now[0] += 1.0
            engine.tick()
            watchdog.evaluated()  # fresh, but within the rate limit: no datagram needed
            watchdog.stopping()
            assert sock.wait_for(lambda ls: "STOPPING=1" in ls)
            msgs = sock.messages
        finally:
            sock.close()
    assert msgs[0][0] == "READY=1"
    assert msgs[0][1] == "STATUS=bed bed-01: empty, no alarm"
    pets = [m for m in msgs if "WATCHDOG=1" in m]
    assert len(pets) == 2  # the first evaluation and the one after the engine caught up; not the stale one
    assert msgs[-1] == ["STOPPING=1", "STATUS=stopping"]


def test_status_names_the_highest_alarm(notify_socket: NotifySocket) -> None:
    clock, cfg = FakeClock(), load_config()
    engine = Engine(cfg, clock)
    watchdog = Watchdog(engine, clock, cfg)
    engine.submit(r.OutputStatus("store", ok=False, detail="disk full"))
    engine.submit(r.OutputStatus("mqtt", ok=False, detail="broker unreachable"))
    shown = engine.snapshot()["alarms"]
    assert [a["priority"] for a in shown] == ["high", "low"] and "store" in shown[0]["rule_id"]
    assert watchdog.status_line() == f"bed bed-01: empty, highest alarm high {shown[0]['rule_id']} (2 active)"
    watchdog.evaluated()
    assert notify_socket.wait_for(lambda ls: any(ln.startswith("STATUS=bed bed-01: empty, highest alarm high")
                                                 for ln in ls))


def test_without_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert notify("READY=1") is False
    clock, cfg = FakeClock(), load_config()
    engine = Engine(cfg, clock)
    watchdog = Watchdog(engine, clock, cfg)
    assert watchdog.pet_every_s is None
    engine.tick()
    watchdog.ready()
    watchdog.evaluated()
    assert watchdog.pets == 0
