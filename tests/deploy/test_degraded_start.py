"""No optional output keeps monitoring from starting.

The daemon runs in-process (``run_daemon`` with a stop event) with outputs that cannot work: a
broker nobody listens on, a dashboard socket whose directory is a file, TLS files that do not
exist. It must still become ready (READY=1 to systemd), raise each output's technical alarm,
and, once the fault is fixed, bring the output up by itself and clear the alarm. Waits poll with
generous timeouts; the retry interval is shortened so the test does not wait a minute.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitord import daemon
from monitord.config import Config, load_config
from tests.deploy.test_watchdog import NotifySocket
from tests.mqtt.broker import Mosquitto, free_port, make_certs

WAIT_S = 60.0


@pytest.fixture
def notify(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    sock = NotifySocket(f"@monitord-degraded-{uuid.uuid4().hex}")
    monkeypatch.setenv("NOTIFY_SOCKET", sock.address)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    yield sock
    sock.close()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon, "RETRY_MIN_S", 0.2)
    monkeypatch.setattr(daemon, "RETRY_MAX_S", 0.5)


def config(tmp_path: Path, **over: Any) -> Config:
    base = {
        "bed": {"id": "degraded", "care_area": "icu"},
        "store": {"state_dir": str(tmp_path / "state"), "flush_interval_s": 0.05},
        "watchdog": {"tick_s": 0.05},
        "dashboard": {"socket": str(tmp_path / "run" / "dashboard.sock")},
    }
    return load_config(overrides={**base, **over})


def alarm_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "monitord.alarm"]


async def until(check: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.05)


def alarm(caplog: pytest.LogCaptureFixture, rule: str, transition: str) -> Callable[[], bool]:
    return lambda: any(f" {rule} {transition}:" in line for line in alarm_lines(caplog))


class Running:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(daemon.run_daemon(self.cfg, stop=self.stop))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, WAIT_S)


async def test_unreachable_broker_and_unusable_socket_dir_start_degraded_then_recover(
    tmp_path: Path, notify: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()  # nothing listens here yet
    (tmp_path / "run").write_text("")  # a file where the socket's directory belongs
    cfg = config(tmp_path, mqtt={"host": "127.0.0.1", "port": port, "topic_root": f"t{uuid.uuid4().hex}"})
    broker = Mosquitto(tmp_path / "broker", port=port)
    try:
        async with Running(cfg) as running:
            await until(lambda: "READY=1" in notify.lines(), "READY=1")
            await until(alarm(caplog, "tech.dashboard_failed", "raised"), "tech.dashboard_failed raised")
            await until(alarm(caplog, "tech.mqtt_failed", "raised"), "tech.mqtt_failed raised")
            assert running.task is not None and not running.task.done()

            # Fix both: the directory appears, a broker starts listening.
            (tmp_path / "run").unlink()
            (tmp_path / "run").mkdir()
            broker.start()
            await until(alarm(caplog, "tech.dashboard_failed", "cleared"), "tech.dashboard_failed cleared")
            assert (tmp_path / "run" / "dashboard.sock").is_socket()
            await until(alarm(caplog, "tech.mqtt_failed", "cleared"), "tech.mqtt_failed cleared")
    finally:
        broker.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make test certificates")
async def test_missing_tls_files_start_degraded_and_are_picked_up_when_they_appear(
    tmp_path: Path, notify: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    certs = make_certs(tmp_path / "certs")
    ca = tmp_path / "etc" / "ca.crt"  # absent at start
    broker = Mosquitto(tmp_path / "broker", tls=certs).start()
    try:
        cfg = config(tmp_path, mqtt={"host": "127.0.0.1", "port": broker.port, "tls": {"ca_file": str(ca)},
                                     "topic_root": f"t{uuid.uuid4().hex}"})
        async with Running(cfg):
            await until(lambda: "READY=1" in notify.lines(), "READY=1")
            await until(alarm(caplog, "tech.mqtt_failed", "raised"), "tech.mqtt_failed raised")
            assert any("cannot set up the MQTT client" in r.getMessage() for r in caplog.records)
            ca.parent.mkdir()
            shutil.copy(certs.ca, ca)
            await until(alarm(caplog, "tech.mqtt_failed", "cleared"), "tech.mqtt_failed cleared")
    finally:
        broker.stop()


def test_missing_buzzer_library_is_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The buzzer belongs to the dashboard, not the daemon; without its library it stays silent
    (and says so) instead of failing."""
    import sys

    from monitord.buzzer import GpioBuzzer

    for name in ("gpiozero", "RPi", "RPi.GPIO"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as on a box without them
    buzzer = GpioBuzzer(18)
    assert not buzzer.available
    buzzer.on()
    buzzer.off()
