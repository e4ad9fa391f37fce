"""MLLP delivery: a local receiver acknowledges every message, in order; a receiver that is down
gets everything once it is back; refusals are handled as the ACK code says; the outbox is bounded
and says what it lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from monitord.hl7.outbox import Outbox
from monitord.hl7.pcd import Built
from monitord.hl7.sender import Sender
from tests.hl7.support import Receiver, ack, parse_strict, recorded_course, until
from tests.mqtt.broker import free_port

FAST = {"retry_min_s": 0.05, "retry_max_s": 0.2, "ack_timeout_s": 1.0, "connect_timeout_s": 1.0}


def course_messages(n: int) -> list[tuple[str, Built]]:
    """The first ``n`` HL7 messages of the recorded course (one per reading)."""
    from monitord.hl7 import pcd
    from monitord.hl7.translate import Translator
    from tests.hl7.support import NOW

    tr = Translator(pcd.Identity(), 0)
    out: list[tuple[str, Built]] = []
    for leaf, payload in recorded_course():
        out += [("bed-01", b) for b in tr.handle("bed-01", leaf, payload, NOW, 0.0)]
        if len(out) >= n:
            return out[:n]
    raise AssertionError("course too short")


@contextlib.asynccontextmanager
async def running(sender: Sender) -> AsyncIterator[Sender]:
    task = asyncio.create_task(sender.run())
    try:
        yield sender
    finally:
        sender.stop()
        await asyncio.wait_for(task, 10)


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    box = Outbox(tmp_path / "outbox.sqlite3", max_messages=1000)
    yield box
    box.close()


async def test_a_local_receiver_acknowledges_every_message_in_order(outbox: Outbox) -> None:
    messages = course_messages(30)
    receiver = await Receiver().start()
    try:
        outbox.store(messages, {})
        async with running(Sender(outbox, "127.0.0.1", receiver.port, **FAST)) as sender:
            await until(lambda: outbox.size() == 0, what="outbox drained")
        assert receiver.control_ids() == [m.control_id for _, m in messages]
        assert receiver.connections == 1  # one connection, kept
        assert sender.stats.delivered == 30 and outbox.counter("sent") == 30
        for text in receiver.received:
            parse_strict(text)
    finally:
        await receiver.stop()


async def test_a_receiver_that_is_down_gets_everything_when_it_is_back(outbox: Outbox) -> None:
    port = free_port()
    messages = course_messages(40)
    outbox.store(messages[:20], {})
    async with running(Sender(outbox, "127.0.0.1", port, **FAST)) as sender:
        await until(lambda: sender.stats.link_failures >= 3, what="delivery attempts failing")
        outbox.store(messages[20:], {})  # more arrives while the receiver is away
        sender.wake()
        assert outbox.size() == 40
        receiver = await Receiver(port=port).start()
        try:
            await until(lambda: outbox.size() == 0, what="the backlog delivered")
        finally:
            await receiver.stop()
    assert receiver.control_ids() == [m.control_id for _, m in messages]  # all, once, in order
    assert outbox.counters().get("overflow", 0) == 0


async def test_the_queue_survives_a_gateway_restart(tmp_path: Path) -> None:
    messages = course_messages(10)
    box = Outbox(tmp_path / "outbox.sqlite3")
    box.store(messages, {"bed-01": "{}"})
    box.close()
    again = Outbox(tmp_path / "outbox.sqlite3")
    receiver = await Receiver().start()
    try:
        assert again.size() == 10 and again.memories() == {"bed-01": "{}"}
        async with running(Sender(again, "127.0.0.1", receiver.port, **FAST)):
            await until(lambda: again.size() == 0, what="delivered after the restart")
        assert receiver.control_ids() == [m.control_id for _, m in messages]
    finally:
        await receiver.stop()
        again.close()


def answering(codes: dict[str, list[str]]) -> Callable[[str], str | None]:
    """A receiver's answers: per MSH-10, the ACK codes to give in turn (then AA)."""
    def answer(text: str) -> str | None:
        control = text.split("\r", 1)[0].split("|")[9]
        queue = codes.get(control)
        code = queue.pop(0) if queue else "AA"
        return None if code == "none" else ack(text, code, f"{code} for test")
    return answer


async def test_rejected_messages_are_parked_and_the_rest_goes_on(outbox: Outbox,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    messages = course_messages(5)
    ids = [m.control_id for _, m in messages]
    receiver = await Receiver(answer=answering({ids[1]: ["AR"], ids[3]: ["AE", "AE", "AE"]})).start()
    outbox.store(messages, {})
    try:
        with caplog.at_level(logging.WARNING):
            async with running(Sender(outbox, "127.0.0.1", receiver.port, max_errors=3, **FAST)) as sender:
                await until(lambda: outbox.size() == 0, what="every message answered")
    finally:
        await receiver.stop()
    assert receiver.control_ids() == [ids[0], ids[1], ids[2], ids[3], ids[3], ids[3], ids[4]]
    assert [p[0] for p in outbox.parked()] == [ids[1], ids[3]]
    assert outbox.parked()[0][2].startswith("AR")
    assert sender.stats.delivered == 3 and sender.stats.rejected == 1 and sender.stats.errors == 3
    assert outbox.counter("parked") == 2
    assert "rejected by the receiver" in caplog.text


async def test_an_error_answer_is_sent_again_and_may_then_succeed(outbox: Outbox) -> None:
    messages = course_messages(2)
    first = messages[0][1].control_id
    receiver = await Receiver(answer=answering({first: ["AE"]})).start()
    outbox.store(messages, {})
    try:
        async with running(Sender(outbox, "127.0.0.1", receiver.port, **FAST)):
            await until(lambda: outbox.size() == 0, what="delivered")
    finally:
        await receiver.stop()
    assert receiver.control_ids() == [first, first, messages[1][1].control_id]
    assert outbox.parked() == []


async def test_no_answer_means_the_same_message_again_on_a_new_connection(outbox: Outbox) -> None:
    messages = course_messages(2)
    first = messages[0][1].control_id
    receiver = await Receiver(answer=answering({first: ["none"]})).start()
    outbox.store(messages, {})
    try:
        async with running(Sender(outbox, "127.0.0.1", receiver.port, **FAST)) as sender:
            await until(lambda: outbox.size() == 0, timeout=30, what="delivered after the timeout")
    finally:
        await receiver.stop()
    assert receiver.control_ids() == [first, first, messages[1][1].control_id]  # same MSH-10: receiver can dedupe
    assert receiver.connections == 2 and sender.stats.link_failures == 1


async def test_an_answer_for_another_message_is_not_taken_as_an_ack(outbox: Outbox) -> None:
    messages = course_messages(1)
    wrong = [True]

    def answer(text: str) -> str:
        if wrong.pop() if wrong else False:
            return ack(text.replace(messages[0][1].control_id, "someone-else"))
        return ack(text)

    receiver = await Receiver(answer=answer).start()
    outbox.store(messages, {})
    try:
        async with running(Sender(outbox, "127.0.0.1", receiver.port, **FAST)) as sender:
            await until(lambda: outbox.size() == 0, what="delivered")
    finally:
        await receiver.stop()
    assert len(receiver.received) == 2 and sender.stats.link_failures == 1


def test_a_full_queue_drops_and_counts_and_alerts_push_out_observations(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox(tmp_path / "small.sqlite3", max_messages=3)
    obs = [("b", Built("pcd01", f"o{i}", "x")) for i in range(4)]
    alert = [("b", Built("pcd04", "a1", "x")), ("b", Built("pcd04", "a2", "x")), ("b", Built("pcd04", "a3", "x")),
             ("b", Built("pcd04", "a4", "x"))]
    with caplog.at_level(logging.WARNING):
        assert box.store(obs, {}) == 1  # o3 does not fit
        assert box.store(alert[:1], {}) == 1  # a1 takes o0's place
    assert "queue full" in caplog.text
    queued = []
    while (item := box.peek()) is not None:
        queued.append(item.control_id)
        box.done(item)
    assert queued == ["o1", "o2", "a1"]
    assert box.store(alert, {}) == 1  # three alerts fit, the fourth has no observation to push out
    assert box.counter("overflow") == 3 and box.size() == 3
    box.close()


def test_a_failed_store_leaves_nothing_half_written(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    unwritable = Built("pcd01", "o2", object())  # type: ignore[arg-type]
    with pytest.raises(Exception, match="type"):
        box.store([("b", Built("pcd01", "o1", "x")), ("b", unwritable)], {"b": "{}"})
    assert box.size() == 0 and box.peek() is None and box.memories() == {}
    box.close()
