"""Entry screens of the course and the pump stop interlock: releasing the interlock, checking a
weight, the discharge score, the escort, a hand-given bolus and the controlled-drug record.
Like the other entry screens (``modals``) each sends its command through the app and closes only
when the daemon accepted it; a refusal stays on screen in the daemon's words."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label, Select, Static

from monitord.dashboard import format as fmt
from monitord.dashboard import modals
from monitord.dashboard.modals import EntryError, EntryModal
from monitord.dashboard.widgets import plain
from monitord.intent import ACTOR_RE, RESERVED_ACTORS

STAFF_ID_RULE = "1-64 letters, digits, spaces or . _ @ / - (starting with a letter or digit)"


def staff_id(value: str, who: str) -> str:
    """A staff id checked against the daemon's rule (docs/events.md) before anything is sent."""
    if not value:
        raise EntryError(f"Enter {who}")
    if not ACTOR_RE.match(value) or value.lower() in RESERVED_ACTORS:
        raise EntryError(f"{who.capitalize()}: {STAFF_ID_RULE}")
    return value


class InterlockReleaseModal(EntryModal):
    """Release the pump stop interlock at the bedside: who releases it and why. Releasing re-arms
    the interlock; the pump is restarted at the pump, never by the daemon."""

    HEADING = "Release the pump stop interlock"

    def __init__(self, interlock: dict[str, Any]) -> None:
        super().__init__()
        self.interlock = interlock

    def fields(self) -> ComposeResult:
        il = self.interlock
        yield Static(plain(fmt.interlock_banner(il) or f"Interlock {il.get('phase')}"), classes="dialog-warning")
        yield Static(plain("Releasing re-arms the interlock. It does not restart the pump: restart it at the pump "
                           "once the patient is safe."))
        yield Input(self.dash.nurse or "", placeholder="your staff id", id="staff")
        yield Input(placeholder="reason (what was done, how the patient is now)", id="reason")

    def on_mount(self) -> None:
        self.query_one("#reason", Input).focus()

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        actor = staff_id(self.text("staff"), "your staff id")
        reason = self.text("reason")
        if not reason:
            raise EntryError("Enter the reason for releasing the interlock")
        return [("interlock_release", {"actor": actor, "reason": reason})]


class WeightCheckModal(EntryModal):
    """The daemon doubts the weight (pounds? far from the last recorded one?): confirm it as it
    is, or correct it. Either is recorded with the nurse's id (``confirm_weight``)."""

    HEADING = "Check the patient's weight"

    def fields(self) -> ComposeResult:
        snap = self.dash.snapshot or {}
        warning = snap.get("weight_check") or "No weight check is pending"
        yield Static(plain(warning), classes="dialog-warning")
        weight = (snap.get("patient") or {}).get("weight_kg")
        yield Label(plain(f"Weight entered: {fmt.amount(weight)} kg. Keep it to confirm, or type the right one."))
        yield Input(fmt.amount(weight) if weight is not None else "", placeholder="weight, kg", id="weight",
                    type="number")

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        return [("confirm_weight", {"weight_kg": self.number("weight", "the weight in kg")})]


# The five items of each post-anaesthesia discharge score, 0-2 points each (course-care.md s3).
SCORE_ITEMS: dict[str, list[tuple[str, str]]] = {
    # PADSS, Chung et al. 1995
    "padss": [("vital_signs", "vital signs"), ("activity", "activity (ambulation)"),
              ("nausea_vomiting", "nausea and vomiting"), ("pain", "pain"), ("bleeding", "surgical bleeding")],
    # modified Aldrete score, Aldrete 1995
    "aldrete": [("activity", "activity"), ("respiration", "respiration"), ("circulation", "circulation"),
                ("consciousness", "consciousness"), ("oxygen_saturation", "oxygen saturation")],
}
SCALE_NAMES = {"padss": "PADSS (Chung 1995)", "aldrete": "modified Aldrete (Aldrete 1995)"}


class DischargeScoreModal(EntryModal):
    """A PADSS or modified Aldrete score: the five items, 0-2 each, stored item by item."""

    HEADING = "Discharge score: five items, 0, 1 or 2 points each"

    def fields(self) -> ComposeResult:
        yield Select([(Text(name), scale) for scale, name in SCALE_NAMES.items()], value="padss", allow_blank=False,
                     id="scale")
        # One line per item, its name beside its field (a placeholder would vanish once typed in).
        for i in range(5):
            with Horizontal(classes="score-item"):
                yield Label("", id=f"label{i}", classes="score-label")
                yield Input(placeholder="0-2", id=f"item{i}", type="integer", max_length=1, compact=True)

    def on_mount(self) -> None:
        self._label_items("padss")
        self.query_one("#item0", Input).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self._label_items(event.value)

    def _label_items(self, scale: str) -> None:
        for i, (_, label) in enumerate(SCORE_ITEMS[scale]):
            self.query_one(f"#label{i}", Label).update(plain(f"{label}: 0, 1 or 2"))

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        scale = str(self.query_one("#scale", Select).value)
        items = {}
        for i, (key, label) in enumerate(SCORE_ITEMS[scale]):
            points = self.number(f"item{i}", f"{label} (0, 1 or 2)", integer=True)
            if not 0 <= points <= 2:
                raise EntryError(f"{label.capitalize()}: 0, 1 or 2 points")
            items[key] = points
        return [("discharge_score", {"scale": scale, "items": items})]


class EscortModal(EntryModal):
    """A responsible adult will take the patient home."""

    HEADING = "Escort: a responsible adult takes the patient home"

    def fields(self) -> ComposeResult:
        yield Input(placeholder="escort's name or relation (optional)", id="name", max_length=64)

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        return [("escort", {"name": self.text("name")})]


class HandBolusModal(EntryModal):
    """Ketamine given by hand, not through the monitored pump: it counts in the total, the bolus
    window and the plasma-concentration model estimate."""

    HEADING = "Ketamine given by hand (not through the pump)"

    def fields(self) -> ComposeResult:
        yield Input(placeholder="dose, mg", id="dose", type="number")
        yield Select([(Text(r), r) for r in modals.ROUTES], value="IV", allow_blank=False, id="route")
        yield Input(placeholder="note (optional)", id="note")

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        return [("manual_bolus", {"dose_mg": self.number("dose", "the dose in mg"),
                                  "route": str(self.query_one("#route", Select).value), "note": self.text("note")})]


CONTROLLED_ACTIONS = [("dispensed", "dispensed (a syringe drawn up)"), ("wasted", "wasted (discarded)"),
                      ("close", "close the record (it must add up)")]


class ControlledDrugModal(EntryModal):
    """The controlled-drug record: dispensed and wasted volumes with a witness, and its closing,
    which the daemon refuses while the amounts do not add up."""

    HEADING = "Controlled-drug record (ketamine)"

    @staticmethod
    def balance(snap: dict[str, Any]) -> str:
        rec = snap.get("controlled_record") or {}
        if not rec:
            return "No record yet (admit the patient first)"
        return (f"Record {'closed' if rec.get('closed') else 'open'}: dispensed {fmt.amount(rec.get('dispensed_mg'))} mg, "
                f"infused {fmt.amount(rec.get('infused_mg'))} mg, wasted {fmt.amount(rec.get('wasted_mg'))} mg, "
                f"unaccounted {fmt.amount(rec.get('unaccounted_mg'))} mg")

    def fields(self) -> ComposeResult:
        yield Static(plain(self.balance(self.dash.snapshot or {})), id="balance")
        yield Select([(Text(label), action) for action, label in CONTROLLED_ACTIONS], value="dispensed",
                     allow_blank=False, id="action")
        yield Input(placeholder="volume, mL (not for close)", id="volume", type="number")
        yield Input(placeholder="witness staff id (a second person)", id="witness")

    def on_mount(self) -> None:
        self.query_one("#volume", Input).focus()

    def snapshot_changed(self, snap: dict[str, Any]) -> None:
        """The record as the daemon has it now (the pump keeps infusing while the screen is open)."""
        self.query_one("#balance", Static).update(plain(self.balance(snap)))

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        action = str(self.query_one("#action", Select).value)
        fields: dict[str, Any] = {"action": action, "witness": staff_id(self.text("witness"), "the witness's staff id")}
        if action != "close":
            fields["volume_ml"] = self.number("volume", "the volume in mL")
        return [("controlled", fields)]


SCREENS: dict[str, type[EntryModal]] = {
    "weight": WeightCheckModal,
    "score": DischargeScoreModal,
    "escort": EscortModal,
    "bolus": HandBolusModal,
    "controlled": ControlledDrugModal,
}


def session_screen(name: str) -> EntryModal:
    """The entry screen for an infusion menu item."""
    screen = SCREENS.get(name)
    return screen() if screen is not None else modals.session_screen(name)

