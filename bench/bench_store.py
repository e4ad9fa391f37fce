"""Store benchmark: sustained write rate through the writer thread, trend-query time for the last
4 h of a synthetic 100-hour course (1 Hz pump + 1 Hz monitor), database size, and how much a
retention pass frees.

    python bench/bench_store.py [--hours 100] [--url postgresql+psycopg://...] [--keep DIR]

Events are shaped exactly as the engine emits them (templates taken from a real Engine run on a
FakeClock) and go through ``Store.write``/``Store.checkpoint`` like the daemon's.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
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

VITALS = (r.Vital.HR, r.Vital.PULSE, r.Vital.SPO2, r.Vital.RR, r.Vital.ETCO2, r.Vital.SBP, r.Vital.DBP, r.Vital.MAP)


def templates() -> tuple[Event, Event, dict[str, Any]]:
    """One vitals event, one infusion event and a checkpoint, from a real engine."""
    cfg = load_config()
    clock = FakeClock()
    eng = Engine(cfg, clock)
    seen: list[Event] = []
    eng.subscribe(seen.append)
    eng.submit(r.Admit("BENCH-1", 70, 45, "rn1"))
    eng.submit(r.SetOrder("ketamine", 1.0, 35.0, "rn1", syringe_ml=50.0))
    eng.submit(r.PumpReading("pump", r.PumpState.RUNNING, 35.0, 0.0, 20.0, 50.0, "ketamine", 1.0))
    eng.submit(r.VitalsReading("monitor", {v: 80.0 for v in VITALS}, nibp_time=clock.utc_now()))
    eng.submit(r.StartInfusion("rn1"))
    clock.advance(1)
    eng.submit(r.PumpReading("pump", r.PumpState.RUNNING, 35.0, 0.01, 20.0, 50.0, "ketamine", 1.0))
    vit = next(e for e in seen if e.kind is EventKind.VITALS)
    inf = [e for e in seen if e.kind is EventKind.INFUSION][-1]
    return vit, inf, eng.checkpoint()


def synthetic(n: int, start_seq: int, clock: FakeClock) -> list[Event]:
    """``n`` events alternating pump and monitor readings, one of each per second."""
    vit, inf, _ = templates()
    t0 = clock.utc_now()
    out = []
    for i in range(n):
        seq = start_seq + i
        t = t0 + timedelta(seconds=i // 2)
        if i % 2 == 0:
            data = dict(inf.data, volume_infused_ml=round(i / 2 * 35 / 3600, 4), cumulative_mg=round(i / 2 * 35 / 3600, 4))
            out.append(replace(inf, seq=seq, time=t, mono=1000.0 + i / 2, data=data))
        else:
            values = {k: 70.0 + (i % 13) for k in vit.data["values"]}
            out.append(replace(vit, seq=seq, time=t, mono=1000.0 + i / 2, data=dict(vit.data, values=values)))
    return out


async def write_all(store: Store, events: list[Event], cp: dict[str, Any]) -> float:
    t = time.perf_counter()
    for i, ev in enumerate(events):
        store.write(ev)
        if i % 2:
            store.checkpoint(ev.seq, dict(cp, seq=ev.seq))
        if i % 10000 == 0:
            # Stay under the writer's memory bound, as a real bed (2 events/s) always does.
            store.wait_committed(ev.seq - 20000, 3600.0)
    assert store.wait_committed(events[-1].seq, 3600.0)
    return time.perf_counter() - t


def db_size(path: Path) -> tuple[int, int]:
    """(file bytes incl. WAL, bytes in use: pages not on the freelist)."""
    total = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if ".corrupt" not in p.name)
    conn = sqlite3.connect(path)
    page, count, free = (conn.execute(f"PRAGMA {x}").fetchone()[0] for x in ("page_size", "page_count", "freelist_count"))
    conn.close()
    return total, page * (count - free)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=100.0)
    ap.add_argument("--url", help="PostgreSQL URL (default: SQLite file in a temp dir)")
    ap.add_argument("--keep", help="directory to keep the database in")
    args = ap.parse_args()
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="bench-store-"))
    store_cfg: dict[str, Any] = {"state_dir": str(tmp)}
    if args.url:
        store_cfg["url"] = args.url
    cfg = load_config(overrides={"store": store_cfg})
    clock = FakeClock()
    store = Store.open(cfg, clock)
    await store.start()
    _, _, cp = templates()
    backend = store.db.dialect.name
    print(f"backend {backend}, batch_max {cfg.store.batch_max}, flush {cfg.store.flush_interval_s} s, "
          f"trend interval {cfg.store.trend_interval_s} s")

    n = int(args.hours * 3600 * 2)
    events = synthetic(n, 1, clock)
    clock.advance(args.hours * 3600)  # "now" is the end of the course (retention sees nothing old)
    elapsed = await write_all(store, events, cp)
    print(f"wrote {n} events ({args.hours:g} h of 1 Hz pump + 1 Hz monitor) in {elapsed:.1f} s: "
          f"{n / elapsed:.0f} events/s sustained")

    since = clock.utc_now() - timedelta(hours=4)
    series = ["hr", "spo2", "rr", "etco2", "sbp", "rate_ml_h", "dose_rate_mg_kg_h"]
    t = time.perf_counter()
    points = sum(len(store.trend(s, since)) for s in series)
    print(f"trend query, last 4 h of {len(series)} series: {points} points in {(time.perf_counter() - t) * 1000:.1f} ms")

    if backend == "sqlite":
        path = sqlite_path(cfg)
        total, used = db_size(path)
        print(f"database: {total / 1e6:.1f} MB on disk, {used / 1e6:.1f} MB in use "
              f"({used / n:.0f} bytes per reading event, both tables and indexes)")
        t = time.perf_counter()
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA quick_check").fetchall()
        conn.close()
        print(f"PRAGMA quick_check at open: {time.perf_counter() - t:.1f} s")
        keep_h = 24.0
        store.retention.keep = timedelta(hours=keep_h)
        t = time.perf_counter()
        removed = store.retention.run(clock.utc_now())
        total, used = db_size(path)
        print(f"retention at {keep_h:g} h: removed {removed} rows in {time.perf_counter() - t:.1f} s; "
              f"{used / 1e6:.1f} MB in use (the file keeps its {total / 1e6:.1f} MB high-water mark and reuses it)")
    await store.stop()
    print(f"database kept in {tmp}" if args.keep else f"(temp dir {tmp})")


if __name__ == "__main__":
    asyncio.run(main())
