"""Store benchmark: monitord's store against plain ``sqlite3`` on the same file, in one run.

    python bench/bench_store.py [--hours 100] [--samples 1000] [--dir DIR] [--keep] [--retention-h H]

1. Fill: ``--hours`` of a bed (1 Hz pump + 1 Hz monitor) written through the real writer thread
   in bulk batches, so that what follows runs on a database of realistic size, with the retention
   pass run every 10 minutes of the course as the daemon's writer runs it (``raw_retention_h``,
   24 h by default). (The fill rate is printed for information only: bedside commits hold one to
   three events.)
2. Commit path at bedside batch size: per sample, one pump reading, one monitor frame, one alarm
   transition and the engine's checkpoint go to ``Store.write``/``Store.checkpoint`` exactly as the
   engine hands them over; the time runs until the writer's commit listener reports them committed
   (an alarm is committed without waiting for ``flush_interval_s``). Reference: the same rows
   (three ``events`` rows with their JSON, two ``readings``, one ``alarm_events``, the checkpoint
   and the session's cumulative dose) inserted with ``sqlite3`` in one transaction on the same file
   with the same pragmas (WAL, ``synchronous=FULL``), timed from the first INSERT to COMMIT's return.
3. The 4-h trend query: the last 4 h of 7 series, ``Store.trends`` against the same SQL on a plain
   ``sqlite3`` connection, alternating, 50 repeats each.
4. Size: the file on disk (database plus WAL) and the pages in use at the end of the course, as
   a bed's file stands after it (nothing vacuums it), then after ``VACUUM`` for information;
   ``PRAGMA quick_check`` time (run at every open).

Goals (issue "fast and light on a Pi"): trend query <= 10 ms and <= 2x raw sqlite3; commit path
p50 and p99 each <= 5x the raw reference; the 100-hour file on disk <= 100 MB. The temporary directory is removed at the end unless
``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from monitord import readings as r
from monitord.clock import FakeClock
from monitord.config import load_config
from monitord.engine import Engine
from monitord.events import Event, EventKind
from monitord.store import Store
from monitord.store.database import sqlite_path
from monitord.store.models import to_epoch
from monitord.store.writer import RETENTION_EVERY_S

VITALS = (r.Vital.HR, r.Vital.PULSE, r.Vital.SPO2, r.Vital.RR, r.Vital.ETCO2, r.Vital.SBP, r.Vital.DBP, r.Vital.MAP)
TREND_SERIES = ["hr", "spo2", "rr", "etco2", "sbp", "rate_ml_h", "dose_rate_mg_kg_h"]
TREND_GOAL_MS, TREND_GOAL_RATIO, COMMIT_GOAL_RATIO, SIZE_GOAL_MB = 10.0, 2.0, 5.0, 100.0
RAW_BED = "bench-raw"  # the reference writes its rows under another bed id, in the same tables


def templates() -> tuple[Event, Event, Event, dict[str, Any]]:
    """A vitals event, an infusion event, an alarm event and a checkpoint, from a real engine
    playing the start of a course (every checklist item answered) with one SpO2 alarm."""
    cfg = load_config()
    clock = FakeClock()
    eng = Engine(cfg, clock)
    seen: list[Event] = []
    eng.subscribe(seen.append)
    eng.submit(r.LinkStatus("pump", r.DeviceRole.PUMP, r.LinkState.CONNECTED))
    eng.submit(r.LinkStatus("monitor", r.DeviceRole.MONITOR, r.LinkState.CONNECTED))
    eng.submit(r.Admit("BENCH-1", 70.0, 45, "rn1"))
    eng.submit(r.ChecklistAnswers({c.id: c.kind == "prompt" for c in cfg.checklist}, "rn1"))
    eng.submit(r.SetOrder("ketamine", 1.0, 35.0, "rn1", syringe_ml=50.0))
    volume = 0.0

    def second(spo2: float) -> None:
        nonlocal volume
        clock.advance(1.0)
        volume += 35.0 / 3600
        eng.submit(r.PumpReading("pump", r.PumpState.RUNNING, rate_ml_h=35.0, volume_infused_ml=round(volume, 5),
                                 drug="ketamine", concentration_mg_ml=1.0, syringe_ml=50.0))
        values: dict[r.Vital, float | None] = {v: 80.0 for v in VITALS}
        values[r.Vital.SPO2] = spo2
        eng.submit(r.VitalsReading("monitor", values, nibp_time=clock.utc_now()))
        eng.tick()

    for _ in range(5):
        second(98.0)
    eng.submit(r.StartInfusion("rn1"))
    for _ in range(25):
        second(80.0)
    vit = [e for e in seen if e.kind is EventKind.VITALS][-1]
    inf = [e for e in seen if e.kind is EventKind.INFUSION][-1]
    alarm = next(e for e in seen if e.kind is EventKind.ALARM)
    return vit, inf, alarm, eng.checkpoint()


def synthetic(n: int, start_seq: int, t0: Any, vit: Event, inf: Event) -> list[Event]:
    """``n`` events alternating pump and monitor readings, one of each per second from ``t0``."""
    out = []
    for i in range(n):
        # Times with microseconds, as a clock gives them (a whole second would be stored smaller).
        t = t0 + timedelta(seconds=i // 2 + 0.123457 + 0.25 * (i % 2))
        if i % 2 == 0:
            data = dict(inf.data, volume_infused_ml=round(i / 2 * 35 / 3600, 4), cumulative_mg=round(i / 2 * 35 / 3600, 4))
            out.append(replace(inf, seq=start_seq + i, time=t, mono=1000.0 + i / 2, data=data))
        else:
            values = {k: 70.0 + (i % 13) for k in vit.data["values"]}
            out.append(replace(vit, seq=start_seq + i, time=t, mono=1000.0 + i / 2, data=dict(vit.data, values=values)))
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def fill(store: Store, events: list[Event], cp: dict[str, Any]) -> tuple[float, float, int]:
    """Write ``events``; every ``RETENTION_EVERY_S`` of their time, once they are committed, a
    retention pass at that time. Returns (seconds in all, seconds of it in retention, rows removed)."""
    t = time.perf_counter()
    spent = 0.0
    removed = 0
    next_pass = events[0].time + timedelta(seconds=RETENTION_EVERY_S)
    for i, ev in enumerate(events):
        store.write(ev)
        if i % 2:
            store.checkpoint(ev.seq, dict(cp, seq=ev.seq))
        if i % 10000 == 0:
            store.wait_committed(ev.seq - 20000, 3600.0)  # stay under the writer's memory bound
        if i % 2 and ev.time >= next_pass:  # as in the writer, between batches: on what is committed so far
            # (an odd event: its checkpoint is queued, so the writer commits it without waiting)
            deadline = time.monotonic() + 3600.0
            while not store.wait_committed(ev.seq, 0.02):  # each batch without its flush interval
                store.writer.hurry()
                assert time.monotonic() < deadline, "the writer did not commit"
            r0 = time.perf_counter()
            removed += store.retention.run(ev.time)
            spent += time.perf_counter() - r0
            next_pass += timedelta(seconds=RETENTION_EVERY_S)
    assert store.wait_committed(events[-1].seq, 3600.0)
    return time.perf_counter() - t, spent, removed


class RawReference:
    """The same rows as one monitord commit, with plain sqlite3: one transaction per sample."""

    EV = "INSERT INTO events (bed_id, seq, kind, time, mono, clock_synced, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
    RD = ("INSERT INTO readings (bed_id, session_id, seq, time, source, device, quality, hr, pulse, sbp, dbp, map,"
          " spo2, rr, etco2, temp, pump_state, rate_ml_h, volume_infused_ml, dose_rate_mg_kg_h, cumulative_mg) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    AL = ("INSERT INTO alarm_events (bed_id, session_id, seq, alarm_seq, time, rule_id, transition, priority,"
          " alarm_kind, state, actor, message, value, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")

    def __init__(self, path: Path, t0: Any, vit: Event, inf: Event, alarm: Event, cp: dict[str, Any]) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("PRAGMA busy_timeout = 5000")
        self.cur = self.conn.cursor()
        self.cur.execute("INSERT INTO sessions (bed_id, patient_id, care_area, weight_kg, age_years, elderly, comorbid,"
                         " admitted_seq, admitted_at, cumulative_mg, infusion_time_s) "
                         "VALUES (?, 'BENCH-1', 'outpatient-infusion', 70, 45, 0, 0, 1, ?, 0, 0)",
                         (RAW_BED, to_epoch(t0)))
        self.sid = self.cur.lastrowid
        self.cur.execute("INSERT INTO checkpoints (bed_id, seq, time, data) VALUES (?, 0, ?, '{}')", (RAW_BED, to_epoch(t0)))
        self.t0, self.vit, self.inf, self.alarm, self.cp = t0, vit, inf, alarm, cp
        self.seq = 1

    def sample(self, i: int) -> float:
        cur, sid = self.cur, self.sid
        t = to_epoch(self.t0 + timedelta(seconds=i))  # times as the store keeps them on SQLite
        v, p, a = self.vit.data, self.inf.data, self.alarm.data
        start = time.perf_counter()
        cur.execute("BEGIN")
        for ev in (self.inf, self.vit, self.alarm):
            cur.execute(self.EV, (RAW_BED, self.seq, ev.kind.value, t, ev.mono, 1,
                                  json.dumps(ev.data, separators=(",", ":"))))
            self.seq += 1
        seq, vals = self.seq, v["values"]
        cur.execute(self.RD, (RAW_BED, sid, seq - 2, t, "vitals", v.get("device"), v.get("quality"),
                              *(vals.get(k) for k in ("hr", "pulse", "sbp", "dbp", "map", "spo2", "rr", "etco2", "temp")),
                              None, None, None, None, None))
        cur.execute(self.RD, (RAW_BED, sid, seq - 3, t, "pump", p.get("device"), p.get("quality"), *([None] * 9),
                              p.get("state"), p.get("rate_ml_h"), p.get("volume_infused_ml"),
                              p.get("dose_rate_mg_kg_h"), p.get("cumulative_mg")))
        cur.execute(self.AL, (RAW_BED, sid, seq - 1, i + 1, t, a["rule_id"], a["transition"], a["priority"],
                              a.get("kind"), a.get("state"), "system", a.get("message", ""), a.get("value"),
                              a.get("source")))
        cur.execute("UPDATE sessions SET cumulative_mg = ?, infusion_time_s = ? WHERE id = ?",
                    (p.get("cumulative_mg"), p.get("infusion_time_s"), sid))
        cur.execute("UPDATE checkpoints SET seq = ?, time = ?, data = ? WHERE bed_id = ?",
                    (seq - 1, t, json.dumps(self.cp, separators=(",", ":")), RAW_BED))
        cur.execute("COMMIT")
        return time.perf_counter() - start

    def close(self) -> None:
        self.conn.close()


def commit_samples(store: Store, raw: RawReference, first_seq: int, t0: Any, vit: Event, inf: Event, alarm: Event,
                   cp: dict[str, Any], samples: int) -> tuple[list[float], list[float], float, float]:
    """Alternating, one monitord sample then one raw sample, so both see the same file and
    machine: monitord's time runs from handing the first event to the store until its commit
    listener reports the sample's last seq committed."""
    done = threading.Event()
    want = [0]

    def on_commit(last: int) -> None:
        if last >= want[0]:
            done.set()

    store.add_commit_listener(on_commit)
    mon, ref = [], []
    cpu_mon = cpu_ref = 0.0  # process CPU seconds (both threads), summed over the samples
    seq, alarm_seq = first_seq, int(alarm.data["alarm_seq"]) + 1_000_000
    for i in range(samples):
        t = t0 + timedelta(seconds=i)
        evs = [replace(inf, seq=seq, time=t), replace(vit, seq=seq + 1, time=t),
               replace(alarm, seq=seq + 2, time=t, data=dict(alarm.data, alarm_seq=alarm_seq + i))]
        seq += 3
        want[0] = evs[-1].seq
        done.clear()
        cpu, start = time.process_time(), time.perf_counter()
        for ev in evs:
            store.write(ev)
        store.checkpoint(evs[-1].seq, dict(cp, seq=evs[-1].seq))
        assert done.wait(30.0), "commit not reported"
        mon.append(time.perf_counter() - start)
        cpu_mon += time.process_time() - cpu
        cpu = time.process_time()
        ref.append(raw.sample(i))
        cpu_ref += time.process_time() - cpu
    return mon, ref, cpu_mon / samples, cpu_ref / samples


def trend_times(store: Store, path: Path, since: Any, repeats: int) -> tuple[list[float], list[float], int, int]:
    conn = sqlite3.connect(path)
    sql = "SELECT bucket, n, min, mean, max FROM trends WHERE bed_id = ? AND series = ? AND bucket >= ? ORDER BY bucket"
    since_stored = to_epoch(since)
    bed = store.bed_id
    mon, raw = [], []
    n_mon = n_raw = 0
    for _ in range(repeats):
        t = time.perf_counter()
        got = store.trends(TREND_SERIES, since)
        mon.append(time.perf_counter() - t)
        n_mon = sum(len(v) for v in got.values())
        t = time.perf_counter()
        n_raw = sum(len(conn.execute(sql, (bed, s, since_stored)).fetchall()) for s in TREND_SERIES)
        raw.append(time.perf_counter() - t)
    conn.close()
    return mon, raw, n_mon, n_raw


def db_size(path: Path) -> tuple[int, int]:
    """(bytes on disk, database file plus WAL; bytes in pages in use, not on the freelist)."""
    total = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if ".corrupt" not in p.name)
    conn = sqlite3.connect(path)
    page, count, free = (conn.execute(f"PRAGMA {x}").fetchone()[0] for x in ("page_size", "page_count", "freelist_count"))
    conn.close()
    return total, page * (count - free)


async def run(args: argparse.Namespace, tmp: Path) -> bool:
    store_cfg: dict[str, Any] = {"state_dir": str(tmp)}
    if args.retention_h is not None:
        store_cfg["raw_retention_h"] = args.retention_h
    cfg = load_config(overrides={"store": store_cfg})
    clock = FakeClock()
    store = Store.open(cfg, clock)
    store.writer.retention = None  # the fill runs it on the course's time, as the writer does on the clock's
    await store.start()
    vit, inf, alarm, cp = templates()
    path = sqlite_path(cfg)
    print(f"SQLite {sqlite3.sqlite_version}, synchronous=FULL, WAL; batch_max {cfg.store.batch_max}, "
          f"flush {cfg.store.flush_interval_s} s, trend interval {cfg.store.trend_interval_s} s; {path.parent}")

    n = int(args.hours * 3600 * 2)
    t0 = clock.utc_now()
    elapsed, spent, removed = fill(store, synthetic(n, 1, t0, vit, inf), cp)
    print(f"fill: {n} events ({args.hours:g} h of 1 Hz pump + 1 Hz monitor) in {elapsed:.1f} s "
          f"({n / elapsed:.0f} events/s in {cfg.store.batch_max}-event batches; not a bedside figure)")
    print(f"retention every {RETENTION_EVERY_S / 60:g} min of the course at {cfg.store.raw_retention_h:g} h: "
          f"{removed} rows removed, {spent:.1f} s of the fill")
    clock.advance(args.hours * 3600)
    end = t0 + timedelta(hours=args.hours)

    ref = RawReference(path, end, vit, inf, alarm, cp)
    mon, raw, cpu_mon, cpu_raw = commit_samples(store, ref, n + 1, end, vit, inf, alarm, cp, args.samples)
    ref.close()
    ok = True
    print(f"\ncommit path, {args.samples} samples of one bedside second (pump + monitor + alarm + checkpoint):")
    print(f"  {'':34} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"  {'raw sqlite3, same rows':34} {pct(raw, 50) * 1e3:8.2f} {pct(raw, 99) * 1e3:8.2f}")
    print(f"  {'monitord: Store.write -> committed':34} {pct(mon, 50) * 1e3:8.2f} {pct(mon, 99) * 1e3:8.2f}")
    print(f"  CPU per sample: raw {cpu_raw * 1e3:.2f} ms, monitord {cpu_mon * 1e3:.2f} ms (both threads; "
          "for information: the goal is on latency)")
    for q in (50, 99):
        ratio = pct(mon, q) / pct(raw, q)
        good = ratio <= COMMIT_GOAL_RATIO
        ok &= good
        print(f"  p{q} ratio {ratio:.2f}x (goal <= {COMMIT_GOAL_RATIO:g}x): {verdict(good)}")

    since = end - timedelta(hours=4)
    t_mon, t_raw, n_mon, n_raw = trend_times(store, path, since, 50)
    assert n_mon == n_raw, (n_mon, n_raw)
    m50, r50 = statistics.median(t_mon) * 1e3, statistics.median(t_raw) * 1e3
    print(f"\n4-h trend query, {len(TREND_SERIES)} series, {n_mon} points, median of 50:")
    print(f"  raw sqlite3 {r50:.2f} ms; monitord Store.trends {m50:.2f} ms (p99 {pct(t_mon, 99) * 1e3:.2f} ms)")
    good_abs, good_ratio = m50 <= TREND_GOAL_MS, m50 / r50 <= TREND_GOAL_RATIO
    ok &= good_abs and good_ratio
    print(f"  {m50:.2f} ms (goal <= {TREND_GOAL_MS:g} ms): {verdict(good_abs)}; ratio {m50 / r50:.2f}x "
          f"(goal <= {TREND_GOAL_RATIO:g}x): {verdict(good_ratio)}")
    await store.stop()

    total, used = db_size(path)
    raw_events = int(min(args.hours, cfg.store.raw_retention_h) * 3600 * 2)
    good = total / 1e6 <= SIZE_GOAL_MB
    ok &= good
    print(f"\nthe file after the {args.hours:g}-h course, retention at {cfg.store.raw_retention_h:g} h: "
          f"{total / 1e6:.1f} MB on disk (goal <= {SIZE_GOAL_MB:g} MB for 100 h): {verdict(good)}; "
          f"{used / 1e6:.1f} MB in pages in use, about {used / raw_events:.0f} bytes per raw reading kept "
          f"(tables and indexes, trends and the rest included)")
    t = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA quick_check").fetchall()
    conn.close()
    print(f"PRAGMA quick_check (run at every open): {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    total, used = db_size(path)
    print(f"after VACUUM ({time.perf_counter() - t:.1f} s; for information, nothing vacuums a bed's file): "
          f"{total / 1e6:.1f} MB on disk")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=100.0, help="length of the filled course (default 100)")
    ap.add_argument("--samples", type=int, default=1000, help="commit-path samples (default 1000)")
    ap.add_argument("--dir", help="parent of the temporary directory (default: the system's)")
    ap.add_argument("--keep", action="store_true", help="keep the database (its path is printed)")
    ap.add_argument("--retention-h", type=float, help="raw_retention_h (default: the shipped configuration's)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-", dir=args.dir))
    try:
        ok = asyncio.run(run(args, tmp))
    finally:
        if args.keep:
            print(f"database kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\noverall: {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
