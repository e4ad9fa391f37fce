"""What every driver shares: throttled logs, the lateness of stamped frames, and a run loop that
no exception ends (a rejected setting, a driver bug, a consumer that raises)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from monitord.drivers.base import Driver, FrameDelay, LinkLost, LogThrottle, cause_of
from monitord.readings import DeviceInput, DeviceRole, LinkState, LinkStatus

WAIT_S = 20.0


async def wait_until(cond: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + WAIT_S
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# --- LogThrottle -----------------------------------------------------------------------------


def test_one_line_per_cause_per_interval_then_the_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    logs = LogThrottle(logging.getLogger("t"), "pump", interval_s=60, monotonic=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="t"):
        for i in range(1000):
            now[0] = i * 0.01
            logs.log(logging.WARNING, "checksum", "pump: checksum #%d", i)
            logs.log(logging.WARNING, "short", "pump: short frame #%d", i)
        assert [r.getMessage() for r in caplog.records] == ["pump: checksum #0", "pump: short frame #0"]
        now[0] = 61.0
        logs.flush()
        assert [r.getMessage() for r in caplog.records[2:]] == [
            "pump: checksum: repeated 999 times in the last 61 s",
            "pump: short: repeated 999 times in the last 61 s",
        ]
        logs.flush()  # nothing new: nothing more said
        assert len(caplog.records) == 4
        now[0] = 62.0
        logs.log(logging.WARNING, "checksum", "pump: checksum again")  # within the new interval
        now[0] = 130.0
        assert logs.log(logging.WARNING, "checksum", "pump: checksum later")
    assert caplog.records[-1].getMessage() == "pump: checksum later [repeated 1 times in the last 69 s]"
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_causes_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    logs = LogThrottle(logging.getLogger("t"), "x", interval_s=60, monotonic=lambda: 0.0)
    with caplog.at_level(logging.WARNING, logger="t"):
        for i in range(1000):
            logs.log(logging.WARNING, f"cause {i}", "line %d", i)
    assert len(caplog.records) == LogThrottle.MAX_CAUSES + 1  # the rest share "other"


def test_cause_is_the_text_before_the_details() -> None:
    assert cause_of("RAT reply not understood: '5.0XX'") == "RAT reply not understood"
    assert cause_of("safe-mode CRC mismatch") == "safe-mode CRC mismatch"


# --- FrameDelay ------------------------------------------------------------------------------


def test_frame_delay_against_the_fastest_frame() -> None:
    d = FrameDelay(window_s=300, tolerance_s=1.5)
    clock_offset = 1000.0  # the device's clock is 1000 s behind the host's monotonic clock
    for t in range(10):  # on time, with up to 1 s of time-stamp resolution
        assert d.update(t - clock_offset, t + 0.9 * (t % 2)) == 0.0
    assert d.update(10 - clock_offset, 22.0) == pytest.approx(12.0)  # stamped at 10, here at 22
    assert d.update(23 - clock_offset, 23.1) == 0.0


def test_device_clock_set_forward_is_no_delay_and_set_back_is_relearnt() -> None:
    d = FrameDelay(window_s=300, tolerance_s=1.5)
    for t in range(5):
        d.update(t, t)
    assert d.update(3605, 5) == 0.0  # clock set forward an hour: offsets only fall
    assert d.update(6, 6.0) == 0.0  # set back again: more than the window late is a clock step
    assert d.update(7, 7.0) == 0.0


def test_old_samples_leave_the_window() -> None:
    d = FrameDelay(window_s=10, tolerance_s=1.5)
    d.update(0, 0)
    for t in range(1, 40):
        last = d.update(t, t + 5)  # a line that became 5 s slower
    assert last == 0.0  # after the window it is the line's normal latency


# --- the run loop ----------------------------------------------------------------------------


class FakeDriver(Driver):
    role = DeviceRole.PUMP

    def __init__(self, emit: Callable[[DeviceInput], None], *, fail_connect: BaseException | None = None,
                 fail_poll: BaseException | None = None) -> None:
        super().__init__("fake", emit, poll_interval_s=0.01, timeout_s=1.0, backoff_initial_s=0.01,
                         backoff_max_s=0.02)
        self.fail_connect = fail_connect
        self.fail_poll = fail_poll
        self.polls = 0
        self.closes = 0

    async def connect(self) -> None:
        if self.fail_connect is not None:
            raise self.fail_connect

    async def poll(self) -> None:
        self.polls += 1
        if self.fail_poll is not None:
            raise self.fail_poll
        self.frame_ok()

    async def close(self) -> None:
        self.closes += 1
        raise RuntimeError("close is broken too")


async def _run(driver: FakeDriver, until: Callable[[], bool]) -> None:
    task = asyncio.create_task(driver.run())
    try:
        await wait_until(until, "the driver to get there")
        assert not task.done()
    finally:
        driver.stop()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize(
    "exc",
    [OverflowError("signed integer is greater than maximum"), ValueError("Not a valid parity"),
     LinkLost("/dev/ttyUSB0: No such file"), TypeError("bad"), RuntimeError("bug in connect")],
)
async def test_any_connect_failure_is_retried_logged_once_and_shown(exc: BaseException,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    got: list[DeviceInput] = []
    driver = FakeDriver(got.append, fail_connect=exc)
    with caplog.at_level(logging.INFO, logger="monitord.drivers.base"):
        await _run(driver, lambda: driver.connect_attempts >= 20)
    (status,) = [g for g in got if isinstance(g, LinkStatus)]
    assert status.state is LinkState.RECONNECTING
    assert status.detail.startswith("cannot open: ") and str(exc) in status.detail
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING and "cannot open" in r.getMessage()]
    assert len(failures) == 1  # twenty tries, one line for the one cause
    closing = [r for r in caplog.records if "closing the port failed" in r.getMessage()]
    assert len(closing) == 1


async def test_a_driver_bug_in_poll_reconnects_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    got: list[DeviceInput] = []
    driver = FakeDriver(got.append, fail_poll=ZeroDivisionError("division by zero"))
    with caplog.at_level(logging.INFO, logger="monitord.drivers.base"):
        await _run(driver, lambda: driver.polls >= 20)
    states = [g.state for g in got if isinstance(g, LinkStatus)]
    assert states == [LinkState.RECONNECTING]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "driver error" in r.getMessage()]
    assert len(errors) == 1 and errors[0].exc_info is not None  # the traceback, once


async def test_a_consumer_that_raises_does_not_stop_the_driver(caplog: pytest.LogCaptureFixture) -> None:
    def broken(item: DeviceInput) -> None:
        raise RuntimeError("queue full")

    driver = FakeDriver(broken)
    with caplog.at_level(logging.INFO, logger="monitord.drivers.base"):
        await _run(driver, lambda: driver.polls >= 20)
    assert driver.frames_ok >= 20
    assert len([r for r in caplog.records if "could not hand on" in r.getMessage()]) == 1
