"""Fuzz the IntelliVue Data Export decoder (frames and messages) with random and mutated frames.

    python bench/fuzz_intellivue.py [--frames 1000000] [--seed 1]

Feeds a mix of intact frames (every message kind the driver and the simulator exchange: the
association messages, the MDS create event and result, poll requests, numerics and alarm poll
results, linked results, errors), frames whose message bytes are mutated but whose FCS is
recomputed (so the message parser, not the FCS, meets the damage), raw mutations of whole
frames, and random bytes. The driver's own conversion (numerics -> readings, alarm lists ->
device alarms) runs on every poll result that decodes. Every intact frame must come out decoded
as itself, whatever came before it. Prints the counts; exit status 1 if anything raised or an
intact frame was lost.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitord.drivers import intellivue as iv  # noqa: E402
from monitord.drivers import intellivue_frame as ivf  # noqa: E402
from monitord.drivers.monitor_intellivue import alarm_entries, alert_codes, numerics_of, readings_of  # noqa: E402

BAUD = 115200


@dataclass
class FuzzResult:
    frames: int = 0
    messages: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    exceptions: int = 0
    intact: int = 0
    intact_lost: int = 0
    results_converted: int = 0
    seconds: float = 0.0
    first_exception: str = ""

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


_PHYSIO = (iv.NOM_ECG_CARD_BEAT_RATE, iv.NOM_PULS_OXIM_SAT_O2, iv.NOM_PLETH_PULS_RATE, iv.NOM_AWAY_RESP_RATE,
           iv.NOM_RESP_RATE, iv.NOM_AWAY_CO2_ET, iv.NOM_TEMP, 0x1234)
_UNITS = (iv.NOM_DIM_BEAT_PER_MIN, iv.NOM_DIM_PERCENT, iv.NOM_DIM_MMHG, iv.NOM_DIM_KILO_PASCAL, iv.NOM_DIM_DEGC,
          iv.NOM_DIM_FAHR, iv.NOM_DIM_RESP_PER_MIN, 0x0000)


def _numerics(rng: random.Random) -> list[iv.Observation]:
    t = datetime(2026, 1, 1) + timedelta(seconds=rng.randint(0, 10**8))
    out = []
    for h in range(rng.randint(0, 8)):
        value = rng.choice([rng.uniform(-1000, 1000), rng.randint(0, 300), math.nan, math.inf, 0.0])
        attrs = {iv.NOM_ATTR_NU_VAL_OBS: iv.encode_nu_obs(rng.choice(_PHYSIO), value, rng.choice(_UNITS),
                                                            rng.getrandbits(16))}
        if rng.random() < 0.7:
            attrs[iv.NOM_ATTR_TIME_STAMP_ABS] = iv.encode_abs_time(t)
        out.append(iv.Observation(rng.randint(0, 2), h, attrs))
    if rng.random() < 0.6:
        parts = [(p, rng.uniform(0, 300), rng.choice(_UNITS), rng.getrandbits(16))
                 for p in (iv.NOM_PRESS_BLD_NONINV_SYS, iv.NOM_PRESS_BLD_NONINV_DIA, iv.NOM_PRESS_BLD_NONINV_MEAN)]
        attrs = {iv.NOM_ATTR_NU_CMPD_VAL_OBS: iv.encode_nu_cmpd(parts)}
        if rng.random() < 0.8:
            attrs[iv.NOM_ATTR_TIME_STAMP_ABS] = iv.encode_abs_time(t)
        out.append(iv.Observation(0, 0x104, attrs))
    return out


def _alerts(rng: random.Random) -> list[iv.Observation]:
    codes = (iv.NOM_EVT_APNEA, iv.NOM_EVT_LEAD_DISCONN, iv.NOM_EVT_LEADS_OFF, iv.NOM_EVT_SENSOR_DISCONN,
             iv.NOM_EVT_TUBE_OCCL, rng.getrandbits(16))
    entries = [iv.AlarmEntry(rng.choice(_PHYSIO), rng.choice(codes), rng.choice((1, 2, 4, 256, 512, 1024)),
                             rng.getrandbits(16), rng.choice(("", "APNEA", "LEADS OFF", "x" * rng.randint(0, 30))))
               for _ in range(rng.randint(0, 5))]
    return [iv.Observation(0, 1, {iv.NOM_ATTR_AL_MON_P_AL_LIST: iv.encode_alarm_list(entries[:2]),
                                  iv.NOM_ATTR_AL_MON_T_AL_LIST: iv.encode_alarm_list(entries[2:])})]


def sample_messages(rng: random.Random, n: int = 96) -> list[bytes]:
    """Message bytes of every kind, with random contents."""
    out = [iv.encode_assoc_request(), iv.encode_assoc_response(iv.UserInfo(system_type=iv.SYST_SERVER)),
           iv.encode_refuse(), iv.encode_release_request(), iv.encode_release_response(), iv.encode_abort()]
    for i in range(n):
        inv = rng.getrandbits(16)
        kind = i % 6
        if kind == 0:
            out.append(iv.encode_mds_create_event(inv, rng.getrandbits(32), [
                (iv.NOM_ATTR_TIME_ABS, iv.encode_abs_time(datetime(2026, 1, 1) + timedelta(seconds=rng.randint(0, 10**8)))),
                (iv.NOM_ATTR_TIME_REL, rng.randbytes(4))]))
        elif kind == 1:
            out.append(iv.encode_mds_create_result(inv))
        elif kind == 2:
            out.append(iv.encode_poll_request(inv, rng.getrandbits(16), rng.choice((6, 54, 33)),
                                              extended=rng.random() < 0.8))
        elif kind in (3, 4):
            obs = _numerics(rng) if kind == 3 else _alerts(rng)
            linked = (rng.randint(1, 3), rng.randint(1, 9)) if rng.random() < 0.2 else None
            out.append(iv.encode_poll_result(inv, rng.getrandbits(16), 6 if kind == 3 else 54, obs,
                                             rel_time=rng.getrandbits(32), abs_time=datetime(2026, 3, 4, 5, 6, 7),
                                             extended=rng.random() < 0.8, linked=linked))
        else:
            out.append(iv.encode_error(inv, rng.getrandbits(16)))
    return out


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        i = rng.randrange(len(b) + 1) if b else 0
        if op == 0 and b:
            b[min(i, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i:i] = rng.randbytes(rng.randint(1, 8))
        elif op == 2 and b:
            del b[i : i + rng.randint(1, 8)]
        elif op == 3:
            b = b[: rng.randrange(len(b) + 1)]
        elif b:
            j = rng.randrange(len(b))
            b[i:i] = b[j : j + rng.randint(1, 40)]
    return bytes(b)


def _convert(item: object) -> bool:
    """What the driver does with a poll result."""
    if not isinstance(item, iv.PollResult):
        return False
    try:
        if item.obj_code == iv.NOM_MOC_VMO_METRIC_NU:
            readings_of("monitor", numerics_of(item), device_time=None,
                        to_utc=lambda t: None if t is None else t.replace(tzinfo=UTC))
        else:
            alert_codes(alarm_entries(item))
    except iv.MessageError:
        pass  # counted as a protocol error by the driver
    return True


def run(frames: int, seed: int = 1) -> FuzzResult:
    rng = random.Random(seed)
    samples = [(iv.frame(m), m) for m in sample_messages(rng)]
    expected = {m: iv.decode_message(m) for _, m in samples}
    dec = iv.MessageDecoder()
    res = FuzzResult()
    start = time.perf_counter()
    for _ in range(frames):
        r = rng.random()
        expect = None
        if r < 0.2:
            data, msg = rng.choice(samples)
            expect = expected[msg]
            res.intact += 1
        elif r < 0.6:  # damaged message, valid frame: the message parser meets it
            data = ivf.encode_frame(_mutate(rng, rng.choice(samples)[1]))
        elif r < 0.85:
            data = _mutate(rng, rng.choice(samples)[0])
        else:
            data = rng.randbytes(rng.randint(0, 300))
        try:
            if rng.random() < 0.1 and len(data) > 1:
                cut = rng.randrange(1, len(data))
                out = dec.feed(data[:cut]) + dec.feed(data[cut:])
            else:
                out = dec.feed(data)
            for item in out:
                if _convert(item):
                    res.results_converted += 1
        except Exception:
            res.exceptions += 1
            if not res.first_exception:
                res.first_exception = traceback.format_exc()
            dec = iv.MessageDecoder()
            continue
        res.frames += 1
        if expect is not None and (not out or out[-1] != expect):
            res.intact_lost += 1
    res.seconds = time.perf_counter() - start
    res.messages = dec.messages
    res.errors = dec.errors
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--goal", type=float, default=10.0, help="required ratio of frames/s to the line's frames/s")
    args = ap.parse_args()
    res = run(args.frames, args.seed)
    samples = sample_messages(random.Random(args.seed))
    mean_frame = sum(len(iv.frame(m)) for m in samples) / len(samples)
    line_rate = BAUD / 10 / mean_frame
    rate = (res.frames + res.exceptions) / res.seconds
    print(f"frames fed:        {res.frames + res.exceptions:,}")
    print(f"messages decoded:  {res.messages:,}  (intact frames fed: {res.intact:,}, lost: {res.intact_lost})")
    print(f"results converted: {res.results_converted:,}")
    print(f"errors counted:    {res.error_count:,}  {dict(sorted(res.errors.items()))}")
    print(f"exceptions:        {res.exceptions}")
    print(f"time:              {res.seconds:.1f} s  ({rate:,.0f} frames/s)")
    print(f"line rate:         {line_rate:,.1f} frames/s of {mean_frame:.0f} bytes at 115200 8N1; "
          f"ratio {rate / line_rate:,.0f} (goal {args.goal:g})")
    ok = not res.exceptions and not res.intact_lost and rate / line_rate >= args.goal
    print("PASS" if ok else "FAIL")
    if res.first_exception:
        print(res.first_exception)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
