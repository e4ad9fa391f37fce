"""The reference for ``bench_latency.py``: what serial -> parse -> MQTT costs with nothing else.

    python bench/bare_loop.py latency PTY PORT TOPIC
        pyserial reads PTY, ``drivers.datex_s5.StreamDecoder`` decodes, and paho publishes
        ``{"hr": ...}`` at QoS 1 whenever HR changes. No engine, no rules, no storage.
    python bench/bare_loop.py devices MONITOR PUMP PORT TOPIC
        the bed's devices at the daemon's rates: asks the Datex monitor for a record every 5 s
        and publishes each; polls the Modbus pump once a second (read holding registers,
        decoded with the shipped register map) and publishes each reply. For CPU.

Prints ``ready`` once connected to the broker, then runs until killed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import serial
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from monitord.drivers import datex_s5 as dx  # noqa: E402
from monitord.drivers import modbus_pump as mb  # noqa: E402
from monitord.drivers.pump_map import decode_block, load_map  # noqa: E402

MONITOR_INTERVAL_S = 5
PUMP_POLL_S = 1.0


def connect(port: int, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def latency(path: str, port: int, topic: str) -> None:
    ser = serial.serial_for_url(path, baudrate=19200, timeout=None)
    client = connect(port, "bench-bare-latency")
    decoder = dx.StreamDecoder()
    print("ready", flush=True)
    last: float | None = None
    while True:
        data = ser.read(1)  # blocks until a byte arrives
        data += ser.read(ser.in_waiting)
        for item in decoder.feed(data):
            if isinstance(item, dx.DisplayedValues) and item.hr != last:
                last = item.hr
                client.publish(topic, json.dumps({"hr": item.hr}), qos=1)


def monitor_loop(path: str, client: mqtt.Client, topic: str) -> None:
    ser = serial.serial_for_url(path, baudrate=19200, timeout=None)
    ser.write(dx.request_frames(MONITOR_INTERVAL_S))
    decoder = dx.StreamDecoder()
    while True:
        data = ser.read(1)
        data += ser.read(ser.in_waiting)
        for item in decoder.feed(data):
            if isinstance(item, dx.DisplayedValues):
                client.publish(topic + "/vitals", json.dumps({"hr": item.hr, "spo2": item.spo2, "rr": item.co2_rr,
                                                              "etco2": item.etco2_mmhg}), qos=1)


def pump_loop(path: str, client: mqtt.Client, topic: str) -> None:
    pump_map = load_map()
    ser = serial.serial_for_url(path, baudrate=19200, timeout=1.0)
    request = mb.encode_read_request(1, pump_map.start, pump_map.count)
    length = mb.response_length(pump_map.count)
    next_poll = time.monotonic()
    while True:
        ser.reset_input_buffer()
        ser.write(request)
        reply = ser.read(length)
        try:
            block = mb.decode_read_response(reply, 1, pump_map.count)
        except Exception:
            block = None
        if block is not None:
            decoded = decode_block(pump_map, block)
            client.publish(topic + "/infusion", json.dumps({"state": decoded.state.value, **decoded.values}), qos=1)
        next_poll += PUMP_POLL_S
        time.sleep(max(0.0, next_poll - time.monotonic()))


def devices(monitor: str, pump: str, port: int, topic: str) -> None:
    client = connect(port, "bench-bare-devices")
    threads = [threading.Thread(target=monitor_loop, args=(monitor, client, topic), daemon=True),
               threading.Thread(target=pump_loop, args=(pump, client, topic), daemon=True)]
    for t in threads:
        t.start()
    print("ready", flush=True)
    for t in threads:
        t.join()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "latency":
        latency(args[0], int(args[1]), args[2])
    elif mode == "devices":
        devices(args[0], args[1], int(args[2]), args[3])
    else:
        sys.exit(f"unknown mode {mode}")
