"""One daemon per state directory: a second ``monitord run`` on the same store exits 2 and names
the running one's pid; the first keeps running; once it has stopped, a new one starts.

Real processes, as systemd would run them; readiness is the daemon's own READY=1 on a notify
socket, and every wait has a generous timeout instead of a sleep.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitord.statelock import LOCK_FILENAME, StateDirLock
from tests.deploy.test_watchdog import NotifySocket

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(
        f'[bed]\nid = "lock-test"\ncare_area = "icu"\n'
        f'[store]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[mqtt]\nenabled = false\n'
        f'[dashboard]\nsocket = "{tmp_path / "dashboard.sock"}"\n'
    )
    return path


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket(f"@monitord-lock-test-{uuid.uuid4().hex}")
    yield sock
    sock.close()


def start(site: Path, notify: NotifySocket | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM")}
    if notify is not None:
        env["NOTIFY_SOCKET"] = notify.address
    return subprocess.Popen([sys.executable, "-m", "monitord.cli", "run", "-c", str(site)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=WAIT_S)
    return proc.returncode, err


def test_second_daemon_on_one_state_dir_exits_2_naming_the_first(site: Path, notify: NotifySocket) -> None:
    first = start(site, notify)
    try:
        assert notify.wait_for(lambda lines: "READY=1" in lines), "first daemon never became ready"
        second = start(site)
        _, err = second.communicate(timeout=WAIT_S)
        assert second.returncode == 2, err
        assert f"pid {first.pid}" in err
        assert "Traceback" not in err
        assert first.poll() is None, "the first daemon must keep running"
    finally:
        code, err = stop(first)
    assert code == 0, err

    # The lock went with the first daemon: a new one starts.
    notify.messages.clear()
    third = start(site, notify)
    try:
        assert notify.wait_for(lambda lines: "READY=1" in lines), "a daemon after the first one stopped never started"
    finally:
        code, err = stop(third)
    assert code == 0, err


def test_lock_in_process(tmp_path: Path) -> None:
    first = StateDirLock(tmp_path)
    first.acquire()
    assert (tmp_path / LOCK_FILENAME).read_text().strip() == str(os.getpid())
    from monitord.errors import StartupError

    with pytest.raises(StartupError, match=f"pid {os.getpid()}"):
        StateDirLock(tmp_path).acquire()  # flock locks are per open file: refused in one process too
    first.release()
    again = StateDirLock(tmp_path)
    again.acquire()
    again.release()


def test_unusable_state_dir_is_a_startup_error(tmp_path: Path) -> None:
    from monitord.errors import StartupError

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StartupError, match="cannot use the state directory"):
        StateDirLock(blocker / "state").acquire()
