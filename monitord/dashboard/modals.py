"""Entry screens. Each collects fields, sends its command(s) through the app and closes only
when the daemon accepted them; a refusal is shown in the screen, in the daemon's words. When
the daemon asks for confirmation (a dose above the monitored-setting threshold or the soft
limit, a weight that may be wrong), ``ConfirmEntryModal`` shows what it computed and the entry
is sent again with ``confirm`` only after the nurse's explicit yes. Every text that comes from
outside (ids, messages, the site's checklist) is shown as plain text, never as markup."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Select, Static

from monitord.dashboard import format as fmt
from monitord.dashboard.widgets import AlarmStrip, Dialog, YesNoList, plain
from monitord.intent import ACTOR_RE, RESERVED_ACTORS
from monitord.link.client import CommandFailed, NeedsConfirmation

if TYPE_CHECKING:
    from monitord.dashboard.app import DashboardApp

ROUTES = ["IV", "IM", "PO", "SL", "IN", "SC"]
# Commands the daemon may ask to have confirmed (sent again with ``confirm: true``).
CONFIRMABLE = frozenset({"admit", "order", "start"})
SEVERITIES = ("mild", "moderate", "severe")


class EntryError(ValueError):
    """An entry the screen itself can tell is incomplete (nothing was sent)."""


class EntryModal(Dialog, ModalScreen[bool]):
    """Base: title, fields, an error line; Enter in a field or Ctrl+S saves, Esc cancels."""

    HEADING = ""
    HINT = "Enter: save   Esc: cancel"
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save", priority=True),
    ]

    @property
    def heading(self) -> str:
        return self.HEADING

    @property
    def dash(self) -> DashboardApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        box = VerticalScroll(classes="dialog")
        box.can_focus = False  # focus goes to the first field
        with box:
            yield AlarmStrip()
            yield Label(plain(self.heading), classes="dialog-title")
            yield from self.fields()
            yield Static("", id="error", classes="dialog-error", markup=False)
            yield Label(plain(self.HINT), classes="dialog-hint")
        yield Footer()

    def fields(self) -> ComposeResult:
        yield from ()

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        """What to send, in order. Raise ``EntryError`` for an entry that is not complete."""
        return []

    def show_error(self, text: str) -> None:
        err = self.query_one("#error", Static)
        err.update(plain(text))
        err.set_class(bool(text), "-shown")

    async def action_save(self) -> None:
        try:
            todo = self.commands()
        except EntryError as exc:
            self.show_error(str(exc))
            return
        await self.send_all(todo)

    async def send_all(self, todo: list[tuple[str, dict[str, Any]]]) -> None:
        """Send in order; stop at the first refusal. A command the daemon wants confirmed is
        shown with what it computed and, on the nurse's yes, sent again with ``confirm``."""
        for i, (kind, fields) in enumerate(todo):
            try:
                await self.dash.send(kind, **fields)
            except NeedsConfirmation as exc:
                if kind not in CONFIRMABLE or fields.get("confirm"):
                    self.show_error(f"NOT RECORDED: {exc}")
                    return
                self.ask_confirmation(kind, str(exc), exc.preview, [(kind, {**fields, "confirm": True}), *todo[i + 1:]])
                return
            except CommandFailed as exc:
                self.show_error(f"NOT RECORDED: {exc}")
                return
        self.dismiss(True)

    def ask_confirmation(self, kind: str, message: str, preview: dict[str, Any],
                         then: list[tuple[str, dict[str, Any]]]) -> None:
        async def answered(yes: bool | None) -> None:
            if yes:
                self.show_error("")
                await self.send_all(then)
            else:
                self.show_error(f"NOT RECORDED (not confirmed): {message}")

        self.app.push_screen(ConfirmEntryModal(kind, message, preview), answered)

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        await self.action_save()

    def action_cancel(self) -> None:
        self.dismiss(False)

    # -- field helpers ------------------------------------------------------------------------

    def text(self, wid: str) -> str:
        return self.query_one(f"#{wid}", Input).value.strip()

    def number(self, wid: str, what: str, integer: bool = False, default: float | None = None) -> Any:
        raw = self.text(wid)
        if not raw and default is not None:
            return default
        try:
            return int(raw) if integer else float(raw)
        except ValueError:
            raise EntryError(f"Enter {what} as a {'whole ' if integer else ''}number") from None


class NurseModal(EntryModal):
    HEADING = "Staff id (recorded with every action this shift)"

    def fields(self) -> ComposeResult:
        yield Input(self.dash.nurse or "", placeholder="e.g. RN1234", id="nurse")

    async def action_save(self) -> None:
        nurse = self.text("nurse")
        if not nurse:
            self.show_error("Enter your staff id")
            return
        # The daemon's own rule for ids (docs/events.md): refuse here, before any action is lost.
        if not ACTOR_RE.match(nurse) or nurse.lower() in RESERVED_ACTORS:
            self.show_error("Staff id: 1-64 letters, digits, spaces or . _ @ / - (starting with a letter or digit)")
            return
        self.dash.set_nurse(nurse)
        self.dismiss(True)


class SedationModal(EntryModal):
    HEADING = "Sedation score"

    def fields(self) -> ComposeResult:
        yield Select([(Text("RASS (+4 .. -5)"), "rass"), (Text("POSS (S=0, 1 .. 4)"), "poss")],
                     value=self.dash.sedation_scale,
                     allow_blank=False, id="scale")
        yield Input(placeholder="score, e.g. -1 (RASS) or 2 (POSS)", id="score", type="integer")

    def on_mount(self) -> None:
        self.query_one("#score", Input).focus()

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        scale = str(self.query_one("#scale", Select).value)
        self.dash.sedation_scale = scale
        return [("sedation", {"scale": scale, "score": self.number("score", "the score", integer=True)})]


class PainModal(EntryModal):
    HEADING = "Pain score (numeric rating 0-10)"

    def fields(self) -> ComposeResult:
        yield Input(placeholder="0 = no pain, 10 = worst imaginable", id="score", type="integer")

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        return [("pain", {"score": self.number("score", "the pain score", integer=True)})]


class EffectsModal(EntryModal):
    HEADING = "Psychomimetic / side effects seen now (Space toggles; none = resolved)"
    HINT = "Space: toggle   Tab: severity, note   Ctrl+S or Enter in note: save   Esc: cancel"

    def fields(self) -> ComposeResult:
        snap = self.dash.snapshot or {}
        current = set(snap.get("effects", []))
        yield YesNoList([(fmt.words(e), e, e in current) for e in self.dash.effect_names], id="effects",
                        ascii_only=self.dash.console_mode)
        severity = snap.get("effects_severity") if snap.get("effects_severity") in SEVERITIES else "mild"
        yield Select([(Text(f"severity: {s}"), s) for s in SEVERITIES], value=severity, allow_blank=False,
                     id="severity")
        yield Input(placeholder="note (optional)", id="note")

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        chosen = list(self.query_one("#effects", YesNoList).selected)
        return [("effects", {"effects": chosen, "severity": str(self.query_one("#severity", Select).value),
                             "note": self.text("note")})]


class RescueModal(EntryModal):
    HEADING = "Rescue medication given"

    def fields(self) -> ComposeResult:
        drugs = self.dash.rescue_medications
        yield Select([(Text(d), d) for d in drugs], value=drugs[0] if drugs else Select.NULL, allow_blank=not drugs,
                     id="drug")
        yield Input(placeholder="dose, mg", id="dose", type="number")
        yield Select([(Text(r), r) for r in ROUTES], value="IV", allow_blank=False, id="route")

    def on_mount(self) -> None:
        self.query_one("#dose", Input).focus()

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        drug = self.query_one("#drug", Select).value
        if not isinstance(drug, str):
            raise EntryError("Choose the drug")
        return [("rescue", {"drug": drug, "dose_mg": self.number("dose", "the dose in mg"),
                            "route": str(self.query_one("#route", Select).value)})]


class AdmitModal(EntryModal):
    HEADING = "Admit patient"

    def fields(self) -> ComposeResult:
        yield Input(placeholder="patient id", id="patient")
        yield Input(placeholder="weight, kg", id="weight", type="number")
        yield Input(placeholder="age, years", id="age", type="integer")
        yield YesNoList([("significant comorbidity (stricter dose limits)", "comorbid", False)], id="flags",
                        ascii_only=self.dash.console_mode)

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        pid = self.text("patient")
        if not pid:
            raise EntryError("Enter the patient id")
        return [("admit", {"patient_id": pid, "weight_kg": self.number("weight", "the weight in kg"),
                           "age_years": self.number("age", "the age", integer=True),
                           "comorbid": "comorbid" in self.query_one("#flags", YesNoList).selected})]


class OrderModal(EntryModal):
    HEADING = "Infusion order"

    def fields(self) -> ComposeResult:
        drug = self.dash.drug
        concs = drug.get("concentrations_mg_ml", [])
        yield Label(plain(f"Drug: {drug.get('name', 'ketamine')}"))
        yield Select([(Text(f"{c:g} mg/mL"), c) for c in concs], value=concs[0] if concs else Select.NULL,
                     allow_blank=not concs, id="conc")
        yield Input(placeholder="rate, mL/h", id="rate", type="number")
        yield Input(placeholder="bolus, mg (0 or blank: none)", id="bolus", type="number")
        yield Input(placeholder="planned duration, min (e.g. 240; blank: no plan)", id="duration", type="number")
        sizes = drug.get("syringe_sizes_ml", [])
        yield Select([(Text(f"{s:g} mL syringe"), s) for s in sizes], prompt="syringe (optional)", id="syringe")

    def on_mount(self) -> None:
        self.query_one("#rate", Input).focus()

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        conc = self.query_one("#conc", Select).value
        if not isinstance(conc, int | float):
            raise EntryError("Choose the concentration")
        syringe = self.query_one("#syringe", Select).value
        return [("order", {
            "drug": self.dash.drug.get("name", "ketamine"),
            "concentration_mg_ml": float(conc),
            "rate_ml_h": self.number("rate", "the rate in mL/h"),
            "bolus_mg": self.number("bolus", "the bolus in mg", default=0.0),
            "syringe_ml": float(syringe) if isinstance(syringe, int | float) else None,
            "planned_duration_min": self.number("duration", "the planned duration in minutes") if self.text("duration")
            else None,
        })]


class ChecklistModal(EntryModal):
    HEADING = "Pre-infusion checklist: mark YES every item that applies; the rest are recorded no"
    HINT = "Space: yes/no   Tab: next field   Ctrl+S: save   Esc: cancel"

    def fields(self) -> ComposeResult:
        answers = (self.dash.snapshot or {}).get("checklist", {})
        items = self.dash.checklist
        yield YesNoList(
            [(("[C] " if c["kind"] == "contraindication" else "[?] ") + c["text"], c["id"], bool(answers.get(c["id"])))
             for c in items],
            id="items", ascii_only=self.dash.console_mode,
        )
        yield Label(plain("[C] contraindication: a yes needs a physician override"))
        with Vertical(id="override"):
            yield Input(placeholder="physician id (override)", id="physician")
            yield Input(placeholder="override reason", id="reason")

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        chosen = set(self.query_one("#items", YesNoList).selected)
        answers = {c["id"]: c["id"] in chosen for c in self.dash.checklist}
        todo: list[tuple[str, dict[str, Any]]] = [("checklist", {"answers": answers})]
        contra = [c["id"] for c in self.dash.checklist if c["kind"] == "contraindication" and answers[c["id"]]]
        if contra:
            physician, reason = self.text("physician"), self.text("reason")
            if not physician or not reason:
                raise EntryError("A yes to a contraindication needs a physician override: enter the physician's id and the reason")
            already = (self.dash.snapshot or {}).get("overrides", {})
            for cid in contra:
                if f"checklist.{cid}" not in already:
                    todo.append(("override", {"rule_id": f"checklist.{cid}", "reason": reason, "actor": physician,
                                              "entered_by": self.dash.nurse or ""}))
        return todo


class OverrideModal(EntryModal):
    """A physician's override of the selected alarm's soft limit: the physician decides (actor),
    the nurse on shift types it (entered_by)."""

    def __init__(self, rule_id: str, message: str) -> None:
        super().__init__()
        self.rule_id = rule_id
        self.message = message

    @property
    def heading(self) -> str:
        return f"Physician override of {self.rule_id}"

    def fields(self) -> ComposeResult:
        yield Label(plain(self.message))
        yield Input(placeholder="physician id (who decided)", id="physician")
        yield Input(placeholder="reason", id="reason")

    def on_mount(self) -> None:
        self.query_one("#physician", Input).focus()

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        physician, reason = self.text("physician"), self.text("reason")
        if not physician or not reason:
            raise EntryError("An override needs the physician's id and the reason")
        return [("override", {"rule_id": self.rule_id, "reason": reason, "actor": physician,
                              "entered_by": self.dash.nurse or ""})]


class ReasonModal(EntryModal):
    """Pause or stop: a reason is optional but recorded."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    @property
    def heading(self) -> str:
        return f"{self.kind.capitalize()} the infusion"

    def fields(self) -> ComposeResult:
        yield Input(placeholder="reason (optional)", id="reason")

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        return [(self.kind, {"reason": self.text("reason")})]


class ConfirmModal(EntryModal):
    """A yes/no before an action with no fields (start, resume, baseline)."""

    HINT = "Enter or y: confirm   Esc or n: cancel"
    BINDINGS = [
        Binding("enter,y", "save", "Confirm", priority=True),
        Binding("escape,n", "cancel", "Cancel"),
    ]

    def __init__(self, kind: str, question: str) -> None:
        super().__init__()
        self.kind = kind
        self.question = question

    @property
    def heading(self) -> str:
        return self.question

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        return [(self.kind, {})]


class DischargeModal(EntryModal):
    """The daemon's discharge criteria, each marked MET or NOT MET in words, and the reason the
    daemon requires when one is not met."""

    HEADING = "Discharge the patient from this bed"

    @staticmethod
    def lines(snap: dict[str, Any]) -> list[str]:
        criteria = (snap.get("discharge") or {}).get("criteria") or []
        return [f"{'MET    ' if c.get('met') else 'NOT MET'}  {fmt.words(c.get('id'))}"
                + (f": {c['detail']}" if c.get("detail") else "") for c in criteria]

    @staticmethod
    def placeholder(snap: dict[str, Any]) -> str:
        ready = bool((snap.get("discharge") or {}).get("ready"))
        return "reason (optional)" if ready else "reason (required: a criterion is not met)"

    def fields(self) -> ComposeResult:
        snap = self.dash.snapshot or {}
        for line in self.lines(snap):
            yield Static(plain(line), classes="criterion")
        yield Input(placeholder=self.placeholder(snap), id="reason")

    def snapshot_changed(self, snap: dict[str, Any]) -> None:
        """The criteria as the daemon sees them now (the screen stays open while they change)."""
        shown = list(self.query(".criterion").results(Static))
        reason = self.query_one("#reason", Input)
        for i, line in enumerate(self.lines(snap)):
            if i < len(shown):
                shown[i].update(plain(line))
            else:
                reason.parent.mount(Static(plain(line), classes="criterion"), before=reason)  # type: ignore[union-attr]
        for extra in shown[len(self.lines(snap)):]:
            extra.remove()
        reason.placeholder = self.placeholder(snap)

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        return [("discharge", {"reason": self.text("reason")})]


class ConfirmEntryModal(Dialog, ModalScreen[bool]):
    """What the daemon computed for an entry it wants confirmed: dose in mg/kg/h and mg/h and
    the care-area verdict, or the weight and the one it was checked against. Only ``y``
    confirms: an Enter pressed out of habit must not record it."""

    TITLES: ClassVar[dict[str, str]] = {"order": "Confirm the order", "start": "Confirm the start of the infusion",
                                        "admit": "Confirm the weight"}
    BINDINGS = [
        Binding("y", "answer(True)", "Confirm"),
        Binding("n,escape", "answer(False)", "Back to the entry"),
    ]

    def __init__(self, kind: str, message: str, preview: dict[str, Any]) -> None:
        super().__init__()
        self.kind = kind
        self.message = message
        self.preview = preview

    def lines(self) -> list[str]:
        p = self.preview
        if "dose_mg_kg_h" in p:
            out = [f"Dose       {fmt.amount(p['dose_mg_kg_h'])} mg/kg/h   ({fmt.amount(p.get('dose_mg_h'))} mg/h)"]
            if p.get("bolus_mg_kg"):
                out.append(f"Bolus      {fmt.amount(p['bolus_mg_kg'])} mg/kg")
            out.append(f"Care area  {p.get('care_area') or '?'}")
            out.append(f"Verdict    {p.get('verdict') or '?'}")
            return out
        if "weight_kg" in p:
            out = [f"Weight entered        {fmt.amount(p['weight_kg'])} kg"]
            if p.get("previous_weight_kg") is not None:
                out.append(f"Last recorded weight  {fmt.amount(p['previous_weight_kg'])} kg")
            return out
        return []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield AlarmStrip()
            yield Static(plain(self.TITLES.get(self.kind, "Confirm")), classes="dialog-title")
            for line in self.lines():
                yield Static(plain(line), classes="confirm-line")
            yield Static(plain(self.message), classes="confirm-message")
            yield Static(plain("y: confirm and record   n or Esc: back to the entry"), classes="dialog-hint")
        yield Footer()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class QuitModal(Dialog, ModalScreen[bool]):
    """Ctrl+C asks: quitting leaves the bed without this screen and its alarm sound."""

    BINDINGS = [
        Binding("y", "answer(True)", "Quit"),
        Binding("n,escape", "answer(False)", "Stay"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield AlarmStrip()
            yield Static(plain("Quit the bedside dashboard?"), classes="dialog-title")
            yield Static(plain("The daemon keeps monitoring, but this screen and its alarm sound stop until the "
                               "dashboard is started again."))
            yield Static(plain("y: quit   n or Esc: stay"), classes="dialog-hint")
        yield Footer()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


SESSION_ACTIONS = [
    ("a", "admit", "Admit patient"),
    ("o", "order", "Order (concentration, rate, bolus, planned duration)"),
    ("c", "checklist", "Pre-infusion checklist"),
    ("b", "baseline", "Capture baseline vitals"),
    ("s", "start", "Start infusion"),
    ("p", "pause", "Pause infusion"),
    ("r", "resume", "Resume infusion"),
    ("x", "stop", "Stop infusion"),
    ("h", "bolus", "Hand bolus (ketamine not given through the pump)"),
    ("g", "controlled", "Controlled-drug record (dispensed, wasted, close)"),
    ("w", "weight", "Confirm or correct the weight"),
    ("k", "score", "Discharge score (PADSS / Aldrete)"),
    ("e", "escort", "Escort confirmed"),
    ("d", "discharge", "Discharge"),
]


class SessionMenu(Dialog, ModalScreen[str | None]):
    """The infusion's life cycle, one key each."""

    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("escape", "pick(None)", "Close"),
        *(Binding(key, f"pick('{name}')", label) for key, name, label in SESSION_ACTIONS),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield AlarmStrip()
            yield Label(plain("Infusion"), classes="dialog-title")
            for key, _name, label in SESSION_ACTIONS:
                yield Label(plain(f" {key}  {label}"))
            yield Label(plain("Esc: close"), classes="dialog-hint")
        yield Footer()

    def action_pick(self, name: str | None) -> None:
        self.dismiss(name)


def session_screen(name: str) -> EntryModal:
    return {
        "admit": AdmitModal,
        "order": OrderModal,
        "checklist": ChecklistModal,
        "discharge": DischargeModal,
    }.get(name, lambda: _simple(name))()


def _simple(name: str) -> EntryModal:
    if name in ("pause", "stop"):
        return ReasonModal(name)
    question = {
        "baseline": "Capture the current vitals as the pre-infusion baseline?",
        "start": "Start the infusion (the pump must be started on the pump)?",
        "resume": "Resume the infusion?",
    }[name]
    return ConfirmModal(name, question)
