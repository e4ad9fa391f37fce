"""One page for one session: dose, vital signs, alarms and the nurse's observations on one time
axis, as SVG or PNG (matplotlib, without pyplot: no global state, no display needed).

Four panels share the time axis: the dose (rate in mg/kg/h and the cumulative mg), circulation
(HR, pulse, NIBP as a bar from diastolic to systolic with the mean marked), breathing (SpO2, RR,
EtCO2) and one lane per alarm rule (a bar while the alarm was active, hatched while latched, in
its priority's colour) with the pain and sedation scores beneath. The start, stop and discharge
are drawn across every panel. Raw readings are pruned after ``[store] raw_retention_h``; where a
series has none, its minute trend (mean) is drawn instead, and the page says so. The CSV or JSON
export remains the record: the picture is for reading a session at a glance.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any
from zoneinfo import ZoneInfo

import matplotlib
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from monitord import __version__

PAGE_IN = (11.69, 8.27)  # A4 landscape
# IEC 60601-1-8 colours (alarm-defaults.md s1): high red, medium yellow, low cyan; advisory grey.
PRIORITY_COLOUR = {"high": "#d62728", "medium": "#e6b400", "low": "#17becf", "advisory": "#9e9e9e"}
PRIORITY_RANK = {"advisory": 0, "low": 1, "medium": 2, "high": 3}
MIN_BAR_DAYS = 20 / 86400  # 20 s: the narrowest alarm bar drawn
MAX_LANES = 16  # alarm rules with a lane of their own; the rest share one
VITALS = ("hr", "pulse", "sbp", "dbp", "map", "spo2", "rr", "etco2")
DOSE = ("dose_rate_mg_kg_h", "cumulative_mg")
ENDS = {"cleared", "reset"}
# A trend bucket this far before a series' first raw value fills the gap left by pruned readings
# (a bucket that merely starts before the first raw value of the same minute does not).
TREND_GAP = timedelta(minutes=2)


@dataclass
class Series:
    times: list[datetime] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    from_trend: bool = False

    def add(self, t: datetime, v: float) -> None:
        self.times.append(t)
        self.values.append(v)


@dataclass
class AlarmBar:
    """A stretch of one alarm at one priority: active, or latched (condition gone, not yet reset)."""

    rule_id: str
    start: datetime
    end: datetime
    priority: str
    latched: bool = False


def series_of(readings: Iterable[dict[str, Any]], trends: Iterable[dict[str, Any]]) -> dict[str, Series]:
    """Each vital and dose series from the raw readings; the minute trend fills what came before
    the first raw value (or everything, once the raw readings are pruned)."""
    out: dict[str, Series] = defaultdict(Series)
    for r in readings:
        for name in (*VITALS, *DOSE):
            v = r.get(name)
            if v is not None:
                out[name].add(r["time"], float(v))
    by_series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in trends:
        if t["series"] in (*VITALS, *DOSE):
            by_series[t["series"]].append(t)
    for name, rows in by_series.items():
        first = out[name].times[0] if out[name].times else None
        before = [r for r in rows if first is None or r["bucket"] < first - TREND_GAP]
        if before:
            s = out[name]
            s.times[:0] = [r["bucket"] for r in before]
            s.values[:0] = [float(r["mean"]) for r in before]
            s.from_trend = True
    return dict(out)


def alarm_bars(events: Iterable[dict[str, Any]], end: datetime) -> list[AlarmBar]:
    """The alarm events as bars: a rule's alarm runs from raised to cleared or reset (else ``end``),
    split where it escalated or latched."""
    bars: list[AlarmBar] = []
    open_: dict[str, AlarmBar] = {}
    for e in sorted(events, key=lambda e: e["seq"]):
        rule, t, transition = e["rule_id"], e["time"], e["transition"]
        bar = open_.get(rule)
        if transition in ENDS:
            if bar is not None:
                bar.end = t
                del open_[rule]
            continue
        changed = bar is None or transition in ("escalated", "latched", "reactivated") or e["priority"] != bar.priority
        if not changed:
            continue
        if bar is not None:
            bar.end = t
        latched = transition == "latched" or (bar is not None and bar.latched and transition != "reactivated")
        open_[rule] = AlarmBar(rule, t, end, e["priority"], latched)
        bars.append(open_[rule])
    return sorted(bars, key=lambda b: b.start)


def render(data: dict[str, Any], trends: list[dict[str, Any]], fmt: str, out: IO[bytes], timezone: str = "UTC",
           now: datetime | None = None) -> None:
    """Draw the session page and write it to ``out`` as ``fmt`` (svg or png)."""
    tz = ZoneInfo(timezone)
    session = data["session"]
    series = series_of(data["readings"], trends)
    times = [t for s in series.values() for t in s.times] + [e["time"] for e in data["alarm_events"]] + \
        [n["time"] for n in data["notes"]] + [t for t in (session.get("admitted_at"), session.get("discharged_at")) if t]
    start = min(times) if times else session["admitted_at"]
    end = max(times) if times else start
    if end <= start:
        end = start + timedelta(minutes=1)
    bars = alarm_bars(data["alarm_events"], end)

    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 8, "axes.titlesize": 9,
                                "axes.titleweight": "bold", "axes.titlelocation": "left", "figure.dpi": 100}):
        fig = Figure(figsize=PAGE_IN, layout="constrained")
        lanes = _lanes(bars)
        heights = [2.0, 2.4, 2.4, 0.9 + 0.22 * max(1, len(lanes))]
        dose_ax, circ_ax, breath_ax, alarm_ax = fig.subplots(4, 1, sharex=True, height_ratios=heights)
        _dose(dose_ax, series)
        _circulation(circ_ax, series)
        _breathing(breath_ax, series)
        _alarms(alarm_ax, lanes, data["notes"])
        alarm_ax.set_xlim(mdates.date2num(start), mdates.date2num(end))
        for ax in (dose_ax, circ_ax, breath_ax, alarm_ax):
            _session_marks(ax, session, label=ax is dose_ax, tz=tz, span=(start, end))
            ax.grid(True, axis="x", color="#dddddd", linewidth=0.5)
        locator = mdates.AutoDateLocator(tz=tz, minticks=6, maxticks=14)
        alarm_ax.xaxis.set_major_locator(locator)
        alarm_ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
        alarm_ax.set_xlabel(f"time ({timezone}), {start.astimezone(tz):%Y-%m-%d}")
        fig.suptitle(_title(session, tz), x=0.01, ha="left", fontsize=11, fontweight="bold")
        trend_note = sorted(n for n, s in series.items() if s.from_trend)
        made = (now or datetime.now(UTC)).astimezone(tz)
        fig.supxlabel(f"monitord {__version__}, exported {made:%Y-%m-%d %H:%M} {timezone}. "
                      + (f"Minute trends (mean) where raw readings were pruned: {', '.join(trend_note)}. "
                         if trend_note else "")
                      + "Not a certified medical device; the CSV/JSON export is the record.",
                      x=0.01, ha="left", fontsize=6.5, color="#555555")
        fig.savefig(out, format=fmt, metadata=_metadata(fmt, session))


def _title(session: dict[str, Any], tz: ZoneInfo) -> str:
    def at(key: str) -> str:
        t = session.get(key)
        return f"{t.astimezone(tz):%H:%M}" if t else "-"

    hours = float(session.get("infusion_time_s") or 0) / 3600
    return (f"Session {session['id']}, bed {session['bed_id']}, patient {session['patient_id']} "
            f"({session.get('weight_kg'):g} kg, {session.get('care_area')}): infusion {at('started_at')}-{at('stopped_at')}, "
            f"{hours:.1f} h, {float(session.get('cumulative_mg') or 0):.1f} mg ketamine in all")


def _metadata(fmt: str, session: dict[str, Any]) -> dict[str, str]:
    title = f"monitord session {session['id']}, bed {session['bed_id']}"
    return {"Title": title, "Creator": f"monitord {__version__}"} if fmt in ("svg", "png") else {}


def _x(times: list[datetime]) -> Any:
    """Times as matplotlib date numbers (what the axes take)."""
    return mdates.date2num(times)


def _plot(ax: Axes, s: Series | None, label: str, **kw: Any) -> None:
    if s is None or not s.times:
        return
    ax.plot(_x(s.times), s.values, label=label + (" (trend)" if s.from_trend else ""), linewidth=kw.pop("lw", 1.0), **kw)


def _dose(ax: Axes, series: dict[str, Series]) -> None:
    ax.set_title("Dose")
    rate = series.get("dose_rate_mg_kg_h")
    if rate and rate.times:
        ax.step(_x(rate.times), rate.values, where="post", color="#1f77b4", linewidth=1.4, label="dose rate")
    ax.set_ylabel("mg/kg/h")
    ax.set_ylim(bottom=0, top=max([*(rate.values if rate else []), 0.5]) * 1.25)
    total = series.get("cumulative_mg")
    twin = ax.twinx()
    if total and total.times:
        twin.plot(_x(total.times), total.values, color="#555555", linestyle="--", linewidth=1.0, label="cumulative")
    twin.set_ylabel("cumulative mg")
    twin.set_ylim(bottom=0, top=max([*(total.values if total else []), 1.0]) * 1.15)
    _legend(ax, twin)


def _circulation(ax: Axes, series: dict[str, Series]) -> None:
    ax.set_title("Circulation")
    _plot(ax, series.get("hr"), "HR /min", color="#d62728", lw=1.1)
    _plot(ax, series.get("pulse"), "pulse /min", color="#ff9896", lw=0.8)
    sbp, dbp, mean = series.get("sbp"), series.get("dbp"), series.get("map")
    if sbp and dbp and sbp.times:
        pairs = dict(zip(dbp.times, dbp.values, strict=False))
        xs = [t for t in sbp.times if t in pairs]
        if xs:
            ax.vlines(_x(xs), [pairs[t] for t in xs], [v for t, v in zip(sbp.times, sbp.values, strict=False) if t in pairs],
                      color="#2ca02c", linewidth=2.2, label="NIBP sys-dia mmHg")
    if mean and mean.times:
        ax.plot(_x(mean.times), mean.values, linestyle="none", marker="_", markersize=7, color="#0b4f0b", label="MAP")
    ax.set_ylabel("/min, mmHg")
    _legend(ax)


def _breathing(ax: Axes, series: dict[str, Series]) -> None:
    ax.set_title("Breathing")
    _plot(ax, series.get("spo2"), "SpO2 %", color="#1f77b4", lw=1.2)
    ax.set_ylabel("SpO2 %")
    spo2 = series.get("spo2")
    low = min(spo2.values) if spo2 and spo2.values else 90.0
    ax.set_ylim(min(85.0, low - 2), 100.5)
    twin = ax.twinx()
    _plot(twin, series.get("rr"), "RR /min", color="#9467bd", lw=0.9)
    _plot(twin, series.get("etco2"), "EtCO2 mmHg", color="#8c564b", lw=0.9)
    twin.set_ylabel("/min, mmHg")
    resp = [v for name in ("rr", "etco2") for v in (series[name].values if name in series else [])]
    twin.set_ylim(bottom=0, top=max([*resp, 20.0]) * 1.3)
    _legend(ax, twin)


def _lanes(bars: list[AlarmBar]) -> list[tuple[str, list[AlarmBar]]]:
    by_rule: dict[str, list[AlarmBar]] = {}
    for b in bars:
        by_rule.setdefault(b.rule_id, []).append(b)
    lanes = list(by_rule.items())
    if len(lanes) > MAX_LANES:
        keep = sorted(lanes, key=lambda kv: -max(PRIORITY_RANK.get(b.priority, 0) for b in kv[1]))[:MAX_LANES - 1]
        kept = {rule for rule, _ in keep}
        rest = [b for rule, bs in lanes if rule not in kept for b in bs]
        lanes = [kv for kv in lanes if kv[0] in kept] + [(f"{len(lanes) - len(keep)} other rules", rest)]
    return lanes


def _alarms(ax: Axes, lanes: list[tuple[str, list[AlarmBar]]], notes: list[dict[str, Any]]) -> None:
    ax.set_title("Alarms and observations")
    labels = []
    for i, (rule, bars) in enumerate(lanes):
        y = len(lanes) - i
        labels.append((y, rule))
        for b in bars:
            colour = PRIORITY_COLOUR.get(b.priority, "#9e9e9e")
            x0 = mdates.date2num(b.start)
            width = max(mdates.date2num(b.end) - x0, MIN_BAR_DAYS)  # a blip stays visible
            if b.latched:
                ax.broken_barh([(x0, width)], (y - 0.35, 0.7), facecolors="white", edgecolor=colour, hatch="////",
                               linewidth=0.6)
            else:
                ax.broken_barh([(x0, width)], (y - 0.35, 0.7), facecolors=colour, edgecolor="#333333", linewidth=0.3)
    scores = [n for n in notes if n["note_type"] in ("pain", "sedation") and "score" in n["detail"]]
    for n in scores:
        d = n["detail"]
        text = f"P{d['score']}" if n["note_type"] == "pain" else f"{d.get('scale') or 'sed'} {d['score']}"
        ax.annotate(text, (mdates.date2num(n["time"]), 0.0), fontsize=6.5, ha="center", va="center", color="#333333",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "#f2f2f2", "ec": "#bbbbbb", "lw": 0.4})
    labels.append((0, "pain / sedation"))
    ax.set_yticks([y for y, _ in labels], [label for _, label in labels], fontsize=7)
    ax.set_ylim(-0.7, len(lanes) + 0.7)
    present = sorted({b.priority for _, bars in lanes for b in bars}, key=lambda p: -PRIORITY_RANK.get(p, 0))
    handles = [Patch(facecolor=PRIORITY_COLOUR.get(p, "#9e9e9e"), label=p) for p in present]
    if any(b.latched for _, bars in lanes for b in bars):
        handles.append(Patch(facecolor="white", edgecolor="#333333", hatch="////", label="latched"))
    if handles:  # above the panel, right of its title: never over a bar
        ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=6.5, ncols=len(handles),
                  frameon=False, borderaxespad=0.1)
    if not lanes:
        ax.text(0.5, 0.6, "no alarms in this session", transform=ax.transAxes, ha="center", color="#555555")


def _session_marks(ax: Axes, session: dict[str, Any], label: bool, tz: ZoneInfo,
                   span: tuple[datetime, datetime]) -> None:
    length = (span[1] - span[0]).total_seconds() or 1.0
    placed: list[float] = []
    for key, name in (("started_at", "start"), ("stopped_at", "stop"), ("discharged_at", "discharge")):
        t = session.get(key)
        if t is None:
            continue
        ax.axvline(mdates.date2num(t), color="#444444", linestyle=":", linewidth=0.9)
        if label:  # left of the line near the right edge, so the text stays on the page; close ones stacked
            at = (t - span[0]).total_seconds() / length
            right = at > 0.85
            row = sum(abs(at - other) < 0.12 for other in placed)
            placed.append(at)
            ax.annotate(f"{name} {t.astimezone(tz):%H:%M}", (mdates.date2num(t), 1.0), xycoords=("data", "axes fraction"),
                        xytext=(-2 if right else 2, -2 - 8 * row), textcoords="offset points", fontsize=6.5, va="top",
                        ha="right" if right else "left", color="#444444")


def _legend(ax: Axes, twin: Axes | None = None) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if twin is not None:
        h2, l2 = twin.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, loc="upper left", fontsize=6.5, ncols=len(handles), frameon=False)
