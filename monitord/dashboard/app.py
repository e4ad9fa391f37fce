"""The bedside dashboard (``monitord dashboard``): one bed's infusion, vitals, trends, alarms
and event log, and the nurse's actions, over the daemon's local link.

Everything shown comes from the daemon's snapshot; the screen only ages it (a value older than
its limit is shown as stale, never as current) and says MONITOR NOT RESPONDING when the daemon
goes quiet. Bursts of snapshots collapse to the latest (``SnapshotArrived.can_replace``).
Data that arrives before the main screen is mounted, or while the app is shutting down, is
kept and drawn by the next refresh, never drawn into widgets that do not exist.
Build it with ``DashboardApp(socket_path=...)``; tests inject data with ``connect=False``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Footer, RichLog, Static

from monitord.buzzer import AlarmSounder, GpioBuzzer, Output, TerminalBell, bell_problem
from monitord.dashboard import entries, modals
from monitord.dashboard import format as fmt
from monitord.dashboard.course import CourseLine, CoursePanel
from monitord.dashboard.sound import SoundTestModal, sound_problem
from monitord.dashboard.widgets import (
    AlarmList,
    AlarmStrip,
    PumpPanel,
    VitalTile,
    plain,
    trend_scale,
    trend_text,
)
from monitord.link.client import CommandFailed, LinkClient

log = logging.getLogger(__name__)

TREND_WINDOWS_MIN = (30, 60, 120, 240)
TILES = (("hr", "HR"), ("nibp", "NIBP"), ("spo2", "SpO2"), ("rr", "RR"), ("etco2", "EtCO2"))
UNITS = {"hr": "/min", "nibp": "mmHg", "spo2": "%", "rr": "/min", "etco2": "mmHg"}
TREND_KEY = {"hr": "hr", "nibp": "sbp", "spo2": "spo2", "rr": "rr", "etco2": "etco2"}
# The least value range a trend tile spans, and its ceiling: display only (1 % of SpO2 noise must
# not fill a tile); the tile shows the range it is drawn against.
TREND_MIN_SPAN = {"hr": 20.0, "nibp": 40.0, "spo2": 10.0, "rr": 10.0, "etco2": 10.0}
TREND_TOP = {"spo2": 100.0}
LOG_STYLES = {"high": "bold red", "medium": "bold yellow", "low": "cyan", "refused": "bold red", "warning": "bold"}
LOG_LINES = 500  # the event log's length; also the most events kept while it does not exist yet
# The event log keeps this many rows (3 lines and its border) when the alarm list grows into it.
MIN_LOG_HEIGHT = 5
# The course panel's height on a tall screen (CSS #course); on a short one it is one line.
COURSE_PANEL_HEIGHT = 9
# NIBP lives one cycle: this default only applies until the daemon's hello gives the real limits.
DEFAULT_STALE_S = {"sbp": 450.0, "dbp": 450.0, "map": 450.0}

CSS = """
Screen { layout: vertical; }
#header { height: 1; background: $panel; color: $text; text-style: bold; }
/* The nurse's id keeps its place at any width; _header cuts the rest with an ASCII "...". */
#header-main { width: 1fr; text-wrap: nowrap; text-overflow: clip; }
#header-nurse { width: auto; padding: 0 0 0 1; }
/* Banners wrap so their reason is never cut off. */
#banner, .banner { height: auto; max-height: 3; display: none; text-style: bold; }
#banner.-link { display: block; background: red; color: white; }
#banner.-paused { display: block; background: $warning; color: black; }
.banner.-on { display: block; }
#banner-interlock { background: red; color: white; }
#banner-sound, #banner-weight { background: $warning; color: black; }
#tiles { height: 7; }
.tile { width: 1fr; height: 7; border: round $secondary; padding: 0 0; border-title-align: left; }
#tile-nibp { width: 23; }
.tile-value { height: 3; }
.tile-detail, .tile-trend { height: 1; width: 1fr; }
.tile.-stale { color: $text-muted; border: round $panel-lighten-2; }
.tile.-high { border: heavy red; color: red; }
.tile.-medium { border: heavy yellow; color: yellow; }
.tile.-low { border: round cyan; color: cyan; }
#middle { height: 6; min-height: 6; }
#pump { width: 34; height: 1fr; border: round $secondary; }
#alarms { width: 1fr; height: 1fr; border: round $secondary; }
#events { height: 1fr; border: round $secondary; overflow-x: hidden; }
.-tall #tiles { height: 10; }
.-tall .tile { height: 10; padding: 0 1; }
/* Room for a taller trend: three lines of bars (one at the Pi console's 80x24). */
.-tall .tile-value { margin-top: 1; }
.-tall .tile-trend { height: 3; }
.-tall #middle { height: 10; min-height: 10; }
/* The course: one line on a short screen, a panel with the estimate's plot on a tall one; it gives
   its rows to the alarm list when the alarms need them (-no-course). */
#course-line { height: 1; padding: 0 1; }
#course { display: none; height: 9; border: round $secondary; border-title-align: left; }
#course-text { width: 3fr; height: 1fr; }
#course-plot { width: 2fr; height: 1fr; padding: 0 0 0 1; }
.-tall #course-line { display: none; }
.-tall #course { display: block; }
.-no-course #course-line, .-no-course #course { display: none; }
.-narrow #course-plot { display: none; }
.-wide #pump { width: 44; }
.-console .tile, .-console #pump, .-console #alarms, .-console #events, .-console #course {
    border: ascii $secondary;
}
.-console .tile.-high { border: ascii red; }
.-console .tile.-medium { border: ascii yellow; }
.-console .tile.-low { border: ascii cyan; }
.-console .tile.-stale { border: ascii $panel-lighten-2; }
/* Scrollbars are drawn with block glyphs the console font lacks; the log follows the newest line. */
.-console #events { scrollbar-size: 0 0; }
/* Dialogs sit at the bottom, over the event log, so the alarm list above stays in view; one too
   tall for that still shows the top alarm in its first line (AlarmStrip). */
ModalScreen { align: center bottom; }
.dialog { width: 76; max-height: 22; height: auto; border: thick $accent; background: $surface; padding: 0 1; }
.-console .dialog { border: ascii $accent; }
/* The Linux console's font has no block or box glyphs: ASCII borders for the fields too. */
.-console Input, .-console SelectCurrent, .-console OptionList, .-console SelectOverlay {
    border: ascii $border-blurred;
}
.-console Input:focus, .-console OptionList:focus, .-console Select:focus > SelectCurrent,
.-console SelectOverlay:focus {
    border: ascii $border;
}
.-console Input.-textual-compact, .-console Input.-textual-compact:focus { border: none; }
.dialog-title { text-style: bold; margin-bottom: 1; }
.dialog Label { width: 100%; }  /* a long heading or note wraps, never cut */
.score-item { height: 1; }
.score-item .score-label { width: 36; }
.score-item Input { width: 8; }
.dialog-error { display: none; background: red; color: white; text-style: bold; }
.dialog-error.-shown { display: block; }
.dialog-hint { color: $text-muted; }
.dialog-warning { background: red; color: white; text-style: bold; }
.dialog Input, .dialog Select { margin: 0; }
.dialog SelectionList { height: auto; max-height: 12; }
"""


class SnapshotArrived(Message):
    """The daemon's latest view of the bed; a newer one replaces an unhandled older one."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotArrived)


class LinkMessage(Message):
    """Hello or a log event (never dropped)."""

    def __init__(self, msg: dict[str, Any]) -> None:
        super().__init__()
        self.msg = msg


class DashboardApp(App[int]):
    CSS = CSS
    ENABLE_COMMAND_PALETTE = False
    TITLE = "monitord"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]
    BINDINGS = [
        # Shown only while the pump stop interlock has something to release (check_action); first,
        # so a narrow footer never cuts it off.
        Binding("l", "interlock_release", "Release interlock"),
        # Shown only while the daemon doubts the patient's weight (check_action).
        Binding("w", "weight_check", "Check weight"),
        Binding("a", "ack", "Ack"),
        Binding("m", "audio_pause", "Mute"),
        Binding("s", "sedation", "Sedation"),
        Binding("p", "pain", "Pain"),
        Binding("e", "effects", "Effects"),
        Binding("r", "rescue", "Rescue"),
        Binding("i", "session", "Infusion"),
        Binding("t", "trend", "Trend"),
        Binding("u", "nurse", "Nurse"),
        Binding("b", "sound_test", "Sound test", show=False),
        # Shown only while the selected alarm is one a physician may override (check_action).
        Binding("o", "override", "Override"),
        # Quitting leaves the bed without its screen and sound: Ctrl+C (or Ctrl+Q) asks first.
        Binding("ctrl+c,ctrl+q", "request_quit", "Quit", show=False, priority=True),
        Binding("up", "select(-1)", "Select alarm", show=False),
        Binding("down", "select(1)", "Select alarm", show=False),
    ]

    def __init__(
        self,
        socket_path: str | None = None,
        *,
        nurse: str | None = None,
        console: bool = False,
        connect: bool = True,
        clock: Callable[[], float] = time.monotonic,
        flash: bool = True,
        sound: bool = True,
        buzzer_pin: int | None = None,
        sounder: AlarmSounder | None = None,
        term: str | None = None,
        not_responding_after_s: float | None = None,
    ) -> None:
        super().__init__()
        self.socket_path = socket_path
        self.nurse = nurse
        self.console_mode = console
        self.clock = clock
        self.flash = flash
        self.snapshot: dict[str, Any] | None = None
        self.snapshot_at = 0.0
        self.hello: dict[str, Any] = {}
        self.selected = 0
        self.trend_minutes = TREND_WINDOWS_MIN[0]
        self.trends: dict[str, deque[tuple[float, float]]] = {k: deque(maxlen=20_000) for k in TREND_KEY.values()}
        self._trend_last_rx: dict[str, float] = {}
        self.sedation_scale = "rass"
        self.seen_seqs: set[int] = set()
        self.tz: tzinfo | None = ZoneInfo("UTC")
        self._flash_tick = 0
        self._mounted = False  # the main screen's widgets exist (set on mount, cleared on unmount)
        self._early_log: list[dict[str, Any]] = []  # events that arrived before the log existed
        self._can_override = False
        self._context_keys = (False, False)  # the interlock release and weight check keys are offered
        self._banner_text = ""
        self._banner_lines: dict[str, str] = {}
        self.estimate_curve: list[tuple[float, float]] = []  # (time on this screen's clock, ng/mL)
        self._has_course = False
        self._started = clock()
        self.link: LinkClient | None = None
        if connect:
            if not socket_path:
                raise ValueError("a socket path is needed to connect")
            kw = {"not_responding_after_s": not_responding_after_s} if not_responding_after_s else {}
            self.link = LinkClient(socket_path, self._from_link, on_state=self._link_state, clock=clock, **kw)
        # Sound: the terminal bell (silent on a console without a PC speaker) and an optional GPIO
        # buzzer; ``sounder`` replaces both (tests). None: no sound at all (--no-sound).
        self.sounder: AlarmSounder | None = sounder
        if sounder is None and sound:
            term = os.environ.get("TERM") if term is None else term
            outputs: list[Output] = [TerminalBell(self.bell, bell_problem(term))]
            if buzzer_pin is not None:
                outputs.append(GpioBuzzer(buzzer_pin))
            self.sounder = AlarmSounder(outputs)
        self._unheard_at: str | None = None  # when a sound test was answered "not heard"
        self._sound_problem: str | None = None

    # -- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="header"):
            yield Static("", id="header-main", markup=False)
            yield Static("", id="header-nurse", markup=False)
        yield Static("", id="banner", markup=False)
        for name in ("interlock", "weight", "sound"):
            yield Static("", id=f"banner-{name}", classes="banner", markup=False)
        with Horizontal(id="tiles"):
            for key, title in TILES:
                yield VitalTile(key, title, self.console_mode)
        with Horizontal(id="middle"):
            pump = PumpPanel(id="pump")
            pump.border_title = "Infusion"
            yield pump
            alarms = AlarmList(id="alarms")
            alarms.border_title = "Alarms"
            yield alarms
        yield CourseLine("", id="course-line", markup=False)
        yield CoursePanel(self.console_mode, id="course")
        log = RichLog(id="events", max_lines=LOG_LINES, wrap=False, markup=False)
        log.border_title = "Event log"
        log.can_focus = False
        yield log
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._mounted = True
        self.set_class(self.console_mode, "-console")
        early, self._early_log = self._early_log, []
        for ev in early:
            self.apply_event(ev)
        self.refresh_view()
        self.set_interval(1.0, self.refresh_view)
        if self.flash:
            self.set_interval(0.25, self._flash)
        if self.link is not None:
            self._run_link()
        if self.sounder is not None:
            self.sounder.start()
        if self.nurse:
            log.info("Staff id %s (given at start)", self.nurse)
        if not self.nurse:
            self.push_screen(modals.NurseModal())

    async def on_unmount(self) -> None:
        self._mounted = False
        if self.sounder is not None:
            await self.sounder.stop()
        if self.link is not None:
            await self.link.close()

    @work(exclusive=True, group="link")
    async def _run_link(self) -> None:
        assert self.link is not None
        await self.link.run()

    # -- data in ----------------------------------------------------------------------------------

    def _from_link(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "snapshot":
            self.post_message(SnapshotArrived(msg.get("snapshot") or {}))
        elif msg.get("type") in ("hello", "event", "estimate_curve"):
            self.post_message(LinkMessage(msg))

    def _link_state(self, up: bool) -> None:
        self.call_later(self.refresh_view)

    def view_ready(self) -> bool:
        """Whether the main screen's widgets can be drawn into: not before they are mounted,
        not once the app is shutting down (their snapshot is kept and drawn on the next refresh)."""
        return self._mounted and self.is_running and self.default_screen.is_attached

    def on_snapshot_arrived(self, message: SnapshotArrived) -> None:
        self.apply_snapshot(message.snapshot)

    def on_link_message(self, message: LinkMessage) -> None:
        if message.msg.get("type") == "hello":
            self.apply_hello(message.msg)
        elif message.msg.get("type") == "estimate_curve":
            self.apply_estimate_curve(message.msg)
        else:
            self.apply_event(message.msg.get("event") or {})

    def apply_hello(self, hello: dict[str, Any]) -> None:
        self.hello = hello
        cfg = hello.get("config", {})
        try:
            self.tz = ZoneInfo(cfg.get("timezone") or "UTC")
        except Exception:
            self.tz = ZoneInfo("UTC")
        now = self.clock()
        for name, series in (hello.get("trends") or {}).items():
            if name in self.trends:
                self.trends[name].clear()
                self.trends[name].extend((now - age_s, value) for age_s, value in series)
                if series:
                    self._trend_last_rx[name] = now - series[-1][0]
        self.refresh_view()

    def apply_estimate_curve(self, msg: dict[str, Any]) -> None:
        """The model estimate over the course so far (for the plot), kept on this screen's clock."""
        now = self.clock()
        self.estimate_curve = [(now - float(age), float(c)) for age, c in msg.get("points") or []
                               if isinstance(age, int | float) and isinstance(c, int | float)]
        self.refresh_view()

    def apply_snapshot(self, snap: dict[str, Any]) -> None:
        patient = (snap.get("patient") or {}).get("id")
        if self.snapshot is not None and patient != (self.snapshot.get("patient") or {}).get("id"):
            # Admitted or discharged: the last patient's trends and estimate are not this one's.
            for series in self.trends.values():
                series.clear()
            self._trend_last_rx.clear()
            self.estimate_curve = []
        self.snapshot = snap
        self.snapshot_at = self.clock()
        for name, v in (snap.get("vitals") or {}).items():
            if name not in self.trends or v.get("value") is None or v.get("stale"):
                continue
            rx = self.snapshot_at - float(v.get("age_s") or 0)
            if rx - self._trend_last_rx.get(name, -1e18) > 1.0:
                self.trends[name].append((rx, float(v["value"])))
                self._trend_last_rx[name] = rx
        self.refresh_view()

    def apply_event(self, ev: dict[str, Any]) -> None:
        if not self.view_ready():  # the log does not exist yet: keep the event for it
            self._early_log.append(ev)
            del self._early_log[:-LOG_LINES]
            return
        seq = ev.get("seq")
        if isinstance(seq, int):
            if seq in self.seen_seqs:
                return
            self.seen_seqs.add(seq)
        text, style = fmt.event_line(ev, self.tz)
        line = Text(f"{fmt.clock_time(ev.get('time'), self.tz)} ")
        line.append(text, style=LOG_STYLES.get(style, ""))
        self.query_one("#events", RichLog).write(line)

    # -- config from hello ----------------------------------------------------------------------

    @property
    def _cfg(self) -> dict[str, Any]:
        cfg: dict[str, Any] = self.hello.get("config", {})
        return cfg

    @property
    def checklist(self) -> list[dict[str, Any]]:
        return list(self._cfg.get("checklist", []))

    @property
    def rescue_medications(self) -> list[str]:
        return list(self._cfg.get("rescue_medications", []))

    @property
    def drug(self) -> dict[str, Any]:
        return dict(self._cfg.get("drug", {}))

    @property
    def effect_names(self) -> list[str]:
        return list(self._cfg.get("effects", []))

    # -- view -------------------------------------------------------------------------------------

    def responding(self) -> bool:
        return self.link is None or self.link.responding()

    def _elapsed(self) -> float:
        """Seconds since the snapshot arrived: what the screen adds to its ages."""
        return max(0.0, self.clock() - self.snapshot_at) if self.snapshot is not None else 0.0

    def _alarms(self) -> list[dict[str, Any]]:
        return list((self.snapshot or {}).get("alarms", []))

    def refresh_view(self) -> None:
        if not self.view_ready():
            return
        snap = self.snapshot or {}
        alive = self.responding()
        self._header(snap)
        self._banner(snap, alive)
        self._tiles(snap, alive)
        self.query_one(PumpPanel).show(snap, self._infusion_time(snap))
        self._course(snap)
        self._alarm_list()
        self._dialog_strip()
        if self.sounder is not None:
            lost = not alive and self.clock() - self._started > 3.0
            self.sounder.set("medium" if lost else (snap.get("audio") or {}).get("sounding"))

    def _course(self, snap: dict[str, Any]) -> None:
        has = bool(snap.get("patient"))
        if has != self._has_course:
            self._has_course = has
            self.call_after_refresh(self._fit_alarms)
        if not has:
            return
        elapsed = self._elapsed()
        self.query_one(CourseLine).show(snap, elapsed)
        now = self.clock()
        curve = [(now - t, c) for t, c in self.estimate_curve if now - t > 0]
        est = snap.get("estimate")
        if est and est.get("concentration_ng_ml") is not None:
            curve.append((elapsed, float(est["concentration_ng_ml"])))
        self.query_one(CoursePanel).show(snap, elapsed, curve)

    def _infusion_time(self, snap: dict[str, Any]) -> float | None:
        t = (snap.get("infusion") or {}).get("infusion_time_s")
        if t is None:
            return None
        return float(t) + (self._elapsed() if snap.get("status") == "running" and self.responding() else 0.0)

    def _header(self, snap: dict[str, Any]) -> None:
        """Bed, patient, status, drug and care area, cut from the end to fit; the nurse's id
        on the right always shows whole."""
        p, o = snap.get("patient") or {}, snap.get("order") or {}
        parts = [str(snap.get("bed_id") or self.hello.get("bed_id") or "?")]
        parts.append(f"{p.get('id')} {fmt.amount(p.get('weight_kg'))} kg" if p else "no patient")
        parts.append(str(snap.get("status") or "?").upper())
        if o:
            parts.append(f"{o.get('drug')} {fmt.amount(o.get('concentration_mg_ml'))} mg/mL")
        if snap.get("care_area"):
            parts.append(str(snap["care_area"]))
        nurse = f"| RN {self.nurse or '?'}"
        header = self.query_one("#header")
        room = header.size.width - len(nurse) - 1 if header.size.width else 10_000
        main = " | ".join(parts)
        if len(main) > room:
            main = main[: max(0, room - 3)] + "..."
        self.query_one("#header-main", Static).update(plain(main))
        self.query_one("#header-nurse", Static).update(plain(nurse))

    def _banner(self, snap: dict[str, Any], alive: bool) -> None:
        banner = self.query_one("#banner", Static)
        audio = snap.get("audio") or {}
        was = banner.classes & {"-link", "-paused"}
        banner.set_class(not alive, "-link")
        banner.set_class(alive and bool(audio.get("paused")), "-paused")
        text = ""
        if not alive:
            text = f"!!! MONITOR NOT RESPONDING - values are not current ({self._why_not_responding()})"
        elif audio.get("paused"):
            left = float(audio.get("pause_remaining_s") or 0) - self._elapsed()
            text = f"AUDIO PAUSED {fmt.countdown(left)} - alarms still shown"
        if banner.classes & {"-link", "-paused"} != was or text != self._banner_text:
            self._banner_text = text
            banner.update(plain(text))
            self.call_after_refresh(self._fit_alarms)
        il = snap.get("interlock")
        line = fmt.interlock_banner(il)
        self._banner_line("interlock", line + (" - l: release" if line else "") + ("" if alive or not line else
                                                                                    " (last known)"))
        weight = str(snap.get("weight_check") or "")
        self._banner_line("weight", f"WEIGHT TO CHECK: {weight} - w: confirm or correct" if weight else "")
        self._sound_banner()
        keys = (fmt.interlock_releasable(il), bool(weight))
        if keys != self._context_keys:
            self._context_keys = keys
            self.refresh_bindings()

    def _sound_banner(self) -> None:
        problem = sound_problem(self.sounder, self._unheard_at)
        if problem != self._sound_problem:
            if problem:
                log.warning("no alarm sound at this bedside: %s", problem)
            elif self._sound_problem is not None:
                log.info("alarm sound works again")
            self._sound_problem = problem
        hint = " - b: sound test" if self.sounder is not None else ""
        self._banner_line("sound", f"NO ALARM SOUND: {problem}{hint}" if problem else "")

    def _banner_line(self, name: str, text: str) -> None:
        """One of the banners under the main one (empty: hidden)."""
        if self._banner_lines.get(name, "") == text:
            return
        self._banner_lines[name] = text
        line = self.query_one(f"#banner-{name}", Static)
        line.update(plain(text))
        line.set_class(bool(text), "-on")
        self.call_after_refresh(self._fit_alarms)

    def _why_not_responding(self) -> str:
        return (self.link.why_not_responding() if self.link is not None else "") or "no heartbeat"

    def _tile_states(self) -> dict[str, str]:
        states: dict[str, str] = {}
        for a in self._alarms():
            name = fmt.vital_of(str(a.get("rule_id", "")))
            tile = "nibp" if name == "sbp" else name
            if tile is None:
                continue
            prio = a.get("priority", "advisory")
            if fmt.PRIORITY_RANK.get(prio, 0) > fmt.PRIORITY_RANK.get(states.get(tile, ""), -1):
                states[tile] = prio
        return states

    def _vital(self, snap: dict[str, Any], name: str, alive: bool) -> tuple[float | None, float | None, bool, str]:
        """(value, age, stale, quality) with the screen's own ageing applied."""
        v = (snap.get("vitals") or {}).get(name)
        if not v:
            return None, None, True, ""
        age = float(v.get("age_s") or 0) + self._elapsed()
        limit = self._cfg.get("stale_after_s", {}).get(name, DEFAULT_STALE_S.get(name, 30.0))
        stale = bool(v.get("stale")) or v.get("value") is None or age > limit or not alive
        return v.get("value"), age, stale, v.get("quality", "")

    def _tiles(self, snap: dict[str, Any], alive: bool) -> None:
        states = self._tile_states()
        window = self.trend_minutes * 60.0
        now = self.clock()
        for tile in self.query(VitalTile):
            points = self.trends[TREND_KEY[tile.key]]
            scale = trend_scale(points, now, window, TREND_MIN_SPAN[tile.key], TREND_TOP.get(tile.key))

            def trend(width: int, height: int, points: deque[tuple[float, float]] = points,
                      scale: tuple[float, float] | None = scale) -> str:
                return trend_text(points, now, window, width, self.console_mode, height, scale)
            if tile.key == "nibp":
                sbp, age, stale, q = self._vital(snap, "sbp", alive)
                dbp, _, _, _ = self._vital(snap, "dbp", alive)
                mean, _, _, _ = self._vital(snap, "map", alive)
                shown = f"{fmt.num(sbp)}/{fmt.num(dbp)}"
                detail = f"({fmt.num(mean)}) {fmt.age(age)} ago" if age is not None else "no NIBP yet"
            else:
                value, age, stale, q = self._vital(snap, tile.key, alive)
                shown = fmt.num(value)
                detail = f"{UNITS[tile.key]} {fmt.age(age)}" if age is not None else "no data"
            if q == "questionable":
                detail += " ?"
            if stale:
                detail = (f"STALE {shown} {fmt.age(age)}" if age is not None and shown.strip("-/") else "NO DATA")
                shown = "--/--" if tile.key == "nibp" else "--"
            state = states.get(tile.key) or ("stale" if stale else "ok")
            tile.set_scale(scale, self.trend_minutes)
            tile.show(shown, detail, state, trend)

    def alarm_strip(self) -> tuple[list[dict[str, Any]], str]:
        """What a dialog's alarm strip shows: the active alarms, and why their state is unknown."""
        unknown = ""
        if self.snapshot is None:
            unknown = "no data from the monitor yet"
        elif not self.responding():
            unknown = "the monitor is not responding"
        return self._alarms(), unknown

    def _dialog_strip(self) -> None:
        """The open dialog's alarm strip, and whatever else of it follows the snapshot."""
        screen = self.screen
        if screen is self.default_screen or not screen.is_attached or not screen.is_mounted:
            return
        for strip in screen.query(AlarmStrip):
            strip.show(*self.alarm_strip())
        follow = getattr(screen, "snapshot_changed", None)
        if callable(follow):
            follow(self.snapshot or {})

    def _alarm_list(self) -> None:
        if not self.view_ready():
            return
        alarms = self._alarms()
        self.selected = min(self.selected, max(0, len(alarms) - 1))
        flash_on = {"high": True, "medium": True}
        if self.flash:
            # IEC 60601-1-8 (alarm-defaults.md s1): high ~2 Hz, medium ~0.67 Hz, 50 % on; low steady.
            flash_on = {"high": self._flash_tick % 2 == 0, "medium": (self._flash_tick // 3) % 2 == 0}
        selected = self._selected_alarm()
        can_override = selected is not None and self.overridable(str(selected.get("rule_id")))
        _, unknown = self.alarm_strip()
        widget = self.query_one(AlarmList)
        widget.show(alarms, self.selected, flash_on, hint="o: physician override" if can_override else "",
                    unknown=unknown)
        if can_override != self._can_override:
            self._can_override = can_override
            self.refresh_bindings()

    def on_alarm_list_wanted(self, message: AlarmList.Wanted) -> None:
        self.call_after_refresh(self._fit_alarms)

    def on_resize(self) -> None:
        self.call_after_refresh(self.refresh_view)
        self.call_after_refresh(self._fit_alarms)

    def _fit_alarms(self) -> None:
        """Grow the alarm list (and the infusion panel beside it) into the event log until
        every alarm's message shows whole, keeping a few log lines; never below the CSS height."""
        if not self.view_ready():
            return
        middle = self.query_one("#middle")
        widget = self.query_one(AlarmList)
        chrome = widget.outer_size.height - widget.content_region.height  # its border
        # The rows from the middle row down to the footer: the alarms, the course, the log.
        room = self.default_screen.query_one(Footer).region.y - middle.region.y
        need = widget.wanted + chrome
        course_h = COURSE_PANEL_HEIGHT if self.default_screen.has_class("-tall") else 1
        # The course gives way to the alarms (the alarm list never gives way to the course).
        course = self._has_course and need <= room - MIN_LOG_HEIGHT - course_h
        self.set_class(not course, "-no-course")
        height = max(1, min(need, room - MIN_LOG_HEIGHT - (course_h if course else 0)))
        if middle.styles.height is None or middle.styles.height.value != height:
            middle.styles.height = height

    def _flash(self) -> None:
        self._flash_tick += 1
        if any(a.get("priority") in ("high", "medium") for a in self._alarms()):
            self._alarm_list()

    # -- actions ----------------------------------------------------------------------------------

    async def send(self, kind: str, **fields: Any) -> None:
        """Send one command as the nurse on shift. Raises ``CommandFailed``."""
        if not self.nurse:
            raise CommandFailed("Enter your staff id first (key u)")
        if self.link is None:
            raise CommandFailed("Not connected to the monitor")
        fields.setdefault("actor", self.nurse)
        await self.link.command(kind, **fields)

    async def _quick(self, kind: str, **fields: Any) -> None:
        try:
            await self.send(kind, **fields)
        except CommandFailed as exc:
            self.notify(f"NOT RECORDED: {exc}", severity="error", timeout=10, markup=False)

    async def action_ack(self) -> None:
        alarms = self._alarms()
        if not alarms:
            self.notify("No alarm to acknowledge", severity="warning")
            return
        alarm = alarms[min(self.selected, len(alarms) - 1)]
        if alarm.get("state") == "latched":
            await self._quick("reset", rule_id=alarm["rule_id"])
        else:
            # The occurrence the nurse saw: the daemon refuses the ack if the alarm was raised again since.
            await self._quick("ack", rule_id=alarm["rule_id"], alarm_seq=alarm.get("occurrence_seq"))

    async def action_audio_pause(self) -> None:
        await self._quick("audio_pause")

    def _selected_alarm(self) -> dict[str, Any] | None:
        alarms = self._alarms()
        return alarms[min(self.selected, len(alarms) - 1)] if alarms else None

    def overridable(self, rule_id: str) -> bool:
        """Whether the daemon accepts a physician override for this alarm (hello's list)."""
        return rule_id in self._cfg.get("overridable", [])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "override":
            alarm = self._selected_alarm()
            return alarm is not None and self.overridable(str(alarm.get("rule_id")))
        if action == "interlock_release":
            return fmt.interlock_releasable((self.snapshot or {}).get("interlock"))
        if action == "weight_check":
            return bool((self.snapshot or {}).get("weight_check"))
        return True

    def action_override(self) -> None:
        alarm = self._selected_alarm()
        if alarm is not None and self.overridable(str(alarm.get("rule_id"))):
            self.push_screen(modals.OverrideModal(str(alarm["rule_id"]), str(alarm.get("message", ""))))

    def action_interlock_release(self) -> None:
        il = (self.snapshot or {}).get("interlock")
        if fmt.interlock_releasable(il):
            self.push_screen(entries.InterlockReleaseModal(dict(il or {})))

    def action_sound_test(self) -> None:
        if self.sounder is None:
            self.notify("Sound is turned off (--no-sound): nothing to test", severity="warning")
            return
        if self.sounder.priority is not None:
            self.notify("Sound test not played: an alarm is sounding (m pauses it first)", severity="warning")
            return

        def answered(heard: bool | None) -> None:
            if heard is None:
                return
            self._unheard_at = None if heard else datetime.now(self.tz).strftime("%H:%M")
            states = ", ".join(f"{s.name} {'ok' if s.working else 'NOT WORKING: ' + s.why}"
                               for s in (self.sounder.status() if self.sounder else []))
            log.log(logging.INFO if heard else logging.WARNING, "sound test %s by %s (%s)",
                    "heard" if heard else "NOT heard", self.nurse or "?", states)
            self._local_log(f"Sound test {'heard' if heard else 'NOT HEARD'} ({states})",
                            "info" if heard else "refused")
            self.refresh_view()

        self.push_screen(SoundTestModal(), answered)

    def set_nurse(self, nurse: str) -> None:
        """The staff id every action is sent with. A change is logged here (the daemon records the
        id with each action, not the shift change itself): the journal and this screen's log."""
        before, self.nurse = self.nurse, nurse
        if before == nurse:
            return
        text = f"Staff id changed from {before} to {nurse}" if before else f"Staff id {nurse} entered"
        log.info("%s", text)
        self._local_log(text, "warning")

    def _local_log(self, text: str, style: str = "info") -> None:
        """A line in the event log from this screen itself (not recorded by the daemon)."""
        if not self.view_ready():
            return
        line = Text(f"{datetime.now(self.tz).strftime('%H:%M:%S')} ")
        line.append(text + " (this screen)", style=LOG_STYLES.get(style, ""))
        self.query_one("#events", RichLog).write(line)

    def action_weight_check(self) -> None:
        if (self.snapshot or {}).get("weight_check"):
            self.push_screen(entries.WeightCheckModal())

    def action_select(self, step: int) -> None:
        n = len(self._alarms())
        if n:
            self.selected = (self.selected + step) % n
            self._alarm_list()

    def action_sedation(self) -> None:
        self.push_screen(modals.SedationModal())

    def action_pain(self) -> None:
        self.push_screen(modals.PainModal())

    def action_effects(self) -> None:
        self.push_screen(modals.EffectsModal())

    def action_rescue(self) -> None:
        self.push_screen(modals.RescueModal())

    def action_nurse(self) -> None:
        self.push_screen(modals.NurseModal(), lambda _ok: self.refresh_view())

    def action_trend(self) -> None:
        i = TREND_WINDOWS_MIN.index(self.trend_minutes)
        self.trend_minutes = TREND_WINDOWS_MIN[(i + 1) % len(TREND_WINDOWS_MIN)]
        self.refresh_view()

    def action_request_quit(self) -> None:
        """Ask before leaving the bed without its screen; a second Ctrl+C while asking does nothing."""
        if isinstance(self.screen, modals.QuitModal):
            return

        def chosen(yes: bool | None) -> None:
            if yes:
                self.exit(0)

        self.push_screen(modals.QuitModal(), chosen)

    def action_session(self) -> None:
        def chosen(name: str | None) -> None:
            if name:
                self.push_screen(entries.session_screen(name))

        self.push_screen(modals.SessionMenu(), chosen)


# -- command line -------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=None, help="site configuration file (to find the socket)")
    p.add_argument("--socket", default=None, help="the daemon's dashboard socket (overrides the config)")
    p.add_argument("--nurse", default=None, help="staff id to record actions with (asked for if not given)")
    p.add_argument("--console", action="store_true", default=None,
                   help="Linux console mode: ASCII borders and digits (default when TERM=linux)")
    p.add_argument("--no-sound", action="store_true",
                   help="no alarm sound from this screen (it then shows NO ALARM SOUND)")
    p.add_argument("--buzzer-pin", type=int, default=None, help="GPIO (BCM) pin of an active buzzer")


def main(args: argparse.Namespace) -> int:
    socket_path = args.socket
    if socket_path is None:
        from monitord.config import ConfigError, load_config

        try:
            socket_path = load_config(args.config).dashboard.socket
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
    console = args.console if args.console is not None else os.environ.get("TERM") == "linux"
    app = DashboardApp(socket_path, nurse=args.nurse, console=console, sound=not args.no_sound,
                       buzzer_pin=args.buzzer_pin)
    app.run()
    return 0
