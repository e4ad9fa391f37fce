"""How fast the S/5 decoder parses displayed-values frames, against what the line can carry.

    python bench/parse_rate_datex.py [--frames 200000]

The serial line at 19200 baud carries 19200/10 = 1920 bytes/s with 8N1 (19200/11 = 1745 with
the 8E1 real monitors use); divided by the frame size that is the most frames/s a monitor can
send. The decoder's rate (stream decode + conversion to monitord readings) is printed beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitord.drivers import datex_s5 as dx  # noqa: E402
from monitord.drivers.monitor_datex import NibpClock, device_time, readings_of  # noqa: E402

BAUD = 19200


def typical_frame() -> bytes:
    ok = dx.ST_EXISTS | dx.ST_ACTIVE
    dv = dx.DisplayedValues(
        time=1_767_254_400,
        ecg=dx.GroupHeader(ok, 2),
        hr=72.0,
        nibp=dx.GroupHeader(ok, dx.NIBP_AUTO | 3),
        nibp_sys=121.0,
        nibp_dia=79.0,
        nibp_mean=93.0,
        temps=(36.8, None, None, None),
        spo2_group=dx.GroupHeader(ok, 0),
        spo2=97.0,
        spo2_pr=71.0,
        co2=dx.GroupHeader(ok, 1),
        co2_et=5.0,
        co2_rr=12.0,
        amb_press=760.0,
    )
    return dx.encode_frame(dx.encode_displayed(dv))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--chunk", type=int, default=4096, help="bytes per read, as from the port")
    args = ap.parse_args()
    frame = typical_frame()
    stream = frame * args.frames
    dec = dx.StreamDecoder()
    clock = NibpClock()
    n = 0
    start = time.perf_counter()
    for i in range(0, len(stream), args.chunk):
        for item in dec.feed(stream[i : i + args.chunk]):
            if isinstance(item, dx.DisplayedValues):
                report, when = clock.update(item, device_time(item.time))
                readings_of("mon", item, report_nibp=report, nibp_time=when)
                n += 1
    secs = time.perf_counter() - start
    assert n == args.frames and dec.error_count == 0, (n, dec.errors)
    rate = n / secs
    print(f"frame size:            {len(frame)} bytes (displayed values, basic class)")
    for label, bits in (("8N1", 10), ("8E1", 11)):
        line = BAUD / bits / len(frame)
        print(f"line capacity {label}:     {line:.2f} frames/s ({BAUD}/{bits} = {BAUD / bits:.0f} bytes/s)")
    print(f"parsed:                {n:,} frames in {secs:.2f} s = {rate:,.0f} frames/s")
    print(f"headroom over 8N1:     {rate / (BAUD / 10 / len(frame)):,.0f}x")
    print(f"CPU per frame:         {1e6 / rate:.1f} us (one frame every 5 s at the default interval)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
