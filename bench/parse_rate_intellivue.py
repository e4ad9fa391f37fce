"""How fast the IntelliVue decoder parses poll results, against what the MIB/RS-232 line carries.

    python bench/parse_rate_intellivue.py [--results 100000] [--goal 10]

The MIB/RS232 port runs at 115200 baud, 8N1: 11,520 bytes/s; divided by the framed size of a
typical numerics poll result (the seven numerics monitord uses and the NIBP compound, each with
its time stamp) that is the most results/s the line could carry. The decoder's rate (frames ->
messages -> monitord readings, and alarm lists -> device alarms) is printed beside it, with the
ratio; PASS if the ratio reaches ``--goal`` (default 10: the parser keeps up with a saturated
line ten times over on this machine, with room for a slower bedside box).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitord.drivers import intellivue as iv  # noqa: E402
from monitord.drivers.monitor_intellivue import alarm_entries, alert_codes, numerics_of, readings_of  # noqa: E402
from monitord.readings import DeviceAlarmCode, Vital  # noqa: E402
from monitord.simulators.intellivue_sim import IntelliVueSimulator  # noqa: E402

BAUD = 115200


def typical_results() -> tuple[bytes, bytes]:
    """A framed numerics poll result and a framed alarm poll result (one alarm), as the simulator sends them."""
    values = {Vital.HR: 72.0, Vital.SPO2: 97.0, Vital.PULSE: 71.0, Vital.RR: 14.0, Vital.ETCO2: 38.0,
              Vital.TEMP: 36.8}
    sim = IntelliVueSimulator(lambda t: values, wall=lambda: datetime(2026, 1, 1, 12, 0, 0))
    sim.measure_nibp(120, 80, 93)
    sim.show_alarms({DeviceAlarmCode.APNOEA})
    t = datetime(2026, 1, 1, 12, 0, 0)
    nu = iv.frame(iv.encode_poll_result(1, 1, iv.NOM_MOC_VMO_METRIC_NU, sim.numeric_observations(), abs_time=t))
    al = iv.frame(iv.encode_poll_result(2, 2, iv.NOM_MOC_VMO_AL_MON, sim.alert_observations(), abs_time=t))
    return nu, al


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=4096, help="bytes per read, as from the port")
    ap.add_argument("--goal", type=float, default=10.0, help="required ratio of parse rate to line rate")
    args = ap.parse_args()
    nu, al = typical_results()
    ok = True
    for name, one in (("numerics", nu), ("alarms", al)):
        stream = one * args.results
        dec = iv.MessageDecoder()
        n = 0
        start = time.perf_counter()
        for i in range(0, len(stream), args.chunk):
            for item in dec.feed(stream[i : i + args.chunk]):
                if isinstance(item, iv.PollResult):
                    if item.obj_code == iv.NOM_MOC_VMO_METRIC_NU:
                        readings_of("monitor", numerics_of(item), device_time=None,
                                    to_utc=lambda t: None if t is None else t.replace(tzinfo=UTC))
                    else:
                        alert_codes(alarm_entries(item))
                    n += 1
        secs = time.perf_counter() - start
        line_rate = BAUD / 10 / len(one)
        ratio = n / secs / line_rate
        passed = n == args.results and ratio >= args.goal
        ok &= passed
        print(f"{name:8s} result {len(one)} bytes framed: parsed {n / secs:,.0f} results/s; 115200 8N1 carries "
              f"{line_rate:.1f} results/s; ratio {ratio:,.0f} (goal {args.goal:g}) {'PASS' if passed else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
