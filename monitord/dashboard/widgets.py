"""The pieces of the main screen. Each takes plain data (parts of the daemon's snapshot) in
``show`` and never talks to the link itself."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Digits, Static

from monitord.dashboard import format as fmt

# Seven-segment digits in plain ASCII for the Linux console, whose fonts lack Digits' glyphs.
_SEG = {
    "0": (" _ ", "| |", "|_|"), "1": ("   ", "  |", "  |"), "2": (" _ ", " _|", "|_ "),
    "3": (" _ ", " _|", " _|"), "4": ("   ", "|_|", "  |"), "5": (" _ ", "|_ ", " _|"),
    "6": (" _ ", "|_ ", "|_|"), "7": (" _ ", "  |", "  |"), "8": (" _ ", "|_|", "|_|"),
    "9": (" _ ", "|_|", " _|"), "-": ("   ", " _ ", "   "), "/": ("   ", "  /", " / "),
    ".": ("   ", "   ", " . "), " ": ("   ", "   ", "   "),
}

TREND_GLYPHS = "▁▂▃▄▅▆▇█"
TREND_GLYPHS_ASCII = "_.-~=+*#"


def ascii_digits(text: str) -> str:
    rows = ["", "", ""]
    for ch in text:
        seg = _SEG.get(ch, _SEG[" "])
        for i in range(3):
            rows[i] += seg[i]
    return "\n".join(rows)


class BigNumber(Widget):
    """A number three lines tall: Textual ``Digits``, or ASCII segments on the console."""

    DEFAULT_CSS = "BigNumber { height: 3; width: auto; } BigNumber > Static { width: auto; }"

    def __init__(self, console: bool, **kw: Any) -> None:
        super().__init__(**kw)
        self.ascii_only = console

    def compose(self) -> ComposeResult:
        yield Static(ascii_digits("--")) if self.ascii_only else Digits("--")

    def set(self, text: str) -> None:
        if self.ascii_only:
            self.query_one(Static).update(ascii_digits(text))
        else:
            self.query_one(Digits).update(text)


def trend_text(points: Sequence[tuple[float, float]], now: float, window_s: float, width: int, ascii_only: bool) -> str:
    """One line of bars, oldest left, one column per ``window_s / width`` seconds; gaps stay blank."""
    if width <= 0:
        return ""
    glyphs = TREND_GLYPHS_ASCII if ascii_only else TREND_GLYPHS
    step = window_s / width
    cols: list[float | None] = [None] * width
    for t, v in points:
        i = int((t - (now - window_s)) / step)
        if 0 <= i < width:
            cols[i] = v  # the last value in a column wins
    seen = [v for v in cols if v is not None]
    if not seen:
        return " " * width
    lo, hi = min(seen), max(seen)
    span = (hi - lo) or 1.0
    return "".join(" " if v is None else glyphs[min(len(glyphs) - 1, int((v - lo) / span * (len(glyphs) - 1) + 0.5))]
                   for v in cols)


class VitalTile(Vertical):
    """One vital: name and unit (border title), the big value, a detail line (age, stale, mean)
    and its trend."""

    def __init__(self, key: str, title: str, console: bool, **kw: Any) -> None:
        super().__init__(id=f"tile-{key}", classes="tile", **kw)
        self.key = key
        self.ascii_only = console
        self.border_title = title
        self._trend: Callable[[int], str] | None = None

    def _draw_trend(self) -> None:
        if self._trend is not None:
            self.query_one(".tile-trend", Static).update(self._trend(max(0, self.content_region.width)))

    def on_resize(self) -> None:
        self._draw_trend()

    def compose(self) -> ComposeResult:
        yield BigNumber(self.ascii_only, classes="tile-value")
        yield Static("", classes="tile-detail")
        yield Static("", classes="tile-trend")

    def show(self, value: str, detail: str, state: str, trend: Callable[[int], str]) -> None:
        """``state``: ``ok``, ``stale``, or the highest alarm priority on this vital; ``trend``
        draws the trend line for a width (redrawn when the tile is resized)."""
        self._trend = trend
        self.query_one(BigNumber).set(value)
        self.query_one(".tile-detail", Static).update(detail)
        self._draw_trend()
        for cls in ("ok", "stale", "high", "medium", "low", "advisory"):
            self.set_class(cls == state, f"-{cls}")


class PumpPanel(Static):
    def show(self, snap: dict[str, Any], elapsed_s: float | None) -> None:
        inf = snap.get("infusion") or {}
        order = snap.get("order") or {}
        conc = order.get("concentration_mg_ml")
        bolus = "--"
        if inf.get("bolus_ml"):
            mg = inf["bolus_ml"] * conc if conc else None
            bolus = f"{fmt.num(mg, 1)} mg ({fmt.num(inf.get('bolus_mg_kg'), 2)} mg/kg)"
        elif order.get("bolus_mg"):
            bolus = f"{fmt.num(order['bolus_mg'], 1)} mg ordered"
        state = (inf.get("state") or "no pump").upper()
        t = Text()
        t.append(f"PUMP {state}", style="bold")
        if inf.get("age_s") is not None and inf["age_s"] > 10:
            t.append(f"  (no data {fmt.age(inf['age_s'])})", style="bold reverse")
        t.append(f"\n{fmt.num(inf.get('rate_ml_h'), 1)} mL/h   ", style="bold")
        t.append(f"{fmt.num(inf.get('dose_rate_mg_kg_h'), 2)} mg/kg/h", style="bold")
        t.append(f"\nBolus {bolus}")
        t.append(f"\nTotal {fmt.num(inf.get('cumulative_mg'), 1)} mg   Time {fmt.duration(elapsed_s)}")
        # Below the fold on a small screen: the order and the latest nurse entries.
        if order:
            t.append(f"\nOrder {fmt.num(order.get('rate_ml_h'), 1)} mL/h at {order.get('concentration_mg_ml'):g} mg/mL")
        sed = snap.get("sedation")
        t.append("\nSedation " + (f"{str(sed['scale']).upper()} {sed['score']} ({fmt.age(sed.get('age_s'))} ago, {sed.get('actor')})"
                                   if sed else "not scored"))
        pain = snap.get("pain") or []
        t.append("\nPain " + (f"{pain[-1]['score']}/10 ({fmt.age(pain[-1].get('age_s'))} ago)" if pain else "not scored"))
        effects = ", ".join(e.replace("_", " ") for e in snap.get("effects") or []) or "none"
        t.append(f"\nEffects {effects}")
        self.update(t)


class AlarmList(Static):
    """Active alarms, highest priority first, one line each; the selected one is marked ``>``
    and its rule source is shown under the list."""

    _shown: tuple[list[dict[str, Any]], int, dict[str, bool], str] = ([], 0, {}, "")

    def on_resize(self) -> None:
        self.show(*self._shown)

    def show(self, alarms: list[dict[str, Any]], selected: int, flash_on: dict[str, bool], hint: str = "") -> None:
        """``hint``: a key the selected alarm offers (shown before its rule id). Lines fill the
        list's width, redrawn when it is resized."""
        self._shown = (alarms, selected, flash_on, hint)
        width = max(1, self.content_region.width)
        t = Text()
        if not alarms:
            t.append("No active alarms", style="dim")
        for i, a in enumerate(alarms):
            prio = a.get("priority", "advisory")
            tags = []
            if a.get("state") == "latched":
                tags.append("LATCHED")
            if a.get("inactivation") == "acknowledged":
                tags.append("ACK")
            elif a.get("inactivation") == "audio_paused":
                tags.append("PAUSED")
            mark = ">" if i == selected else " "
            line = f"{mark}{fmt.priority_label(prio):<11}{a.get('message', '')}"
            if tags:
                line += f" [{' '.join(tags)}]"
            style = f"alarm-{prio}" if flash_on.get(prio, True) else f"alarm-{prio}-off"
            t.append(line.ljust(width)[: max(width, 1)] + ("\n" if i < len(alarms) - 1 else ""),
                     style=_ALARM_STYLES[style] + (" reverse" if i == selected and prio in ("advisory",) else ""))
        if alarms and 0 <= selected < len(alarms):
            a = alarms[selected]
            t.append("\n  ")
            if hint:
                t.append(hint + "  ", style="bold")
            t.append(f"{a.get('rule_id')} ({a.get('kind')}): {a.get('source', '')}", style="dim")
        self.update(t)


# IEC 60601-1-8 colours: high red, medium yellow, low cyan; "-off" is the dark half of a flash.
_ALARM_STYLES = {
    "alarm-high": "bold white on red",
    "alarm-high-off": "bold red",
    "alarm-medium": "bold black on yellow",
    "alarm-medium-off": "bold yellow",
    "alarm-low": "black on cyan",
    "alarm-low-off": "black on cyan",
    "alarm-advisory": "",
    "alarm-advisory-off": "",
}
