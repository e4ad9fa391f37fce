"""Text from outside the dashboard (patient, bed and staff ids, alarm messages, the site's
checklist, event details) is shown exactly as typed: ``P-[/]`` or ``[b]x`` must never be read
as markup, which would crash the screen or silently drop characters."""

from __future__ import annotations

import copy
from typing import Any

from textual.widgets import Static

from monitord.dashboard import modals
from monitord.dashboard.app import DashboardApp
from tests.dashboard.test_app import until
from tests.dashboard.test_snapshots import bed_data, screen_text


def hostile(state: str = "high") -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """A real engine's hello, snapshot and log with every outside string replaced by markup."""
    hello, snapshot, events = copy.deepcopy(bed_data(state))
    snapshot["bed_id"] = "bed-[/]"
    snapshot["patient"]["id"] = "P-[/]"
    snapshot["alarms"][0]["message"] = "SPO2 [/] low [b]x"
    snapshot["alarms"][0]["source"] = "[red]source[/red] [/]"
    snapshot["sedation"]["actor"] = "[/]RN"
    hello["config"]["checklist"][0]["text"] = "Pregnant? [/] [b]x"
    hello["config"]["rescue_medications"][0] = "mida[/]zolam"
    events.append({"seq": 10_000, "kind": "session", "time": "2026-01-01T08:30:00Z",
                   "data": {"action": "paused", "actor": "[b]x", "reason": "P-[/] asked"}})
    return hello, snapshot, events


async def test_ids_messages_and_checklist_with_markup_show_as_typed() -> None:
    hello, snapshot, events = hostile()
    app = DashboardApp(connect=False, nurse="[b]x", clock=lambda: 50_000.0, flash=False, sound=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.apply_hello(hello)
        app.apply_snapshot(snapshot)
        for ev in events:
            app.apply_event(ev)
        await pilot.pause()
        screen = "\n".join(screen_text(app))
        for text in ("bed-[/]", "P-[/] 70 kg", "RN [b]x", "SPO2 [/] low [b]x", "[red]source[/red] [/]",
                     "[/]RN", "Infusion paused: P-[/] asked [[b]x]"):
            assert text in screen, text

        await pilot.press("i", "c")
        await until(pilot, lambda: isinstance(app.screen, modals.ChecklistModal), "the checklist")
        await pilot.pause()
        dialog = "\n".join(screen_text(app))
        assert "[C] Pregnant? [/] [b]x" in dialog
        assert "[C] contraindication: a yes needs a physician override" in dialog
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, modals.ChecklistModal), "the checklist to close")

        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, modals.RescueModal), "the rescue screen")
        await pilot.pause()
        assert "mida[/]zolam" in "\n".join(screen_text(app))
        await pilot.press("escape")

        # A refusal in the daemon's words that quotes an id is shown as it is.
        await until(pilot, lambda: not isinstance(app.screen, modals.RescueModal), "the rescue screen to close")
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, modals.PainModal), "the pain screen")
        assert isinstance(app.screen, modals.PainModal)
        app.screen.show_error("NOT RECORDED: Bed bed-[/] already has patient P-[/]: discharge first")
        await pilot.pause()
        assert "already has patient P-[/]" in str(app.screen.query_one("#error", Static).render())


async def test_a_staff_id_with_markup_is_refused_at_entry() -> None:
    app = DashboardApp(connect=False, nurse=None, flash=False, sound=False)
    async with app.run_test() as pilot:
        await until(pilot, lambda: isinstance(app.screen, modals.NurseModal), "the staff id screen")
        await pilot.press(*"[b]x")
        await pilot.press("enter")
        error = app.screen.query_one("#error", Static)
        await until(pilot, lambda: "Staff id:" in str(error.render()), "the refusal")
        assert app.nurse is None and isinstance(app.screen, modals.NurseModal)
        await pilot.press(*["backspace"] * 4, *"RN7")
        await pilot.press("enter")
        await until(pilot, lambda: app.nurse == "RN7", "the staff id")
