"""``monitord hl7`` end to end: a bed publishing on a real mosquitto, the gateway's MQTT reader and
MLLP sender, and a local receiver; then the receiver down, then the gateway down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitord.hl7 import pcd
from monitord.hl7.gateway import FeedReader, load_translator
from monitord.hl7.outbox import Outbox
from monitord.hl7.sender import Sender
from monitord.readings import Acknowledge, Quality, Vital, VitalsReading
from tests.hl7.support import Receiver, observations, parse_strict, until
from tests.mqtt.broker import Mosquitto
from tests.mqtt.conftest import ROOT, Bed, bed_config

FAST = {"retry_min_s": 0.05, "retry_max_s": 0.2, "ack_timeout_s": 2.0, "connect_timeout_s": 1.0}
FAULT = "tech.pump.device_fault"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


class Gateway:
    """The pieces ``monitord hl7`` runs, on the test's event loop."""

    def __init__(self, port: int, queue: Path, receiver_port: int, client_id: str = "hl7-test") -> None:
        self.cfg = bed_config(port).mqtt
        self.outbox = Outbox(queue)
        self.sender = Sender(self.outbox, "127.0.0.1", receiver_port, **FAST)
        loop = asyncio.get_running_loop()
        self.reader = FeedReader(self.cfg, self.outbox, load_translator(self.outbox, pcd.Identity(root=ROOT), 0),
                                 client_id, on_queued=lambda: loop.call_soon_threadsafe(self.sender.wake))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Gateway:
        self._task = asyncio.create_task(self.sender.run())
        self.reader.start()
        await until(lambda: self.reader.subscribed.is_set(), what="gateway subscribed")
        return self

    async def stop(self) -> None:
        self.reader.stop()
        self.sender.stop()
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)
        self.outbox.close()

    def patient(self, bed: str) -> Any:
        mem = self.reader.translator.beds.get(bed)
        return mem.patient[0] if mem else None


@contextlib.asynccontextmanager
async def gateway(*args: Any, **kw: Any) -> AsyncIterator[Gateway]:
    g = await Gateway(*args, **kw).start()
    try:
        yield g
    finally:
        await g.stop()


def alert_transitions(receiver: Receiver, rule_id: str) -> list[tuple[str, str]]:
    """(phase, state) of each PCD-04 the receiver got for ``rule_id``, in arrival order."""
    out = []
    for text in receiver.received:
        if "|ORU^R40^" in text and f"|{rule_id}^" in text:
            rows = observations(parse_strict(text))
            out.append((rows[3].obx_5.to_er7(), rows[4].obx_5.to_er7()))
    return out


async def test_a_bed_reaches_the_receiver_through_down_receiver_and_down_gateway(broker: Mosquitto,
                                                                                 tmp_path: Path) -> None:
    receiver = await Receiver().start()
    bed = await Bed(bed_config(broker.port)).start()
    queue = tmp_path / "hl7.sqlite3"
    try:
        async with gateway(broker.port, queue, receiver.port) as g:
            await bed.start_course()
            await until(lambda: g.patient("bed-7") == "P-001", what="the gateway knows the patient")
            bed.loop.put(VitalsReading("monitor", {Vital.HR: 81.0, Vital.SPO2: 96.0, Vital.RR: 13.0}, Quality.VALID))
            bed.fault()
            await until(lambda: FAULT in bed.active(), what="alarm raised")
            await bed.loop.command(Acknowledge(FAULT, actor="n1"))
            bed.fault(False)
            await until(lambda: len(alert_transitions(receiver, FAULT)) == 3, what="three alert messages")
            assert alert_transitions(receiver, FAULT) == [("start", "active"), ("update", "active"),
                                                          ("end", "inactive")]
            spo2 = [o for text in receiver.received if "|ORU^R01^" in text
                    for o in observations(parse_strict(text)) if o.obx_3.to_er7().startswith("150456^")]
            assert [o.obx_5.to_er7() for o in spo2] == ["96"]
            assert all("PID|||P-001^^^MONITORD^PI" in text for text in receiver.received)

            # The receiver goes away: the gateway keeps what comes and delivers it when it is back.
            await receiver.stop()
            bed.fault()
            await until(lambda: FAULT in bed.active(), what="alarm raised again")
            bed.fault(False)
            await until(lambda: g.outbox.size() >= 2 and g.sender.stats.link_failures >= 2,
                        what="alert messages queued while the receiver is down")
            receiver = await Receiver(port=receiver.port, received=receiver.received).start()
            await until(lambda: len(alert_transitions(receiver, FAULT)) == 5 and g.outbox.size() == 0,
                        what="the queued alert messages delivered")

        # The gateway goes away: the broker keeps the bed's messages for its session.
        bed.fault()
        await until(lambda: FAULT in bed.active(), what="alarm raised with the gateway down")
        bed.fault(False)
        await until(lambda: FAULT not in bed.active(), what="alarm cleared with the gateway down")
        await until(lambda: bed.publisher.forwarded >= 1 and not bed.publisher._unconfirmed,
                    what="the broker has the bed's events")
        async with gateway(broker.port, queue, receiver.port) as g:
            await until(lambda: len(alert_transitions(receiver, FAULT)) == 7, what="the backlog after a restart")
        phases = [p for p, _ in alert_transitions(receiver, FAULT)]
        assert phases == ["start", "update", "end", "start", "end", "start", "end"]
        ids = [text.split("\r", 1)[0].split("|")[9] for text in receiver.received]
        assert len(ids) == len(set(ids))  # nothing twice
    finally:
        await bed.stop()
        await receiver.stop()
