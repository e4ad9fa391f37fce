"""Fuzz the S/5 stream decoder with random and mutated frames.

    python bench/fuzz_datex.py [--frames 1000000] [--seed 1]

Feeds a mix of intact frames, mutated frames (bit flips, inserted/deleted bytes, truncation,
stray flag and escape bytes), random bytes, and well-framed records with random contents (so
the record parser sees correct checksums over nonsense). Every intact frame must come out
decoded as itself, whatever came before it. Prints the counts; exit status 1 if the decoder
raised or lost an intact frame.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitord.drivers import datex_s5 as dx  # noqa: E402


@dataclass
class FuzzResult:
    frames: int = 0
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


def _sample_frames(rng: random.Random, n: int = 64) -> list[tuple[bytes, dx.Decoded]]:
    out: list[tuple[bytes, dx.Decoded]] = []
    for i in range(n):

        def v(scale: int) -> float | None:
            return None if rng.random() < 0.1 else rng.randint(-32000, 32767) / scale

        dv = dx.DisplayedValues(
            time=rng.getrandbits(32),
            record_time=rng.getrandbits(32) or 1,
            ecg=dx.GroupHeader(rng.getrandbits(32), rng.getrandbits(16)),
            hr=v(1),
            nibp=dx.GroupHeader(rng.getrandbits(32), rng.getrandbits(16)),
            nibp_sys=v(100),
            nibp_dia=v(100),
            nibp_mean=v(100),
            temps=(v(100), None, v(100), None),
            spo2=v(100),
            spo2_pr=v(1),
            co2_et=v(100),
            co2_rr=v(1),
            amb_press=v(10),
            dri_level=dx.DRI_LEVEL_2005,
        )
        out.append((dx.encode_frame(dx.encode_displayed(dv)), dv))
        req = dx.PhdbRequest(dx.PH_DISPL, rng.randint(-1, 200), rng.getrandbits(4), rng.randint(0, 15))
        if i % 4 == 0:
            out.append((dx.encode_frame(dx.encode_phdb_request(req)), req))
    return out


def _random_record(rng: random.Random) -> bytes:
    """A record with a correct r_len and plausible header but random subrecords and body."""
    body_len = rng.choice(
        (0, 9, 100, dx.PHDB_SUBRECORD_SIZE, 2 * dx.PHDB_SUBRECORD_SIZE, rng.randint(0, 1450))
    )
    descs: list[int] = []
    for _ in range(8):
        descs += [rng.randint(-5, body_len + 5), rng.choice((0, 1, 2, 3, 0xFF, rng.randint(0, 255)))]
    maintype = rng.choice((0, 0, 0, 1, 4, rng.randint(-32768, 32767)))
    header = struct.pack("<hBBHIBBHh", dx.HEADER_SIZE + body_len, 0, 9, 0, 0, 0, 0, 0, maintype)
    header += struct.pack("<" + "hB" * 8, *descs)
    if rng.random() < 0.1:  # sometimes a lying length
        header = struct.pack("<h", rng.randint(-32768, 32767)) + header[2:]
    return header + rng.randbytes(body_len)


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    b = bytearray(frame)
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
            b[i:i] = rng.choice((b"\x7e", b"\x7d", b"\x7d\x7e", b"\x7d\x7d", b"\x7e\x7e"))
        elif op == 5 and b:
            j = rng.randrange(len(b))
            b[i:i] = b[j : j + rng.randint(1, 64)]
        else:
            b[min(i, max(len(b) - 1, 0)) : min(i, max(len(b) - 1, 0)) + 1] = bytes((rng.getrandbits(8),))
    return bytes(b)


def run(frames: int, seed: int = 1) -> FuzzResult:
    rng = random.Random(seed)
    samples = _sample_frames(rng)
    dec = dx.StreamDecoder()
    res = FuzzResult()
    start = time.perf_counter()
    for _ in range(frames):
        r = rng.random()
        expect: dx.Decoded | None = None
        if r < 0.15:
            data, expect = rng.choice(samples)
            res.intact += 1
        elif r < 0.60:
            data = _mutate(rng, rng.choice(samples)[0])
        elif r < 0.75:
            data = rng.randbytes(rng.randint(0, 400))
        else:
            data = dx.encode_frame(_random_record(rng))
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
            dec = dx.StreamDecoder()
            continue
        res.frames += 1
        if expect is not None and (not out or out[-1] != expect):
            res.intact_lost += 1
    res.seconds = time.perf_counter() - start
    res.records = dec.records
    res.errors = dec.errors
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    res = run(args.frames, args.seed)
    print(f"frames fed:        {res.frames + res.exceptions:,}")
    print(f"records decoded:   {res.records:,}  (intact frames fed: {res.intact:,}, lost: {res.intact_lost})")
    print(f"errors counted:    {res.error_count:,}  {dict(sorted(res.errors.items()))}")
    print(f"exceptions:        {res.exceptions}")
    print(
        f"time:              {res.seconds:.1f} s  ({(res.frames + res.exceptions) / res.seconds:,.0f} frames/s)"
    )
    if res.first_exception:
        print(res.first_exception)
    return 1 if res.exceptions or res.intact_lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
