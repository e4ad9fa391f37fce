"""Valid pump replies parsed per second, per protocol, beside what the serial line can carry.

A parser only keeps up if it decodes replies faster than the line delivers them. At 8N1 a byte
is 10 bits, so 19200 baud carries 1920 bytes/s.

    python bench/parse_rate_pumps.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitord.drivers import modbus_pump as mb  # noqa: E402
from monitord.drivers import ne500  # noqa: E402
from monitord.drivers.pump_map import decode_block, load_map  # noqa: E402

BAUDS = (9600, 19200)
BITS_PER_BYTE = 10  # 8N1: start + 8 data + stop


def rate(parse: Callable[[bytes], object], frames: list[bytes], seconds: float) -> float:
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for f in frames:
            parse(f)
        n += len(frames)
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    rng = random.Random(1)
    pmap = load_map()
    modbus = [mb.encode_read_response(1, [rng.randrange(0x10000) for _ in range(pmap.count)]) for _ in range(100)]
    ne = [
        ne500.encode_reply(0, ne500.Prompt.INFUSING, d)
        for d in ("I12.34W0.000ML", "5.000MH", "20.00ML", "26.59")
    ]

    def parse_ne(f: bytes) -> object:
        return ne500.decode_reply(f)

    rows = [
        ("modbus", rate(lambda f: decode_block(pmap, mb.decode_read_response(f, 1, pmap.count)), modbus, args.seconds),
         len(modbus[0])),
        ("ne500", rate(parse_ne, ne, args.seconds), sum(map(len, ne)) / len(ne)),
    ]
    for name, per_s, size in rows:
        line = ", ".join(
            f"{baud} baud: {baud / BITS_PER_BYTE / size:,.0f} frames/s (parser {per_s / (baud / BITS_PER_BYTE / size):,.0f}x)"
            for baud in BAUDS
        )
        print(f"{name:7s} {per_s:,.0f} frames/s parsed ({size:.0f}-byte reply); line at {line}")


if __name__ == "__main__":
    main()
