"""Whether this bedside can sound an alarm, in words for the NO ALARM SOUND banner, and the sound
self-test (key ``b``): every priority's pattern once through every output, then the nurse says
whether she heard it. A test that was not heard counts as no sound until one is."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from monitord.buzzer import PATTERNS, AlarmSounder, OutputState
from monitord.dashboard.widgets import AlarmStrip, Dialog, plain

if TYPE_CHECKING:
    from monitord.dashboard.app import DashboardApp

PRIORITY_WORDS = {"high": "HIGH", "medium": "MEDIUM", "low": "LOW"}


def sound_problem(sounder: AlarmSounder | None, unheard_at: str | None) -> str:
    """Why there is no alarm sound here (empty when there is, as far as the dashboard can tell)."""
    if sounder is None:
        return "sound turned off (--no-sound)"
    if unheard_at is not None:
        return f"the sound test at {unheard_at} was not heard"
    states = sounder.status()
    if not any(s.working for s in states):
        return "; ".join(f"{s.name}: {s.why}" for s in states) or "no sound output"
    return ""


def heard_question() -> str:
    counts = ", then ".join(f"{PATTERNS[p].pulses}" for p in ("high", "medium", "low"))
    return f"Did you hear three bursts of beeps ({counts})?"


def result_lines(states: list[OutputState]) -> list[str]:
    return [f"{s.name}: " + ("played high, medium, low" if s.working else f"NOT WORKING: {s.why}") for s in states]


class SoundTestModal(Dialog, ModalScreen[bool | None]):
    """Plays the self-test and asks whether it was heard: ``y`` heard, ``n`` not heard."""

    BINDINGS = [
        Binding("y", "answer(True)", "Heard"),
        Binding("n", "answer(False)", "Not heard"),
        Binding("escape", "answer(None)", "Cancel"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.done = False

    @property
    def dash(self) -> DashboardApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield AlarmStrip()
            yield Static(plain("Sound test: every alarm pattern through every sound output"), classes="dialog-title")
            yield Static("", id="step", markup=False)
            yield Static("", id="result", markup=False)
            yield Static(plain("Esc: cancel"), id="hint", classes="dialog-hint")
        yield Footer()

    def on_mount(self) -> None:
        self.play()

    def _say(self, wid: str, text: str) -> None:
        self.query_one(f"#{wid}", Static).update(plain(text))

    def _step(self, priority: str) -> None:
        p = PATTERNS[priority]
        self._say("step", f"Playing {PRIORITY_WORDS[priority]}: {p.pulses} beep{'s' if p.pulses > 1 else ''}")

    @work(exclusive=True, group="sound-test")
    async def play(self) -> None:
        sounder = self.dash.sounder
        if sounder is None:
            self._say("step", "Sound is turned off (--no-sound): nothing to test")
            return
        states = await sounder.self_test(self._step)
        self.done = True
        self._say("step", heard_question())
        self._say("result", "\n".join(result_lines(states)))
        self._say("hint", "y: heard   n: not heard   Esc: cancel")

    def action_answer(self, heard: Any) -> None:
        if heard is None or self.done:
            self.workers.cancel_group(self, "sound-test")
            self.dismiss(heard)
