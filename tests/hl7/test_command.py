"""``monitord hl7`` as a process: feed messages on a real broker reach a local MLLP receiver; a
bad receiver address is a usage error; SIGTERM stops it cleanly with the outbox kept."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from monitord.hl7.outbox import Outbox
from monitord.mqtt import topics as t
from tests.hl7.support import Receiver, parse_strict, recorded_course, until
from tests.mqtt.broker import Mosquitto

ROOT = "monitord/v1"


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "monitord.cli", "hl7", *args]


def test_a_receiver_address_is_required() -> None:
    done = subprocess.run(command("--host", "127.0.0.1", "--to", "no-port"), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "HOST:PORT" in done.stdout + done.stderr


async def test_the_command_delivers_a_bed_and_stops_on_sigterm(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    receiver = await Receiver().start()
    queue = tmp_path / "outbox.sqlite3"
    log = (tmp_path / "hl7.log").open("w")
    proc = subprocess.Popen(command("--host", "127.0.0.1", "--port", str(broker.port), "--root", ROOT,
                                    "--to", f"127.0.0.1:{receiver.port}", "--queue", str(queue),
                                    "--interval", "0", "--facility", "GENERAL", "--client-id", "hl7-cmd"),
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stderr=log)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="feeder", protocol=mqtt.MQTTv311)
    try:
        feed = recorded_course()
        admitted = next(i for i, (leaf, p) in enumerate(feed) if leaf == t.STATE and p["patient_id"])
        readings = [(leaf, p) for leaf, p in feed[admitted:] if leaf == t.VITALS][:300]
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        pub.publish(f"{ROOT}/bed-01/{t.STATE}", json.dumps(feed[admitted][1]), qos=1, retain=True).wait_for_publish(10)
        for leaf, p in readings:  # until the gateway has subscribed, the broker drops them: send until one arrives
            pub.publish(f"{ROOT}/bed-01/{leaf}", json.dumps(p), qos=1).wait_for_publish(10)
            if len(receiver.received) >= 3:
                break
            await asyncio.sleep(0.1)
        await until(lambda: len(receiver.received) >= 3, timeout=30, what="readings delivered")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0  # the receiver keeps answering meanwhile
        for text in receiver.received:
            msg = parse_strict(text)
            assert msg.msh.msh_4.to_er7() == "GENERAL"
            assert msg.oru_r01_patient_result.oru_r01_patient.pid.pid_3.to_er7().startswith("P-10003^")
        # Stopped, it keeps what it had not delivered yet (a reading queued as SIGTERM came is sent
        # at the next start): what the receiver has is counted sent, and nothing it has is still queued.
        box = Outbox(queue)
        assert box.counter("sent") == len(receiver.received)
        delivered = {parse_strict(text).msh.msh_10.to_er7() for text in receiver.received}
        with sqlite3.connect(queue) as conn:
            still = {cid for (cid,) in conn.execute("SELECT control_id FROM outbox")}
        assert box.size() == len(still) and not delivered & still
        box.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        pub.loop_stop()
        log.close()
        await receiver.stop()
        broker.stop()
