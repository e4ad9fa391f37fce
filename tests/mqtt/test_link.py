"""Birth, will, link loss as a bedside technical alarm, and no alarm lost across an outage."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from monitord.mqtt.publisher import CURSOR
from monitord.readings import Quality, Vital, VitalsReading
from tests.mqtt.broker import Mosquitto
from tests.mqtt.conftest import ROOT, Bed, bed_config
from tests.mqtt.support import Subscriber, until

REPO = Path(__file__).resolve().parents[2]


def statuses(sub: Subscriber, bed_id: str) -> list[str]:
    return [m.payload["status"] for m in sub.on(f"/{bed_id}/status")]


async def test_will_says_offline_when_the_bed_dies_abruptly(broker: Mosquitto, subscriber: Subscriber) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tests.mqtt.bed_process", str(broker.port), "bed-kill"],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert line.strip() == "connected"
        await subscriber.until(lambda s: "online" in statuses(s, "bed-kill"), what="birth")
        os.kill(proc.pid, signal.SIGKILL)
        await subscriber.until(lambda s: statuses(s, "bed-kill")[-1:] == ["offline"], what="will")
        will = subscriber.on("/bed-kill/status")[-1].payload
        assert will["reason"] == "connection lost"
    finally:
        proc.kill()
        proc.wait()
    # The will is retained: a station that starts later sees the bed offline too.
    late = Subscriber(broker.port, f"{ROOT}/bed-kill/status")
    try:
        await late.until(lambda s: s.on("/status"), what="retained status")
        assert late.on("/status")[-1].payload["status"] == "offline"
    finally:
        late.close()


async def test_clean_stop_says_offline(broker: Mosquitto, subscriber: Subscriber) -> None:
    bed = await Bed(bed_config(broker.port, "bed-stop")).start()
    await subscriber.until(lambda s: "online" in statuses(s, "bed-stop"), what="birth")
    await bed.stop()
    await subscriber.until(lambda s: statuses(s, "bed-stop")[-1:] == ["offline"], what="explicit offline")
    assert subscriber.on("/bed-stop/status")[-1].payload["reason"] == "daemon stopped"


async def test_alarm_events_gapless_and_in_order_across_a_broker_restart(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    # A central station with a persistent session: the broker queues its QoS 1 messages while it is away.
    station = Subscriber(broker.port, f"{ROOT}/+/events/alarm", client_id="central-1", clean_session=False)
    bed = await Bed(bed_config(broker.port, "bed-r")).start()
    try:
        for i in range(5):
            bed.fault(i % 2 == 0)
        await station.until(lambda s: len(s.on("/events/alarm")) >= 5, what="first alarm events")

        broker.stop()
        await until(lambda: "tech.mqtt_failed" in bed.active(), what="bedside technical alarm for the lost link")
        for i in range(5, 20):  # alarms keep happening while central stations cannot be reached
            bed.fault(i % 2 == 0)
        await until(lambda: bed.engine.alarms.alarm_seq >= 21, what="alarms during the outage")
        broker.start()
        await until(lambda: "tech.mqtt_failed" not in bed.active(), timeout=40, what="link alarm cleared")
        last = bed.engine.alarms.alarm_seq
        await station.until(lambda s: s.on("/events/alarm") and s.on("/events/alarm")[-1].payload["alarm_seq"] >= last,
                            timeout=40, what="every alarm event after the restart")
        # QoS 1 is at least once: a message in flight when the broker died may come again, identical.
        # Dropping repeats of an alarm_seq already seen must leave every transition, in order.
        first: dict[int, dict[str, object]] = {}
        for m in station.on("/events/alarm"):
            seq = m.payload["alarm_seq"]
            if seq in first:
                assert m.payload == first[seq]
            else:
                assert seq == len(first) + 1, f"gap or reorder before alarm_seq {seq}"
                first[seq] = m.payload
        assert list(first) == list(range(1, last + 1))
        rules = {m.payload["rule_id"] for m in station.on("/events/alarm")}
        assert rules == {"tech.pump.device_fault", "tech.mqtt_failed"}
        await until(lambda: bed.store.get_cursor(CURSOR) >= bed.events()[-1].seq, what="cursor at the end")
    finally:
        await bed.stop()
        station.close()
        broker.stop()


async def test_backlog_after_a_daemon_restart_sends_alarms_not_stale_readings(broker: Mosquitto,
                                                                             subscriber: Subscriber) -> None:
    config = bed_config(broker.port, "bed-b")
    first = await Bed(config).start()
    first.fault()
    await subscriber.until(lambda s: s.on("/bed-b/events/alarm"), what="first alarm")
    await first.stop()

    # The daemon restarts; the store recovers the bed. Events recorded before MQTT is up
    # (e.g. the broker is still unreachable) wait in the store.
    second = await Bed(config, clock=first.clock).start(publish=False)
    try:
        assert "tech.pump.device_fault" in second.active()  # restored, held until inputs can judge it
        second.clock.advance(config.alarms.restore_hold_s + 1)
        second.loop.put(VitalsReading("monitor", {Vital.HR: 61.0}, Quality.VALID))
        second.fault(False)
        second.fault(True)
        await until(lambda: second.engine.alarms.alarm_seq == 3, what="alarms while not forwarding")
        assert await asyncio.to_thread(second.store.wait_committed, second.engine.seq, 10.0)
        await second.start_publisher()
        await subscriber.until(lambda s: len(s.on("/bed-b/events/alarm")) >= 3, what="backlog alarms")
        alarm_seqs = [m.payload["alarm_seq"] for m in subscriber.on("/bed-b/events/alarm")]
        assert alarm_seqs == [1, 2, 3]
        second.loop.put(VitalsReading("monitor", {Vital.HR: 62.0}, Quality.VALID))
        await subscriber.until(lambda s: s.on("/bed-b/vitals"), what="live reading")
        assert [m.payload["values"]["hr"]["value"] for m in subscriber.on("/bed-b/vitals")] == [62.0]
    finally:
        await second.stop()


async def test_unreachable_broker_raises_the_bedside_technical_alarm(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "b")  # never started: nothing listens on its port
    bed = await Bed(bed_config(broker.port, "bed-u")).start(wait_connected=False)
    try:
        await until(lambda: "tech.mqtt_failed" in bed.active(), what="technical alarm")
        alarm = next(a for a in bed.engine.alarms.active() if a.rule.id == "tech.mqtt_failed")
        assert str(broker.port) in alarm.message
    finally:
        await bed.stop()


async def test_no_alarm_transition_is_lost_across_a_sigkill(broker: Mosquitto, subscriber: Subscriber,
                                                             tmp_path: Path) -> None:
    """Stored before published, cursor saved in batches: a killed daemon resends, never loses."""
    state = str(tmp_path / "state")
    proc = subprocess.Popen([sys.executable, "-m", "tests.mqtt.bed_process", str(broker.port), "bed-k", state],
                            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert line.strip() == "connected"
        for i in range(40):
            proc.stdin.write("fault\n" if i % 2 == 0 else "clear\n")
            proc.stdin.flush()
            await asyncio.sleep(0.01)
        await subscriber.until(lambda s: len(s.on("/bed-k/events/alarm")) >= 10, what="alarms before the kill")
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: events queued, in flight, cursor not yet saved
    finally:
        proc.kill()
        proc.wait()
    bed = await Bed(bed_config(broker.port, "bed-k", state_dir=state)).start(wait_connected=False)
    try:
        bed.clock.advance(bed.config.alarms.restore_hold_s + 1)  # restored alarms may now be judged
        for on in (True, False, True):
            bed.fault(on)
        stored = [e.data["alarm_seq"] for e in bed.events() if e.kind.value == "alarm"]
        await until(lambda: bed.engine.alarms.alarm_seq > max(stored), what="alarms after the restart")
        last = bed.engine.alarms.alarm_seq

        def first_seen(s: Subscriber) -> list[int]:
            seen: dict[int, None] = {}
            for m in s.on("/bed-k/events/alarm"):
                seen.setdefault(m.payload["alarm_seq"])
            return list(seen)

        await subscriber.until(lambda s: last in first_seen(s), what="every alarm after the restart")
        # Every stored transition reached the station, in order; a repeat is an identical copy.
        stored = [e.data["alarm_seq"] for e in bed.events() if e.kind.value == "alarm"]
        assert stored == list(range(1, last + 1))
        assert first_seen(subscriber) == stored
        by_seq: dict[int, object] = {}
        for m in subscriber.on("/bed-k/events/alarm"):
            assert by_seq.setdefault(m.payload["alarm_seq"], m.payload) == m.payload
    finally:
        await bed.stop()
