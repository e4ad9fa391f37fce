"""The web view and the archive with many simulated beds at 1 Hz: lag p50/p99 and CPU, against a
bare subscriber measured in the same run.

    python -m bench.central [--beds 500 1000 2000] [--seconds 20] [--only web|archive]

One mosquitto on a free port (``max_inflight_messages`` raised, as docs/central.md advises for
the archive); a publisher process plays N beds, each sending per second a retained ``state``
(HR = 100 + the second), a ``vitals`` and an ``infusion`` event (QoS 1, payloads from the bed's
own builders), and a ``status`` heartbeat every 10 s, spread over the second as unsynchronised
beds would. Every payload's ``time`` is its send time. Then, one after the other:

- bare: a paho subscriber on ``<root>/+/#`` that only parses each message; lag = receipt - time.
- web: ``monitord central --web`` (its own process) and one page's event stream read here;
  lag = a tile with that second's HR arriving - the state's send time.
- archive: two ``monitord archive`` workers on one shared subscription into PostgreSQL;
  lag = the row's ``stored_at`` - the event's time.

CPU: the measured processes' CPU time over the phase, in % of one core (this box has 2 cores,
shared with the broker, the publisher and PostgreSQL: see the broker's and publisher's figures).
Goal: p99 lag under 1 s at 2,000 beds, for the archive worker pair (the issue's goal) and, here, the web view.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.central.feeds import SimBed
from tests.mqtt.broker import Mosquitto, free_port, wait_port

ROOT = "monitord/v1"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
GOAL_P99_S = 1.0
REPO = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


class BenchBroker(Mosquitto):
    def _write_conf(self) -> Path:
        conf = super()._write_conf()
        # The default (20) caps each subscriber's unacknowledged QoS 1 messages: an archive worker
        # acknowledges only after its commit, so 20 in flight would pace it to the transaction round trip.
        conf.write_text(conf.read_text().replace("log_type all", "log_type error") + "max_inflight_messages 1000\n")
        return conf


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def templates(bed_id: str) -> dict[str, str]:
    """Payload text with markers for what changes per message."""
    b = SimBed(bed_id, check=False)
    state = json.loads(b.state())
    state["vitals"]["hr"]["value"] = -11111.0
    state["time"] = "@TIME@"
    state["seq"] = -22222
    _, vit = b.vitals(hr=72.0, spo2=97.0, rr=14.0)
    _, inf = b.infusion(0.5)
    out = {"state": json.dumps(state), "status": b.status().decode()}
    for name, raw in (("vitals", vit), ("infusion", inf)):
        p = json.loads(raw)
        p["time"], p["seq"] = "@TIME@", -22222
        out[name] = json.dumps(p)
    return {k: v.replace("%", "%%").replace('"@TIME@"', '"%(t)s"').replace("-22222", "%(seq)d").replace("-11111.0", "%(hr)d")
            for k, v in out.items()}


def publisher(port: int, n: int, seconds: int, out: str, ready: Any) -> None:
    """The simulated beds (a process of its own). Writes the send time of each (bed, second)'s state."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-beds-{uuid.uuid4().hex[:6]}")
    c.max_inflight_messages_set(200)  # paho spends O(in flight) per message: a large window is slower
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    beds = [f"bed-{i:04d}" for i in range(n)]
    tpl = templates("bed-x")
    seq = [0] * n
    sent = [[0.0] * seconds for _ in range(n)]
    ready.wait()
    c0 = time.process_time()
    t0 = time.time() + 0.5
    behind = 0.0
    for tick in range(seconds):
        for i, bed in enumerate(beds):
            if i % 50 == 0:
                ahead = t0 + tick + i / n - time.time()
                if ahead > 0:
                    time.sleep(ahead)
                behind = max(behind, -ahead)
            now = time.time()
            t = iso(now)
            base = f"{ROOT}/{bed}/"
            if tick % 10 == 0:
                c.publish(base + "status", tpl["status"].replace("bed-x", bed), qos=1, retain=True)
            seq[i] += 1
            c.publish(base + "state", (tpl["state"] % {"t": t, "seq": seq[i], "hr": 100 + tick}).replace("bed-x", bed),
                      qos=1, retain=True)
            sent[i][tick] = now
            for kind in ("vitals", "infusion"):
                seq[i] += 1
                c.publish(base + kind, (tpl[kind] % {"t": t, "seq": seq[i]}).replace("bed-x", bed), qos=1)
    cpu = time.process_time() - c0
    time.sleep(1.0)
    c.disconnect()
    c.loop_stop()
    Path(out).write_text(json.dumps({"sent": sent, "t0": t0, "behind_s": round(behind, 2),
                                     "cpu_pct": round(100 * cpu / (time.time() - 1.0 - t0), 1)}))


class Beds:
    def __init__(self, port: int, n: int, seconds: int) -> None:
        self.out = tempfile.mktemp(suffix=".json")
        self.ready = mp.Event()
        self.proc = mp.Process(target=publisher, args=(port, n, seconds, self.out, self.ready), daemon=True)
        self.proc.start()

    def go(self) -> None:
        self.ready.set()

    def join(self, timeout: float) -> dict[str, Any]:
        self.proc.join(timeout)
        assert self.proc.exitcode == 0, "publisher failed"
        return dict(json.loads(Path(self.out).read_text()))


def pct(xs: list[float], q: float) -> float | None:
    if len(xs) < 2:
        return None
    return round(statistics.quantiles(xs, n=100, method="inclusive")[int(q) - 1], 3)


def summary(name: str, lags: list[float], cpu: float, wall: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"consumer": name, "samples": len(lags), "lag_p50_s": pct(lags, 50), "lag_p99_s": pct(lags, 99),
            "cpu_pct": round(100 * cpu / wall, 1), **(extra or {})}


def bare_subscriber(port: int, q: Any, stop: Any) -> None:
    lags: list[float] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{uuid.uuid4().hex[:6]}")

    def on_message(cl: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        p = json.loads(msg.payload)
        if not msg.retain and msg.topic.endswith(("/state", "/vitals", "/infusion")):
            lags.append(time.time() - datetime.fromisoformat(p["time"]).timestamp())

    c.on_message = on_message
    c.on_connect = lambda cl, *a: cl.subscribe(f"{ROOT}/+/#", qos=1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    q.put("ready")
    stop.wait()
    c.loop_stop()
    q.put(lags)


def phase_bare(broker: Mosquitto, n: int, seconds: int) -> dict[str, Any]:
    q: Any = mp.Queue()
    stop = mp.Event()
    p = mp.Process(target=bare_subscriber, args=(broker.port, q, stop), daemon=True)
    p.start()
    assert q.get(timeout=10) == "ready"
    time.sleep(0.5)
    return run_phase("bare subscriber", broker, n, seconds, [p.pid], lambda: (stop.set(), q.get(timeout=60))[1])


def run_phase(name: str, broker: Mosquitto, n: int, seconds: int, pids: list[int],
              finish: Callable[[], list[float]], extra: Callable[[], dict[str, Any]] | None = None,
              during: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    beds = Beds(broker.port, n, seconds)
    time.sleep(0.5)
    assert broker.proc is not None
    c0 = {pid: cpu_s(pid) for pid in [*pids, broker.proc.pid, beds.proc.pid]}
    w0 = time.monotonic()
    beds.go()
    sent = beds.join(seconds + 120)
    if during is not None:
        during(sent)
    c1 = {pid: cpu_s(pid) for pid in [*pids, broker.proc.pid] if Path(f"/proc/{pid}").exists()}
    rss = sum(rss_mb(pid) for pid in pids)
    wall = time.monotonic() - w0
    lags = finish()
    out = summary(name, lags, sum(c1[p] - c0[p] for p in pids), wall, extra() if extra else None)
    out["rss_mb"] = rss
    out["broker_cpu_pct"] = round(100 * (c1[broker.proc.pid] - c0[broker.proc.pid]) / wall, 1)
    out["generator_cpu_pct"] = sent["cpu_pct"]
    out["generator_behind_s"] = sent["behind_s"]  # how late the simulated beds were on their schedule
    out["loadavg_1min"] = round(os.getloadavg()[0], 2)  # other work on the box shows here
    return out


class EventStream(threading.Thread):
    """One page's /events, read raw: when each (bed, HR) first arrives."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"GET /events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
        self.seen: dict[tuple[str, int], float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        buf = b""
        f = self.sock.makefile("rb")
        while not self.stop.is_set():
            line = f.readline()
            if not line:
                return
            if not line.startswith(b"data: "):
                continue
            now = time.time()
            buf = line[6:]
            for tile in json.loads(buf)["tiles"]:
                hr = tile["vitals"]["hr"][0]
                if hr is not None:
                    self.seen.setdefault((tile["bed"], int(hr)), now)


def phase_web(broker: Mosquitto, n: int, seconds: int) -> dict[str, Any]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "monitord.cli", "central", "--web", "--port", str(broker.port),
                             "--root", ROOT, "--web-port", str(port)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 30)
        stream = EventStream(port)
        stream.start()
        result: dict[str, list[float]] = {}

        def match(sent: dict[str, Any]) -> None:
            time.sleep(2.0)  # the last second's tiles
            lags = []
            for i, row in enumerate(sent["sent"]):
                for tick, t in enumerate(row):
                    got = stream.seen.get((f"bed-{i:04d}", 100 + tick))
                    if got is not None and t:
                        lags.append(got - t)
            result["lags"] = lags

        out = run_phase("web view", broker, n, seconds, [proc.pid], lambda: result["lags"],
                        lambda: {"tiles_expected": n * seconds, "tiles_seen": len(result["lags"])}, match)
        stream.stop.set()
        return out
    finally:
        proc.terminate()
        proc.wait(20)


def phase_archive(broker: Mosquitto, n: int, seconds: int) -> dict[str, Any]:
    import psycopg

    run = uuid.uuid4().hex[:8]
    schema = f"bench_{run}"
    workers = [subprocess.Popen([sys.executable, "-m", "monitord.cli", "archive", "--port", str(broker.port),
                                 "--root", ROOT, "--url", PG_URL, "--schema", schema, "--group", "bench",
                                 # New ids, no persistent session: sessions left from an earlier phase would
                                 # hold that phase's messages, whose (bed, seq) the next phase reuses.
                                 "--client-id", f"bench-archive-{run}-{k}", "--clean-session"], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for k in range(2)]
    conn = psycopg.connect(PG_URL, autocommit=True)
    expected = 2 * n * seconds
    drained: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 30
        while True:  # both workers have made their tables and subscribed
            time.sleep(1.0)
            if conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema,)).fetchone() == (3,):
                break
            assert time.monotonic() < deadline, "archive workers did not start"
        time.sleep(1.0)

        def drain(sent: dict[str, Any]) -> None:
            t = time.monotonic()
            count = 0
            while time.monotonic() - t < 120:
                row = conn.execute(f"SELECT count(*) FROM {schema}.archive_events").fetchone()
                count = row[0] if row else 0
                if count >= expected:
                    break
                time.sleep(0.2)
            drained.update(stored=count, expected=expected, drain_after_publishing_s=round(time.monotonic() - t, 1))

        def lags() -> list[float]:
            rows = conn.execute(f"SELECT extract(epoch FROM stored_at - time) FROM {schema}.archive_events").fetchall()
            return [float(r[0]) for r in rows]

        return run_phase("archive (2 workers)", broker, n, seconds, [w.pid for w in workers], lags,
                         lambda: dict(drained), drain)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()


def verdict(res: dict[str, Any], ref: dict[str, Any], n: int) -> dict[str, Any]:
    p99, base = res["lag_p99_s"], ref["lag_p99_s"]
    res["bare_p99_s"] = base
    res["ratio_p99_to_bare"] = round(p99 / base, 1) if p99 and base else None
    res["goal"] = f"p99 < {GOAL_P99_S} s"
    complete = res.get("stored", res.get("tiles_seen", 1)) >= 0.99 * res.get("expected", res.get("tiles_expected", 1))
    if res["generator_behind_s"] > 1.0 or ref["generator_behind_s"] > 1.0:
        res["result"] = "INVALID (the simulated beds fell behind their 1 Hz schedule)"
    else:
        res["result"] = "PASS" if p99 is not None and p99 < GOAL_P99_S and complete else "FAIL"
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--beds", type=int, nargs="+", default=[500, 1000, 2000])
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--only", choices=["web", "archive"])
    a = ap.parse_args()
    broker = BenchBroker(Path(tempfile.mkdtemp()) / "broker").start()
    try:
        for n in a.beds:
            ref = phase_bare(broker, n, a.seconds)
            print(json.dumps({"beds": n, **ref}), flush=True)
            for name, phase in (("web", phase_web), ("archive", phase_archive)):
                if a.only in (None, name):
                    print(json.dumps({"beds": n, **verdict(phase(broker, n, a.seconds), ref, n)}), flush=True)
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
