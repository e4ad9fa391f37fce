"""The course at a glance: the next observation, the plasma-concentration *model estimate*
against the analgesic band, the plan's progress and discharge readiness (docs/course.md).

On a short screen it is one line whose least important parts are shortened, then dropped; on a
tall one a panel with a plot of the estimate over the course and the band. The estimate is always
labelled a model estimate: it is computed from what the pump delivered, never measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from monitord.dashboard import format as fmt

ESTIMATE = "model estimate"  # the words every concentration on screen carries
SEP = " | "


@dataclass(frozen=True)
class Part:
    """One piece of the course line: its full and short wording, and whether it calls for attention."""

    long: str
    short: str
    attention: bool = False
    same: bool = False  # the short form says all the long one does (shortened first)


def observation_part(obs: dict[str, Any] | None, elapsed_s: float) -> Part | None:
    if not obs or obs.get("due_in_s") is None:
        return None
    due_in = float(obs["due_in_s"]) - elapsed_s
    if obs.get("overdue"):
        return Part(f"OBSERVATION OVERDUE by {fmt.age(-due_in)}", f"OBS OVERDUE {fmt.age(-due_in)}", True, True)
    if due_in <= 0:
        return Part(f"Observation due now ({fmt.age(-due_in)} ago)", f"Obs due now ({fmt.age(-due_in)})", True, True)
    return Part(f"Next observation in {fmt.age(due_in)}", f"Obs in {fmt.age(due_in)}", same=True)


def band_words(value: float, band: Sequence[float]) -> str:
    lo, hi = band[0], band[1]
    where = "below" if value < lo else "above" if value > hi else "in"
    return f"{where} band {fmt.amount(lo)}-{fmt.amount(hi)}"


def estimate_part(est: dict[str, Any] | None) -> Part:
    if not est:
        return Part(f"Plasma {ESTIMATE}: none yet (no ketamine delivered)", f"{ESTIMATE}: none yet")
    c = float(est.get("concentration_ng_ml") or 0.0)
    band = est.get("analgesic_band_ng_ml") or []
    where = f", {band_words(c, band)}" if len(band) == 2 else ""
    return Part(f"Plasma {c:.0f} ng/mL {ESTIMATE}{where}", f"{c:.0f} ng/mL {ESTIMATE}")


def plan_part(inf: dict[str, Any]) -> Part:
    given = fmt.amount(inf.get("delivered_mg"))
    if inf.get("planned_total_mg") is None:
        return Part(f"{given} mg given, no planned duration", f"{given} mg given")
    planned, projected = fmt.amount(inf.get("planned_total_mg")), fmt.amount(inf.get("projected_total_mg"))
    ok = inf.get("reaches_minimum")
    minimum = "first-treatment minimum met" if ok else "BELOW the first-treatment minimum"
    return Part(f"Plan {given}/{planned} mg, projected {projected} mg: {minimum}",
                f"{given}/{planned} mg{'' if ok else ' BELOW MIN'}", not ok)


def discharge_part(dis: dict[str, Any] | None) -> Part | None:
    if not dis:
        return None
    criteria = dis.get("criteria") or []
    met = sum(1 for c in criteria if c.get("met"))
    if dis.get("ready"):
        return Part(f"Ready for discharge ({met}/{len(criteria)} criteria met)", "Discharge ready")
    missing = ", ".join(fmt.words(c.get("id")) for c in criteria if not c.get("met"))
    return Part(f"Discharge {met}/{len(criteria)}: missing {missing}", f"Discharge {met}/{len(criteria)}")


def parts(snap: dict[str, Any], elapsed_s: float) -> list[Part]:
    """The line's parts, most important first: the plan while the infusion runs, discharge
    readiness once it has stopped."""
    out = [observation_part(snap.get("observation"), elapsed_s), estimate_part(snap.get("estimate"))]
    plan = plan_part(snap.get("infusion") or {})
    out += [discharge_part(snap.get("discharge")), plan] if snap.get("status") == "stopped" else [plan]
    return [p for p in out if p is not None]


def fit_line(items: list[Part], width: int) -> list[tuple[str, bool]]:
    """The parts that fit in ``width``: shortened where the short form loses nothing, then the
    least important shortened, then dropped (the most important is kept, cut if it must be)."""
    forms = [p.long for p in items]

    def size() -> int:
        return len(SEP.join(forms))

    order = [i for i, p in enumerate(items) if p.same] + [i for i in range(len(items) - 1, -1, -1)
                                                           if not items[i].same]
    for i in order:
        if size() <= width:
            break
        forms[i] = items[i].short
    while len(forms) > 1 and size() > width:
        forms.pop()
    # Room left goes back to the most important part that lost words, then to the rest.
    for i in sorted(range(len(forms)), key=lambda i: items[i].same):
        full = [*forms[:i], items[i].long, *forms[i + 1:]]
        if len(SEP.join(full)) <= width:
            forms = full
    if forms and len(forms[0]) > width:
        forms[0] = forms[0][: max(0, width - 3)] + "..."
    return [(text, items[i].attention) for i, text in enumerate(forms)]


def line_text(snap: dict[str, Any], elapsed_s: float, width: int) -> Text:
    t = Text(no_wrap=True, overflow="crop")
    for i, (text, attention) in enumerate(fit_line(parts(snap, elapsed_s), width)):
        if i:
            t.append(SEP, style="dim")
        t.append(text, style="bold reverse" if attention else "")
    return t


def panel_rows(snap: dict[str, Any], elapsed_s: float) -> list[tuple[str, str, bool]]:
    """(label, text, attention) rows of the tall panel, most important first (after the stop,
    discharge readiness comes second); the text wraps under its label."""
    obs = observation_part(snap.get("observation"), elapsed_s)
    schedule = [("Observation", obs.long if obs else "no schedule (no infusion yet)", bool(obs and obs.attention))]
    est = snap.get("estimate")
    plasma: list[tuple[str, str, bool]] = []
    if est:
        c, band = float(est.get("concentration_ng_ml") or 0.0), est.get("analgesic_band_ng_ml") or []
        where = f", {band_words(c, band)} ng/mL" if len(band) == 2 else ""
        plasma.append(("Plasma", f"{c:.0f} ng/mL {ESTIMATE}{where}", False))
        after = ""
        if snap.get("status") == "stopped" and est.get("below_level_ng_ml") is not None:
            left = float(est.get("below_level_in_s") or 0)
            level = fmt.amount(est["below_level_ng_ml"])
            after = f"; below {level} ng/mL in {fmt.age(left)}" if left > 0 else f"; below {level} ng/mL"
        plasma.append(("", f"peak {float(est.get('peak_ng_ml') or 0):.0f} ng/mL{after} ({est.get('model')} model)",
                       False))
    else:
        plasma.append(("Plasma", estimate_part(None).long.removeprefix("Plasma "), False))
    inf = snap.get("infusion") or {}
    part = plan_part(inf)
    plan = [("Plan", part.long, False)]
    if inf.get("planned_duration_min") is not None:
        plan = [("Plan", f"{fmt.amount(inf.get('delivered_mg'))} mg given of {fmt.amount(inf.get('planned_total_mg'))}"
                         f" mg over {fmt.amount(inf.get('planned_duration_min'))} min", False),
                ("", part.long.split(", ", 1)[1], part.attention)]
    dis = discharge_part(snap.get("discharge"))
    if snap.get("status") == "stopped":
        ready = [("Discharge", dis.long.removeprefix("Discharge "), False)] if dis is not None else []
        return schedule + ready + plasma + plan
    return schedule + plasma + plan + ([("Discharge", "after the stop", False)] if dis is not None else [])


LABEL_W = 12


def panel_text(snap: dict[str, Any], elapsed_s: float, width: int) -> Text:
    t = Text(no_wrap=True, overflow="crop")
    first = True
    for label, text, attention in panel_rows(snap, elapsed_s):
        for k, chunk in enumerate(fmt.wrap(text, max(10, width - LABEL_W))):
            if not first:
                t.append("\n")
            first = False
            t.append(f"{label if k == 0 else '':<{LABEL_W}}", style="bold")
            t.append(chunk, style="bold reverse" if attention else "")
    return t


def plot_text(points: Sequence[tuple[float, float]], band: Sequence[float] | None, width: int, height: int,
              ascii_only: bool) -> Text:
    """The estimate over time (``points``: ``(age_s, ng_ml)``, oldest first, the last one now) as
    ``height`` rows: a title, the plot with the band shaded and its edges on the axis, and a time
    axis. One mark per column, at half-row resolution (ASCII: ``*``)."""
    t = Text(no_wrap=True, overflow="crop")
    t.append(f"Plasma ng/mL, {ESTIMATE}"[:width], style="bold")
    rows = height - 2
    axis = 4
    cols = width - axis - 1
    if rows < 2 or cols < 8:
        return t
    if not points:
        t.append("\n" + "(no ketamine delivered yet)"[:width], style="dim")
        return t
    lo_band, hi_band = (band[0], band[1]) if band and len(band) == 2 else (None, None)
    top = max(max(c for _, c in points) * 1.1, (hi_band or 0) * 1.25, 10.0)
    span_s = max(points[0][0], 30 * 60.0)  # at least the last 30 min
    marks: list[float | None] = [None] * cols
    for age, c in points:
        i = cols - 1 - int(age / span_s * (cols - 1) + 0.5)
        if 0 <= i < cols:
            marks[i] = c  # the newest value in a column wins
    levels = rows * 2  # half rows

    def level(v: float) -> int:
        return max(0, min(levels - 1, int(v / top * levels)))

    def row_of(v: float) -> int:
        return rows - 1 - level(v) // 2

    labels = {}
    if lo_band is not None and hi_band is not None:
        labels[row_of(hi_band)] = fmt.amount(hi_band)
        labels.setdefault(row_of(lo_band), fmt.amount(lo_band))
    labels.setdefault(rows - 1, "0")
    band_rows = set(range(row_of(hi_band), row_of(lo_band) + 1)) if lo_band is not None and hi_band is not None \
        else set()
    band_style = "on #204020" if not ascii_only else "on green"
    for r in range(rows):
        t.append("\n")
        t.append(f"{labels.get(r, ''):>{axis}}|", style="dim")
        style = band_style if r in band_rows else ""
        cells = []
        for v in marks:
            if v is None or row_of(v) != r:
                cells.append(" ")
            elif ascii_only:
                cells.append("*")
            else:
                cells.append("▀" if level(v) % 2 else "▄")
        t.append("".join(cells), style=style)
    left = f"-{span(span_s)}"
    t.append("\n" + " " * (axis + 1) + left + "now".rjust(cols - len(left)), style="dim")
    return t


def span(seconds: float) -> str:
    """A time span for an axis: ``30m``, ``2h05m``."""
    m = int(seconds // 60)
    return f"{m}m" if m < 60 else f"{m // 60}h{m % 60:02d}m"


class CourseLine(Static):
    """The course in one line (short screens)."""

    def show(self, snap: dict[str, Any], elapsed_s: float) -> None:
        self.update(line_text(snap, elapsed_s, max(20, self.content_region.width or 80)))


class CoursePanel(Horizontal):
    """The course with a plot of the estimate (tall screens)."""

    def __init__(self, console: bool, **kw: Any) -> None:
        super().__init__(**kw)
        self.ascii_only = console
        self.border_title = "Course"
        self._shown: tuple[dict[str, Any], float, list[tuple[float, float]]] = ({}, 0.0, [])

    def compose(self) -> ComposeResult:
        yield Static("", id="course-text")
        yield Static("", id="course-plot")

    def on_resize(self) -> None:
        self.show(*self._shown)

    def show(self, snap: dict[str, Any], elapsed_s: float, curve: list[tuple[float, float]]) -> None:
        self._shown = (snap, elapsed_s, curve)
        text = self.query_one("#course-text", Static)
        plot = self.query_one("#course-plot", Static)
        text.update(panel_text(snap, elapsed_s, max(20, text.content_region.width or 60)))
        est = snap.get("estimate") or {}
        plot.update(plot_text(curve, est.get("analgesic_band_ng_ml"), plot.content_region.width,
                              plot.content_region.height, self.ascii_only))
