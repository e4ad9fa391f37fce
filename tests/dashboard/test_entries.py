"""The course's entry screens driven by keys against a real engine: the weight check, the
discharge score (PADSS and modified Aldrete, item by item), the escort, ketamine given by hand and
the controlled-drug record with its witness. Each must reach the engine with the nurse's id."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input, Static

from monitord import readings as r
from monitord.dashboard import entries, modals
from monitord.dashboard.app import DashboardApp
from tests.dashboard.conftest import Bed, admit_and_order
from tests.dashboard.test_app import connected, footer_keys, make_app, type_in, until
from tests.dashboard.test_interlock import banner_line


async def menu(pilot: Pilot[Any], app: DashboardApp, key: str, screen: type) -> None:
    await pilot.press("i")
    await until(pilot, lambda: isinstance(app.screen, modals.SessionMenu), "the infusion menu")
    await pilot.press(key)
    await until(pilot, lambda: isinstance(app.screen, screen), f"the {screen.__name__} screen")


async def saved(pilot: Pilot[Any], app: DashboardApp) -> None:
    await until(pilot, lambda: not isinstance(app.screen, modals.EntryModal), "the entry to be accepted")


def error(app: DashboardApp) -> str:
    return str(app.screen.query_one("#error", Static).render())


async def test_a_doubted_weight_is_shown_and_corrected(bed: Bed) -> None:
    bed.engine.submit(r.Admit("P-1001", 154.0, 45, "N1", confirm=True))  # kg? the nurse said so
    bed.engine.submit(r.TreatmentCount(2, last_weight_kg=70.0))  # the registry: 70 kg, so 154 looks like pounds
    assert bed.engine.snapshot()["weight_check"]
    app = make_app(bed)
    async with app.run_test(size=(100, 32)) as pilot:
        await connected(pilot, app)
        await until(pilot, lambda: banner_line(app, "weight").startswith("WEIGHT TO CHECK: Weight 154 kg"), "the banner")
        assert "w: confirm or correct" in banner_line(app, "weight")
        await until(pilot, lambda: "Check weight" in footer_keys(app), "the weight key")
        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, entries.WeightCheckModal), "the weight screen")
        weight = app.screen.query_one("#weight", Input)
        assert weight.value == "154"
        await pilot.press(*["backspace"] * 3)
        await type_in(pilot, "70")
        await pilot.press("enter")
        await saved(pilot, app)
        await until(pilot, lambda: banner_line(app, "weight") == "", "the banner to go")
        await until(pilot, lambda: "Check weight" not in footer_keys(app), "the weight key to go")
    patient = bed.engine.state.patient
    assert patient is not None and patient.weight_kg == 70.0
    [confirmed] = bed.of("session", action="weight_confirmed")
    assert (confirmed.data["actor"], confirmed.data["weight_kg"], confirmed.data["previous_entry_kg"]) == ("N1", 70.0, 154.0)


async def test_discharge_scores_are_entered_item_by_item(bed: Bed) -> None:
    admit_and_order(bed.engine)
    app = make_app(bed)
    async with app.run_test(size=(100, 32)) as pilot:
        await connected(pilot, app)
        await menu(pilot, app, "k", entries.DischargeScoreModal)
        assert str(app.screen.query_one("#label4").render()) == "surgical bleeding: 0, 1 or 2"
        for i, points in enumerate("22213"):
            await pilot.press(*(["tab"] if i else []), points)
        await pilot.press("enter")
        await until(pilot, lambda: "Surgical bleeding: 0, 1 or 2 points" in error(app), "the refusal of 3 points")
        await pilot.press("backspace", "2")
        await pilot.press("enter")
        await saved(pilot, app)

        await menu(pilot, app, "k", entries.DischargeScoreModal)
        await pilot.press("shift+tab", "enter", "down", "enter")  # the scale: modified Aldrete
        await until(pilot, lambda: str(app.screen.query_one("#label4").render()).startswith("oxygen saturation"),
                    "the Aldrete items")
        for points in "21222":
            await pilot.press("tab", points)
        await pilot.press("enter")
        await saved(pilot, app)
    scores = [e.data for e in bed.of("observation", type="discharge_score")]
    assert [(s["scale"], s["total"], s["actor"]) for s in scores] == [("padss", 9, "N1"), ("aldrete", 9, "N1")]
    assert scores[0]["items"] == {"vital_signs": 2, "activity": 2, "nausea_vomiting": 2, "pain": 1, "bleeding": 2}
    assert scores[1]["items"] == {"activity": 2, "respiration": 1, "circulation": 2, "consciousness": 2,
                                  "oxygen_saturation": 2}


async def test_escort_and_hand_bolus_reach_the_engine(bed: Bed) -> None:
    admit_and_order(bed.engine)
    app = make_app(bed, nurse="N5")
    async with app.run_test(size=(100, 32)) as pilot:
        await connected(pilot, app)
        await menu(pilot, app, "e", entries.EscortModal)
        await type_in(pilot, "partner")
        await pilot.press("enter")
        await saved(pilot, app)
        await menu(pilot, app, "h", entries.HandBolusModal)
        await type_in(pilot, "10")
        await pilot.press("tab", "tab")
        await type_in(pilot, "breakthrough pain")
        await pilot.press("enter")
        await saved(pilot, app)
    assert bed.of("session", action="escort_confirmed", actor="N5", name="partner")
    [bolus] = bed.of("observation", type="manual_bolus")
    assert (bolus.data["dose_mg"], bolus.data["route"], bolus.data["note"], bolus.data["actor"]) == \
        (10.0, "IV", "breakthrough pain", "N5")
    assert bed.engine.state.cumulative_mg == 10.0


async def test_controlled_drug_record_needs_a_witness_and_must_add_up(bed: Bed) -> None:
    admit_and_order(bed.engine)
    app = make_app(bed)
    async with app.run_test(size=(100, 32)) as pilot:
        await connected(pilot, app)
        await menu(pilot, app, "g", entries.ControlledDrugModal)
        await type_in(pilot, "50")
        await pilot.press("enter")
        await until(pilot, lambda: "witness" in error(app), "the missing witness")
        await pilot.press("tab")
        await type_in(pilot, "N1")  # the nurse herself
        await pilot.press("enter")
        await until(pilot, lambda: "NOT RECORDED: A controlled-drug entry needs a second person" in error(app),
                    "the daemon's refusal")
        await pilot.press("backspace")
        await type_in(pilot, "2")
        await pilot.press("enter")
        await saved(pilot, app)

        await menu(pilot, app, "g", entries.ControlledDrugModal)
        await until(pilot, lambda: "dispensed 50 mg" in str(app.screen.query_one("#balance", Static).render()),
                    "the record so far")
        await pilot.press("shift+tab", "enter", "down", "down", "enter")  # close the record
        await pilot.press("tab", "tab")
        await type_in(pilot, "N2")
        await pilot.press("enter")
        await until(pilot, lambda: "NOT RECORDED: Record does not add up" in error(app), "the refusal to close")
    [dispensed] = bed.of("session", action="controlled_dispensed")
    assert (dispensed.data["actor"], dispensed.data["witness"], dispensed.data["volume_ml"]) == ("N1", "N2", 50.0)
    assert not bed.engine.state.record_closed
    assert [e.data["action"] for e in bed.of("rejected")] == ["ControlledDrug", "ControlledDrug"]
