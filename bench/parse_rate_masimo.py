"""How fast the Masimo line decoder parses serial-output lines, against what the line can carry.

    python bench/parse_rate_masimo.py [--lines 200000]

The oximeter's port runs at 9600 baud, 8N1: 960 bytes/s; divided by the line length that is
the most lines/s it could send (it sends one a second). The decoder's rate (stream decode +
conversion to monitord readings and device alarms) is printed beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitord.drivers import masimo as mx  # noqa: E402
from monitord.drivers.oximeter_masimo import alarms_of, reading_of  # noqa: E402

BAUD = 9600


def typical_line(model: str = "rad8") -> bytes:
    rec = mx.Record(datetime(2026, 1, 1, 12, 0, 0), 97, 72, 3.6, 0, mx.EXC_SET, "0000056661")
    return mx.encode_line(rec, model)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--chunk", type=int, default=4096, help="bytes per read, as from the port")
    args = ap.parse_args()
    for model in mx.MODELS:
        line = typical_line(model)
        stream = line * args.lines
        dec = mx.LineDecoder()
        n = 0
        start = time.perf_counter()
        for i in range(0, len(stream), args.chunk):
            for item in dec.feed(stream[i : i + args.chunk]):
                if isinstance(item, mx.Record):
                    reading_of("oximeter", item)
                    alarms_of(item)
                    n += 1
        secs = time.perf_counter() - start
        line_rate = BAUD / 10 / len(line)
        print(f"{model:9s} line {len(line)} bytes: parsed {n / secs:,.0f} lines/s; 9600 8N1 carries "
              f"{line_rate:.1f} lines/s (ratio {n / secs / line_rate:,.0f}); the oximeter sends 1/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
