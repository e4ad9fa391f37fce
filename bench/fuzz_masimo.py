"""Fuzz the Masimo serial-output line decoder with random and mutated lines.

    python bench/fuzz_masimo.py [--lines 1000000] [--seed 1]

Feeds a mix of intact lines (the three documented layouts, with dashes, odd exception bits),
mutated lines (bit flips, inserted/deleted bytes, truncation, stray CR/LF, repeated fields),
random bytes, and well-formed lines with random field contents (so the field parser sees a valid
time stamp over nonsense). Every intact line must come out decoded as itself, whatever came
before it. Prints the counts; exit status 1 if the decoder raised or lost an intact line.
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitord.drivers import masimo as mx  # noqa: E402


@dataclass
class FuzzResult:
    lines: int = 0
    records: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    exceptions: int = 0
    intact: int = 0
    intact_lost: int = 0
    seconds: float = 0.0
    first_exception: str = ""

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def _sample_lines(rng: random.Random, n: int = 64) -> list[tuple[bytes, mx.Record]]:
    out = []
    t0 = datetime(2026, 1, 1)
    for i in range(n):
        def v(hi: int) -> int | None:
            return None if rng.random() < 0.15 else rng.randint(0, hi)

        model = mx.MODELS[i % len(mx.MODELS)]
        rec = mx.Record(
            time=t0 + timedelta(seconds=rng.randint(0, 10**8)),
            spo2=v(100),
            pulse=v(300),
            pi=None if rng.random() < 0.15 else rng.randint(0, 2000) / 100,
            alarm=rng.getrandbits(8 if model == "radical5" else 16),
            exceptions=rng.getrandbits(12 if model == "radical5" else 24),
            serial=None if model == "radical5" else f"{rng.getrandbits(32):010d}",
        )
        out.append((mx.encode_line(rec, model), rec))
    return out


_NOISE = (b"\r", b"\n", b"\r\n", b"=", b" ", b"%", b"-", b"SPO2=", b"EXC=", b"01/01/26 ", b"\x00", b"\xff")


def _mutate(rng: random.Random, line: bytes) -> bytes:
    b = bytearray(line)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        i = rng.randrange(len(b) + 1) if b else 0
        if op == 0 and b:
            b[min(i, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i:i] = rng.randbytes(rng.randint(1, 8))
        elif op == 2 and b:
            del b[i : i + rng.randint(1, 8)]
        elif op == 3:
            b = b[: rng.randrange(len(b) + 1)]
        elif op == 4:
            b[i:i] = rng.choice(_NOISE)
        elif op == 5 and b:
            j = rng.randrange(len(b))
            b[i:i] = b[j : j + rng.randint(1, 40)]
        else:
            b[min(i, max(len(b) - 1, 0)) : min(i, max(len(b) - 1, 0)) + 1] = bytes((rng.getrandbits(8),))
    return bytes(b)


def _random_fields(rng: random.Random) -> bytes:
    """A valid time stamp followed by random KEY=VALUE fields (required ones often present)."""
    keys = ["SPO2", "BPM", "PI", "ALARM", "EXC", "SN", "PVI", "X" * rng.randint(1, 20), "spo2", "9A"]
    chars = string.digits + "-+.%ABCDEFabcdef "
    parts = [f"{rng.randint(0, 19):02d}/{rng.randint(0, 39):02d}/{rng.randint(0, 99):02d}",
             f"{rng.randint(0, 29):02d}:{rng.randint(0, 69):02d}:{rng.randint(0, 69):02d}"]
    for _ in range(rng.randint(0, 12)):
        value = "".join(rng.choice(chars) for _ in range(rng.randint(0, 12)))
        parts.append(f"{rng.choice(keys)}={value}")
    return (" ".join(parts) + "\r\n").encode("ascii")


def run(lines: int, seed: int = 1) -> FuzzResult:
    rng = random.Random(seed)
    samples = _sample_lines(rng)
    dec = mx.LineDecoder()
    res = FuzzResult()
    start = time.perf_counter()
    for _ in range(lines):
        r = rng.random()
        expect: mx.Record | None = None
        if r < 0.15:
            data, expect = rng.choice(samples)
            res.intact += 1
        elif r < 0.60:
            data = _mutate(rng, rng.choice(samples)[0])
        elif r < 0.75:
            data = rng.randbytes(rng.randint(0, 600))
        else:
            data = _random_fields(rng)
            if r > 0.95:
                data = _mutate(rng, data)
        try:
            if rng.random() < 0.1 and len(data) > 1:
                cut = rng.randrange(1, len(data))
                out = dec.feed(data[:cut]) + dec.feed(data[cut:])
            else:
                out = dec.feed(data)
        except Exception:
            res.exceptions += 1
            if not res.first_exception:
                res.first_exception = traceback.format_exc()
            dec = mx.LineDecoder()
            continue
        res.lines += 1
        if expect is not None and (not out or out[-1] != expect):
            res.intact_lost += 1
    res.seconds = time.perf_counter() - start
    res.records = dec.records
    res.errors = dec.errors
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    res = run(args.lines, args.seed)
    print(f"lines fed:         {res.lines + res.exceptions:,}")
    print(f"records decoded:   {res.records:,}  (intact lines fed: {res.intact:,}, lost: {res.intact_lost})")
    print(f"errors counted:    {res.error_count:,}  {dict(sorted(res.errors.items()))}")
    print(f"exceptions:        {res.exceptions}")
    print(f"time:              {res.seconds:.1f} s  ({(res.lines + res.exceptions) / res.seconds:,.0f} lines/s)")
    if res.first_exception:
        print(res.first_exception)
    return 1 if res.exceptions or res.intact_lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
