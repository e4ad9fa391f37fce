"""The pieces of the main screen. Each takes plain data (parts of the daemon's snapshot) in
``show`` and never talks to the link itself. Text that comes from outside (ids, messages,
the daemon's words, the site's checklist) is shown with ``plain``, never parsed as markup."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import ScrollableContainer, Vertical
from textual.content import Content
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.scrollbar import ScrollBarRender
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Digits, OptionList, SelectionList, Static
from textual.widgets._toggle_button import ToggleButton
from textual.widgets.option_list import OptionDoesNotExist
from textual.widgets.selection_list import Selection

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


def plain(text: object) -> Content:
    """Text shown exactly as it is: ``P-[/]`` or ``[b]x`` are characters, not markup."""
    return Content(str(text))


class YesNoList(SelectionList[str]):
    """A selection list whose items say their state in a word as well as by the colour of the
    box (``YES`` / ``no``): the state never rests on colour alone. Space toggles. Long items
    wrap (never cut); ``ascii_only`` draws the box as ``[X]`` for the Linux console."""

    DEFAULT_CSS = "YesNoList { text-wrap: wrap; text-overflow: fold; }"
    GUTTER = 4  # the box and a space

    def __init__(self, items: Sequence[tuple[str, str, bool]], *, yes: str = "YES", no: str = "no",
                 ascii_only: bool = False, **kw: Any) -> None:
        self._texts = {value: text for text, value, _ in items}
        self._words = (yes, no)
        self.ascii_only = ascii_only
        super().__init__(*[Selection(self._prompt(text, on), value, on) for text, value, on in items], **kw)

    def render_line(self, y: int) -> Strip:
        """The option's line with its box on the option's first line only (an item that wraps
        takes several lines; SelectionList assumes one line per item)."""
        line = OptionList.render_line(self, y)
        segments = list(line)
        try:
            index, offset = self._lines[self.scroll_offset.y + y]
            selection = self.get_option_at_index(index)
        except (IndexError, OptionDoesNotExist):
            return line
        underlying = (segments[0].style if segments else None) or self.rich_style
        if offset:
            return Strip([Segment(" " * self.GUTTER, underlying), *segments])
        chosen = selection.value in self._selected
        component = "selection-list--button" + ("-selected" if chosen else "") + \
            ("-highlighted" if self.highlighted == index else "")
        button = self.get_component_rich_style(component) + Style(meta={"option": index})
        side = Style.from_color(button.bgcolor, underlying.bgcolor) + Style(meta={"option": index})
        if self.ascii_only:
            box = [Segment("[" + ("X" if chosen else " ") + "]", underlying + Style(meta={"option": index}))]
        else:
            box = [Segment(ToggleButton.BUTTON_LEFT, side), Segment(ToggleButton.BUTTON_INNER, button),
                   Segment(ToggleButton.BUTTON_RIGHT, side)]
        return Strip([*box, Segment(" ", underlying), *segments])

    def _prompt(self, text: str, on: bool) -> Content:
        width = max(map(len, self._words))
        word = (self._words[0] if on else self._words[1]).ljust(width)
        return Content.assemble((word, "bold" if on else "dim"), "  ", text)

    def on_selection_list_selected_changed(self, _event: SelectionList.SelectedChanged[str]) -> None:
        chosen = set(self.selected)
        for i in range(self.option_count):
            value = self.get_option_at_index(i).value
            self.replace_option_prompt_at_index(i, self._prompt(self._texts[value], value in chosen))


class AsciiScrollBarRender(ScrollBarRender):
    """A scrollbar without the block glyphs the Linux console's font lacks: the thumb is drawn
    as reversed blanks only."""

    VERTICAL_BARS: ClassVar[list[str]] = [" "] * 8
    HORIZONTAL_BARS: ClassVar[list[str]] = [" "] * 8


def asciify(root: Widget) -> None:
    """Give a screen's scrollbars and select arrows plain ASCII (the console's borders are CSS)."""
    for widget in [root, *root.query("*")]:
        if isinstance(widget, ScrollableContainer | ScrollView):
            # per scrollbar, as Textual documents: the class attribute would change every app in the process
            widget.vertical_scrollbar.renderer = AsciiScrollBarRender  # type: ignore[misc]
            widget.horizontal_scrollbar.renderer = AsciiScrollBarRender  # type: ignore[misc]
    for arrow, glyph in ((".down-arrow", "v"), (".up-arrow", "^")):
        for static in root.query(arrow):
            if isinstance(static, Static):
                static.update(glyph)


class AlarmStrip(Static):
    """The highest active alarm (and how many more), in the first line of a dialog, so a dialog
    never hides what is alarming. Hidden when nothing is."""

    DEFAULT_CSS = "AlarmStrip { dock: top; height: auto; max-height: 3; display: none; } AlarmStrip.-on { display: block; }"

    def on_mount(self) -> None:
        data = getattr(self.app, "alarm_strip", None)
        if callable(data):
            self.show(*data())

    def show(self, alarms: list[dict[str, Any]], unknown: str = "") -> None:
        t = Text()
        if unknown:
            t.append(f"ALARM STATE UNKNOWN: {unknown}", style="bold reverse")
        elif alarms:
            top = alarms[0]
            prio = str(top.get("priority", "advisory"))
            more = f"  (+{len(alarms) - 1} more)" if len(alarms) > 1 else ""
            t.append(f"{fmt.priority_label(prio)}  {top.get('message', '')}{more}", style=_ALARM_STYLES[f"alarm-{prio}"])
        self.update(t)
        self.set_class(bool(unknown or alarms), "-on")


class Dialog:
    """Mixed into every dialog screen: ASCII on the Linux console (the app's ``console_mode``)."""

    def on_mount(self) -> None:
        app = getattr(self, "app", None)
        if getattr(app, "console_mode", False) and isinstance(self, Widget):
            asciify(self)


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
        yield Static(ascii_digits("--"), markup=False) if self.ascii_only else Digits("--")

    def set(self, text: str) -> None:
        if self.ascii_only:
            self.query_one(Static).update(plain(ascii_digits(text)))
        else:
            self.query_one(Digits).update(text)


def trend_scale(points: Sequence[tuple[float, float]], now: float, window_s: float, min_span: float,
                top: float | None = None) -> tuple[float, float] | None:
    """The value range a trend is drawn against: the values in the window, widened to at least
    ``min_span`` around their middle (so noise does not fill the tile), kept within 0..``top``,
    in whole units. None when the window has no value."""
    seen = [v for t, v in points if now - window_s <= t <= now]
    if not seen:
        return None
    lo, hi = min(seen), max(seen)
    span = max(hi - lo, min_span)
    lo = (lo + hi) / 2 - span / 2
    if top is not None and lo + span > top:
        lo = top - span
    lo = max(0.0, lo)
    return float(math.floor(lo)), float(math.ceil(max(lo + span, hi)))


def trend_text(points: Sequence[tuple[float, float]], now: float, window_s: float, width: int, ascii_only: bool,
               height: int = 1, scale: tuple[float, float] | None = None) -> str:
    """Bars ``height`` lines tall, oldest left, one column per ``window_s / width`` seconds; gaps
    stay blank. Drawn against ``scale`` (low, high), else the window's own range; a value at the
    low end still shows (one eighth of the bottom line)."""
    if width <= 0:
        return ""
    height = max(1, height)
    glyphs = TREND_GLYPHS_ASCII if ascii_only else TREND_GLYPHS
    step = window_s / width
    cols: list[float | None] = [None] * width
    for t, v in points:
        i = int((t - (now - window_s)) / step)
        if 0 <= i < width:
            cols[i] = v  # the last value in a column wins
    seen = [v for v in cols if v is not None]
    if not seen:
        return "\n".join([" " * width] * height)
    lo, hi = scale if scale is not None else (min(seen), max(seen))
    span = (hi - lo) or 1.0
    steps = len(glyphs)
    # Each column's bar in glyph steps, 1 (lowest) .. height * steps (highest).
    bars = [None if v is None else 1 + max(0, min(height * steps - 1, int((v - lo) / span * (height * steps - 1) + 0.5)))
            for v in cols]
    below = "|" if ascii_only else glyphs[-1]  # the full cells under a bar's top
    rows = []
    for r in range(height - 1, -1, -1):  # top line first
        row = []
        for b in bars:
            if b is None or b <= r * steps:
                row.append(" ")
            elif b > (r + 1) * steps:
                row.append(below)
            else:
                row.append(glyphs[min(steps, b - r * steps) - 1])
        rows.append("".join(row))
    return "\n".join(rows)


class VitalTile(Vertical):
    """One vital: name and unit (border title), the big value, a detail line (age, stale, mean)
    and its trend."""

    def __init__(self, key: str, title: str, console: bool, **kw: Any) -> None:
        super().__init__(id=f"tile-{key}", classes="tile", **kw)
        self.key = key
        self.ascii_only = console
        self.border_title = title
        self._trend: Callable[[int, int], str] | None = None
        self._scale: tuple[tuple[float, float] | None, int] = (None, 30)

    def _draw_trend(self) -> None:
        if self._trend is not None:
            line = self.query_one(".tile-trend", Static)
            line.update(plain(self._trend(max(0, self.content_region.width), max(1, line.size.height))))

    def on_resize(self) -> None:
        self._draw_trend()
        self._draw_scale()

    def compose(self) -> ComposeResult:
        yield BigNumber(self.ascii_only, classes="tile-value")
        yield Static("", classes="tile-detail", markup=False)
        yield Static("", classes="tile-trend", markup=False)

    def set_scale(self, scale: tuple[float, float] | None, window_min: int) -> None:
        """The trend's value range on the bottom border, with the window where it fits."""
        self._scale = scale, window_min
        self._draw_scale()

    def _draw_scale(self) -> None:
        scale, window_min = self._scale
        text = f"{fmt.amount(scale[0])}-{fmt.amount(scale[1])}" if scale is not None else ""
        both = f"{text} {window_min}m".strip()
        # the border keeps its corners, a line each side and a space around the text
        self.border_subtitle = both if len(both) <= self.outer_size.width - 6 or not self.outer_size.width else text

    def show(self, value: str, detail: str, state: str, trend: Callable[[int, int], str]) -> None:
        """``state``: ``ok``, ``stale``, or the highest alarm priority on this vital; ``trend``
        draws the trend for a width and height (redrawn when the tile is resized)."""
        self._trend = trend
        self.query_one(BigNumber).set(value)
        self.query_one(".tile-detail", Static).update(plain(detail))
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
        il = snap.get("interlock") or {}
        self.border_subtitle = fmt.INTERLOCK_PANEL.get(str(il.get("phase")), "")
        t = Text()
        if fmt.interlock_releasable(il):
            # The interlock acted: it leads the panel (the bolus line goes below the fold).
            held = f" {fmt.age(il['since_s'])}" if il.get("since_s") is not None else ""
            what = {"stopping": "STOPPING", "failed": "DID NOT STOP"}.get(str(il.get("phase")), "HOLDING")
            t.append(f"INTERLOCK {what}{held}", style="bold reverse")
            t.append("\n")
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


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, max(1, width), break_on_hyphens=False) or [""]


def _clip(line: str, width: int) -> str:
    return line if len(line) <= width else line[: max(0, width - 3)] + "..."


def _cut(line: str, width: int) -> str:
    """A line that goes on: ``...`` says so."""
    return line + "..." if len(line) + 3 <= width else _clip(line + "...", width)


class AlarmList(Static):
    """Active alarms, highest priority first. Each message wraps in full under its priority
    (symbol and word); the selected one is marked ``>`` and its rule source is shown under the
    list. When not all fit, the highest alarm and the selected one stay whole, the others get
    one line each and scroll with the selection, and ``+N more`` counts the hidden ones.
    ``wanted`` is the height that shows every alarm whole and a line of the source (the screen
    grows the list towards it)."""

    INDENT = 12  # the selection mark and the priority word
    _shown: tuple[list[dict[str, Any]], int, dict[str, bool], str, str] = ([], 0, {}, "", "")

    class Wanted(Message):
        """The lines the list needs to show every alarm whole changed."""

        def __init__(self, lines: int) -> None:
            super().__init__()
            self.lines = lines

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.wanted = 1
        self._top = 1  # the first of the scrolling alarms (all but the highest) on screen

    def on_resize(self) -> None:
        self.show(*self._shown)

    def _entry(self, a: dict[str, Any], selected: bool, width: int) -> list[str]:
        """The alarm's lines, its message wrapped in full."""
        tags = []
        if a.get("state") == "latched":
            tags.append("LATCHED")
        if a.get("inactivation") == "acknowledged":
            tags.append("ACK")
        elif a.get("inactivation") == "audio_paused":
            tags.append("PAUSED")
        text = str(a.get("message", "")) + (f" [{' '.join(tags)}]" if tags else "")
        body = _wrap(text, width - self.INDENT)
        first = (">" if selected else " ") + f"{fmt.priority_label(a.get('priority', 'advisory')):<11}"
        return [first + body[0]] + [" " * self.INDENT + line for line in body[1:]]

    def _layout(self, blocks: list[list[str]], selected: int, height: int, detail: list[str],
                width: int) -> tuple[list[tuple[int, list[str]]], int, list[str]]:
        """(alarm index and its lines, in order; how many are hidden; the detail lines)."""
        n = len(blocks)
        if sum(map(len, blocks)) + len(detail) <= height:
            self._top = 1
            return list(enumerate(blocks)), 0, detail
        full_detail = detail

        def fit_detail(lines: int) -> list[str]:
            """The source in ``lines`` lines (at least one), ``...`` where it is cut."""
            shown = full_detail[: max(1, lines)]
            if len(full_detail) > len(shown):
                shown = shown[:-1] + [_cut(shown[-1], width)]
            return shown

        detail = fit_detail(1)
        if sum(map(len, blocks)) + len(detail) <= height:  # every alarm whole, the source cut short
            self._top = 1
            return list(enumerate(blocks)), 0, fit_detail(height - sum(map(len, blocks)))
        one_line = [[_clip(b[0] + " " + " ".join(x.strip() for x in b[1:]), width)] if len(b) > 1 else b
                    for b in blocks]

        def cost(i: int) -> int:
            return len(blocks[i]) if i == selected else 1

        # The highest stays whole; the rest is a window over 1..n-1 that holds the selection.
        budget = height - len(blocks[0]) - len(detail)
        self._top = min(self._top, selected) if selected > 0 else 1
        top = max(1, min(self._top, n - 1))

        def window(top: int, room: int) -> list[int]:
            shown: list[int] = []
            for i in range(top, n):
                if sum(cost(j) for j in shown) + cost(i) > room:
                    break
                shown.append(i)
            return shown

        while True:
            room = budget - 1  # the "+N more" line
            shown = window(top, room)
            if selected <= 0 or selected in shown or top >= selected:
                break
            top += 1
        if selected > 0 and selected not in shown:
            shown = [selected]  # too small for anything else: the selection wins
        # Pull earlier alarms into view when the end of the list left room.
        while top > 1 and sum(cost(j) for j in shown) + cost(top - 1) <= room:
            top -= 1
            shown.insert(0, top)
        self._top = top
        hidden = n - 1 - len(shown)
        if hidden == 0:
            room = budget
        rows = [(0, blocks[0])]
        spare = room - sum(cost(j) for j in shown)
        for i in shown:
            lines = blocks[i] if i == selected else one_line[i]
            if i != selected and len(blocks[i]) > 1 and len(blocks[i]) - 1 <= spare:
                spare -= len(blocks[i]) - 1
                lines = blocks[i]
            rows.append((i, lines))
        if spare > 0 and full_detail:  # what is left goes to the rule's source
            detail = fit_detail(len(detail) + spare)
        return rows, hidden, detail

    def show(self, alarms: list[dict[str, Any]], selected: int, flash_on: dict[str, bool], hint: str = "",
             unknown: str = "") -> None:
        """``hint``: a key the selected alarm offers (shown before its rule id). ``unknown``: why
        the alarm state is not known now (the monitor is not responding); it leads the list and
        the alarms below it are the last known ones. Lines fill the list's width and height,
        redrawn when it is resized."""
        self._shown = (alarms, selected, flash_on, hint, unknown)
        width = max(self.INDENT + 8, self.content_region.width)
        height = self.content_region.height or 10_000  # not laid out yet: as if all fit
        notice = _wrap(f"ALARM STATE UNKNOWN: {unknown}" + ("; last known alarms:" if alarms else ""), width) \
            if unknown else []
        t = Text()
        if not alarms:
            if notice:
                t.append("\n".join(notice), style="bold reverse")
            else:
                t.append("No active alarms", style="dim")
            self._want(max(1, len(notice)))
            self.update(t)
            return
        height = max(1, height - len(notice))
        selected = selected if 0 <= selected < len(alarms) else -1
        blocks = [self._entry(a, i == selected, width) for i, a in enumerate(alarms)]
        detail: list[str] = []
        if selected >= 0:
            a = alarms[selected]
            source = f"{hint + '  ' if hint else ''}{a.get('rule_id')} ({a.get('kind')}): {a.get('source', '')}"
            detail = ["  " + line for line in _wrap(source, width - 2)]
        self._want(len(notice) + sum(map(len, blocks)) + min(1, len(detail)))  # the source may be cut short
        rows, hidden, detail = self._layout(blocks, selected, height, detail, width)
        out: list[list[tuple[str, str]]] = [[(line.ljust(width)[:width], "bold reverse")] for line in notice]
        for i, lines in rows:
            prio = alarms[i].get("priority", "advisory")
            style = _ALARM_STYLES[f"alarm-{prio}" if flash_on.get(prio, True) else f"alarm-{prio}-off"]
            if i == selected and prio == "advisory":
                style += " reverse"
            out.extend([(line.ljust(width)[:width], style)] for line in lines)
        if hidden:
            out.append([(f"  +{hidden} more (up/down)", "bold")])
        for k, line in enumerate(detail):
            lead = "  " + hint
            if k == 0 and hint and line.startswith(lead):
                out.append([(lead, "bold"), (line[len(lead):], "dim")])
            else:
                out.append([(line, "dim")])
        for k, pieces in enumerate(out):
            if k:
                t.append("\n")
            for text, style in pieces:
                t.append(text, style=style)
        self.update(t)

    def _want(self, lines: int) -> None:
        if lines != self.wanted:
            self.wanted = lines
            self.post_message(self.Wanted(lines))


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
