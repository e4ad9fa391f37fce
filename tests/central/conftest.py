"""Central-station fixtures: a real mosquitto per test (as tests/mqtt does), a hand-driven clock."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from tests.mqtt.broker import Mosquitto, free_port, wait_port
from tests.mqtt.conftest import broker  # noqa: F401  (the fixture, shared with tests/mqtt)

REPO = Path(__file__).resolve().parents[2]
OUTPUT = Path(__file__).resolve().parent / "output"  # screenshots for people to look at (gitignored)


class Clock:
    """Monotonic seconds a test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, s: float) -> None:
        self.now += s


def screen_text(app: Any) -> str:
    """The terminal screen as a person sees it, one line per row (what is scrolled off is absent)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, force_terminal=True,
                      legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def line_of(text: str, needle: str) -> str:
    lines = [ln for ln in text.splitlines() if needle in ln]
    assert len(lines) == 1, f"{needle!r} on {len(lines)} lines of:\n{text}"
    return lines[0]


class WebView:
    """``monitord central --web`` as a user starts it, on a free port, against the test broker."""

    def __init__(self, broker_port: int, workdir: Path, root: str = "monitord/v1", args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "central-web.log"
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitord.cli", "central", "--web", "--host", "127.0.0.1",
             "--port", str(broker_port), "--root", root, "--web-port", str(self.port), *args],
            stdout=self._out, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            wait_port(self.port, timeout=30)
        except TimeoutError:
            self.stop()
            raise AssertionError(f"web view did not start: {self.log.read_text()}") from None

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read())

    def poll(self, path: str, pred: Callable[[Any], Any], timeout: float = 20.0) -> Any:
        """GET ``path`` until ``pred`` holds for its JSON (a 404 counts as not yet)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.get(path)
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise
            else:
                if pred(last):
                    return last
            time.sleep(0.05)
        raise AssertionError(f"timed out polling {path}; last: {last}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


@pytest.fixture
def web(broker: Mosquitto, tmp_path: Path) -> Iterator[WebView]:  # noqa: F811
    w = WebView(broker.port, tmp_path)
    yield w
    w.stop()
