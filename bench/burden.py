"""Alarm-burden benchmark: the generated course corpus over 20 seeds (every course kind for every
seed: normal courses and each planted event), the burden report and the goals, and how long the
corpus took to play.

    python bench/burden.py [--seeds 20] [--jobs N] [--events]

Exit status 1 when a goal fails (as ``monitord scenario --burden``).
"""

from __future__ import annotations

import argparse
import sys
import time

from monitord.burden import report, run_corpus
from monitord.courses import KINDS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="seeds per course kind (default 20)")
    ap.add_argument("--jobs", type=int, default=None, help="processes (default: one per CPU)")
    ap.add_argument("--events", action="store_true", help="print every audible alarm of every course")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    results = run_corpus(args.seeds, jobs=args.jobs)
    took = time.perf_counter() - t0
    print(f"Alarm burden: {args.seeds} seeds x {len(KINDS)} course kinds = {len(results)} courses\n")
    ok = report(results, sys.stdout, events=args.events)
    hours = sum(r.duration_s for r in results) / 3600
    print(f"\nplayed {hours:.0f} h of courses in {took:.0f} s ({took / len(results):.2f} s per course)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
