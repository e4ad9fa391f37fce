"""Fuzz the pump reply parsers with random and mutated frames.

For each protocol: random byte strings plus valid replies mutated (bit flips, truncation,
insertion, deletion, splicing, duplication). Every frame must either decode or raise
``ProtocolError``; any other exception is a parser bug and is counted (must be 0).

    python bench/fuzz_pumps.py                 # 1,000,000 frames per protocol
    python bench/fuzz_pumps.py -n 200000 --seed 7
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitord.drivers import modbus_pump as mb  # noqa: E402
from monitord.drivers import ne500  # noqa: E402
from monitord.drivers.base import ProtocolError  # noqa: E402
from monitord.drivers.pump_map import decode_block, load_map  # noqa: E402


@dataclass
class Stats:
    protocol: str
    frames: int = 0
    decoded: int = 0
    protocol_errors: int = 0
    exceptions: int = 0
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"{self.protocol:7s} frames={self.frames:,} decoded={self.decoded:,} "
            f"protocol_errors={self.protocol_errors:,} exceptions={self.exceptions} "
            f"frames/s={self.rate:,.0f}"
        )


def mutate(rng: random.Random, frame: bytes, pool: list[bytes]) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(7)
        if op == 0 and data:  # bit flip
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and data:  # truncate
            del data[rng.randrange(len(data)) :]
        elif op == 2:  # insert random bytes
            i = rng.randrange(len(data) + 1)
            data[i:i] = rng.randbytes(rng.randint(1, 4))
        elif op == 3 and data:  # delete a byte
            del data[rng.randrange(len(data))]
        elif op == 4:  # splice with another valid frame
            other = rng.choice(pool)
            data = data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]
        elif op == 5 and data:  # replace a byte with a framing byte
            data[rng.randrange(len(data))] = rng.choice((0x02, 0x03, 0x0D, 0x3F, 0x00, 0xFF))
        else:  # duplicate
            data = data + data
    return bytes(data)


def frames(rng: random.Random, pool: list[bytes], n: int) -> list[bytes]:
    out: list[bytes] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.3:
            out.append(rng.randbytes(rng.randint(0, 64)))
        elif r < 0.9:
            out.append(mutate(rng, rng.choice(pool), pool))
        else:
            out.append(rng.choice(pool))
    return out


def run(stats: Stats, parse: Callable[[bytes], object], corpus: list[bytes]) -> Stats:
    start = time.perf_counter()
    for frame in corpus:
        stats.frames += 1
        try:
            parse(frame)
            stats.decoded += 1
        except ProtocolError:
            stats.protocol_errors += 1
        except Exception as exc:  # the thing being hunted
            stats.exceptions += 1
            if len(stats.examples) < 5:
                stats.examples.append(f"{frame!r}: {exc!r}")
    stats.seconds += time.perf_counter() - start
    return stats


def modbus_pool(rng: random.Random) -> list[bytes]:
    pmap = load_map()
    pool = [mb.encode_read_response(1, [rng.randrange(0x10000) for _ in range(pmap.count)]) for _ in range(64)]
    pool += [mb.encode_exception(1, 3, c) for c in (1, 2, 3, 4)]
    pool += [mb.encode_write_response(1, 32, 1), mb.encode_read_response(1, [0, 1, 2])]
    return pool


def fuzz_modbus(n: int, seed: int = 1, chunk: int = 50_000) -> Stats:
    rng = random.Random(seed)
    pmap = load_map()
    pool = modbus_pool(rng)

    def parse(frame: bytes) -> object:
        return decode_block(pmap, mb.decode_read_response(frame, 1, pmap.count))

    stats = Stats("modbus")
    while stats.frames < n:
        run(stats, parse, frames(rng, pool, min(chunk, n - stats.frames)))
    return stats


def ne500_pool(rng: random.Random) -> list[bytes]:
    datas = ["", "5.000MH", "1.500MM", "250.0UH", "12.00UM", "I1.234W0.000ML", "I250.0W0.000UL", "20.00ML",
             "26.59", "INF", "NE500V3.928"]
    pool = []
    for safe in (False, True):
        for d in datas:
            pool.append(ne500.encode_reply(rng.randrange(100), rng.choice(list(ne500.Prompt)), d, safe=safe))
        for a in ne500.Alarm:
            pool.append(ne500.encode_reply(0, a, safe=safe))
        for e in ne500.CommandError:
            pool.append(ne500.encode_reply(0, ne500.Prompt.STOPPED, error=e, safe=safe))
    return pool


def parse_ne500(frame: bytes, safe: bool) -> object:
    """What the driver does with a burst of bytes: cut frames, decode each, parse its value."""
    found = []
    frames_, _rest = ne500.split_frames(frame, safe=safe)
    for f in frames_:
        try:
            reply = ne500.decode_reply(f, safe=safe)
        except ProtocolError:
            continue
        found.append(reply)
        for parse in (ne500.parse_rate, ne500.parse_dispensed, ne500.parse_volume, ne500.parse_diameter):
            with contextlib.suppress(ProtocolError):
                parse(reply.data)
    if not found:
        raise ProtocolError("no valid reply")
    return found


def fuzz_ne500(n: int, seed: int = 1, chunk: int = 50_000) -> Stats:
    rng = random.Random(seed)
    pool = ne500_pool(rng)
    stats = Stats("ne500")
    while stats.frames < n:
        batch = frames(rng, pool, min(chunk, n - stats.frames))
        half = len(batch) // 2
        run(stats, lambda f: parse_ne500(f, False), batch[:half])
        run(stats, lambda f: parse_ne500(f, True), batch[half:])
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=1_000_000, help="frames per protocol")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    bad = 0
    for fuzz in (fuzz_modbus, fuzz_ne500):
        stats = fuzz(args.n, args.seed)
        print(stats.line(), flush=True)
        for ex in stats.examples:
            print("   ", ex)
        bad += stats.exceptions
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
