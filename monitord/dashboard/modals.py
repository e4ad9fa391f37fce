"""Entry screens. Each collects fields, sends its command(s) through the app and closes only
when the daemon accepted them; a refusal is shown in the screen, in the daemon's words."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Select, SelectionList, Static

from monitord.link.client import CommandFailed

if TYPE_CHECKING:
    from monitord.dashboard.app import DashboardApp

ROUTES = ["IV", "IM", "PO", "SL", "IN", "SC"]


class EntryError(ValueError):
    """An entry the screen itself can tell is incomplete (nothing was sent)."""


class EntryModal(ModalScreen[bool]):
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
            yield Label(self.heading, classes="dialog-title")
            yield from self.fields()
            yield Static("", id="error", classes="dialog-error")
            yield Label(self.HINT, classes="dialog-hint")
        yield Footer()

    def fields(self) -> ComposeResult:
        yield from ()

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        """What to send, in order. Raise ``EntryError`` for an entry that is not complete."""
        return []

    def show_error(self, text: str) -> None:
        err = self.query_one("#error", Static)
        err.update(text)
        err.set_class(bool(text), "-shown")

    async def action_save(self) -> None:
        try:
            todo = self.commands()
        except EntryError as exc:
            self.show_error(str(exc))
            return
        for kind, fields in todo:
            try:
                await self.dash.send(kind, **fields)
            except CommandFailed as exc:
                self.show_error(f"NOT RECORDED: {exc}")
                return
        self.dismiss(True)

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
        self.dash.nurse = nurse
        self.dismiss(True)


class SedationModal(EntryModal):
    HEADING = "Sedation score"

    def fields(self) -> ComposeResult:
        yield Select([("RASS (+4 .. -5)", "rass"), ("POSS (S=0, 1 .. 4)", "poss")], value=self.dash.sedation_scale,
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
    HINT = "Space: toggle   Tab: note   Ctrl+S or Enter in note: save   Esc: cancel"

    def fields(self) -> ComposeResult:
        current = set((self.dash.snapshot or {}).get("effects", []))
        yield SelectionList[str](*[(e.replace("_", " "), e, e in current) for e in self.dash.effect_names], id="effects")
        yield Input(placeholder="note (optional)", id="note")

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        chosen = list(self.query_one("#effects", SelectionList).selected)
        return [("effects", {"effects": chosen, "note": self.text("note")})]


class RescueModal(EntryModal):
    HEADING = "Rescue medication given"

    def fields(self) -> ComposeResult:
        drugs = self.dash.rescue_medications
        yield Select([(d, d) for d in drugs], value=drugs[0] if drugs else Select.NULL, allow_blank=not drugs, id="drug")
        yield Input(placeholder="dose, mg", id="dose", type="number")
        yield Select([(r, r) for r in ROUTES], value="IV", allow_blank=False, id="route")

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
        yield SelectionList[str](("significant comorbidity (stricter dose limits)", "comorbid"), id="flags")

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        pid = self.text("patient")
        if not pid:
            raise EntryError("Enter the patient id")
        return [("admit", {"patient_id": pid, "weight_kg": self.number("weight", "the weight in kg"),
                           "age_years": self.number("age", "the age", integer=True),
                           "comorbid": "comorbid" in self.query_one("#flags", SelectionList).selected})]


class OrderModal(EntryModal):
    HEADING = "Infusion order"

    def fields(self) -> ComposeResult:
        drug = self.dash.drug
        concs = drug.get("concentrations_mg_ml", [])
        yield Label(f"Drug: {drug.get('name', 'ketamine')}")
        yield Select([(f"{c:g} mg/mL", c) for c in concs], value=concs[0] if concs else Select.NULL,
                     allow_blank=not concs, id="conc")
        yield Input(placeholder="rate, mL/h", id="rate", type="number")
        yield Input(placeholder="bolus, mg (0 or blank: none)", id="bolus", type="number")
        sizes = drug.get("syringe_sizes_ml", [])
        yield Select([(f"{s:g} mL syringe", s) for s in sizes], prompt="syringe (optional)", id="syringe")

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
        })]


class ChecklistModal(EntryModal):
    HEADING = "Pre-infusion checklist: select every item that applies (yes)"
    HINT = "Space: yes/no   Tab: next field   Ctrl+S: save   Esc: cancel"

    def fields(self) -> ComposeResult:
        answers = (self.dash.snapshot or {}).get("checklist", {})
        items = self.dash.checklist
        yield SelectionList[str](
            *[(("[C] " if c["kind"] == "contraindication" else "[?] ") + c["text"], c["id"], bool(answers.get(c["id"])))
              for c in items],
            id="items",
        )
        yield Label("[C] contraindication: a yes needs a physician override")
        with Vertical(id="override"):
            yield Input(placeholder="physician id (override)", id="physician")
            yield Input(placeholder="override reason", id="reason")

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        chosen = set(self.query_one("#items", SelectionList).selected)
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
        yield Label(self.message)
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
    """A yes/no before an action with no fields (start, resume, baseline, discharge)."""

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


SESSION_ACTIONS = [
    ("a", "admit", "Admit patient"),
    ("o", "order", "Order (concentration, rate, bolus)"),
    ("c", "checklist", "Pre-infusion checklist"),
    ("b", "baseline", "Capture baseline vitals"),
    ("s", "start", "Start infusion"),
    ("p", "pause", "Pause infusion"),
    ("r", "resume", "Resume infusion"),
    ("x", "stop", "Stop infusion"),
    ("d", "discharge", "Discharge"),
]


class SessionMenu(ModalScreen[str | None]):
    """The infusion's life cycle, one key each."""

    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("escape", "pick(None)", "Close"),
        *(Binding(key, f"pick('{name}')", label) for key, name, label in SESSION_ACTIONS),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Infusion", classes="dialog-title")
            for key, _name, label in SESSION_ACTIONS:
                yield Label(f" {key}  {label}")
            yield Label("Esc: close", classes="dialog-hint")
        yield Footer()

    def action_pick(self, name: str | None) -> None:
        self.dismiss(name)


def session_screen(name: str) -> EntryModal:
    return {
        "admit": AdmitModal,
        "order": OrderModal,
        "checklist": ChecklistModal,
    }.get(name, lambda: _simple(name))()


def _simple(name: str) -> EntryModal:
    if name in ("pause", "stop"):
        return ReasonModal(name)
    question = {
        "baseline": "Capture the current vitals as the pre-infusion baseline?",
        "start": "Start the infusion (the pump must be started on the pump)?",
        "resume": "Resume the infusion?",
        "discharge": "Discharge the patient from this bed?",
    }[name]
    return ConfirmModal(name, question)
