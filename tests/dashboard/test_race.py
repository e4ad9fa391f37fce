"""Snapshots and log events that arrive before the main screen exists, while any dialog is
open, and while the app shuts down, must never reach a widget that is not there (the
``NoMatches: '#header'`` crash of a slow box). Repeated, because the crash depended on timing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from textual.screen import Screen
from textual.widgets import RichLog, Static

from monitord.dashboard import entries, modals
from monitord.dashboard.app import DashboardApp, LinkMessage, SnapshotArrived
from monitord.dashboard.sound import SoundTestModal
from tests.dashboard.test_app import until
from tests.dashboard.test_snapshots import bed_data

RUNS = 50

DIALOGS: list[Callable[[], Screen[Any]]] = [
    modals.NurseModal, modals.SedationModal, modals.PainModal, modals.EffectsModal, modals.RescueModal,
    modals.SessionMenu, modals.AdmitModal, modals.OrderModal, modals.ChecklistModal, modals.DischargeModal,
    lambda: modals.ReasonModal("pause"), lambda: modals.ConfirmModal("start", "Start?"),
    lambda: modals.OverrideModal("dose.soft_max_icu", "Dose 3 mg/kg/h exceeds 2 mg/kg/h"),
    lambda: modals.ConfirmEntryModal("order", "Confirm", {"dose_mg_kg_h": 1.0, "dose_mg_h": 70.0}),
    modals.QuitModal,
    lambda: entries.InterlockReleaseModal({"phase": "holding", "trigger": "resp.apnoea"}),
    entries.WeightCheckModal, entries.DischargeScoreModal, entries.EscortModal, entries.HandBolusModal,
    entries.ControlledDrugModal, SoundTestModal,
]


@cache
def high_bed() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    return bed_data("high")


@pytest.mark.parametrize("run", range(RUNS))
async def test_snapshots_at_start_in_a_dialog_and_at_shutdown(run: int) -> None:
    """Each run opens one dialog (every dialog is open under the flood in at least two runs)."""
    hello, snapshot, events = high_bed()
    app = DashboardApp(connect=False, nurse="RN1", flash=False, sound=False)
    # Data before the main screen exists: kept, and drawn once it is mounted.
    app.apply_hello(hello)
    app.apply_snapshot(snapshot)
    for ev in events:
        app.apply_event(ev)
    app.post_message(SnapshotArrived(snapshot))
    app.post_message(LinkMessage({"type": "event", "event": events[0]}))
    flooding = True

    async def flood() -> None:  # a snapshot every few milliseconds, faster than the daemon sends them
        while flooding:
            app.post_message(SnapshotArrived(snapshot))
            await asyncio.sleep(0.002)

    async with app.run_test(size=(80, 24)) as pilot:
        task = asyncio.create_task(flood())
        await until(pilot, lambda: len(app.query_one("#events", RichLog).lines) == len(events), "the early log")
        assert "P-1001 70 kg" in str(app.query_one("#header-main", Static).render())
        app.push_screen(DIALOGS[run % len(DIALOGS)]())
        await pilot.pause(0.05)  # snapshots arrive while the dialog is up
        # Leaves with the dialog open and snapshots still queued: the shutdown must not draw them.
    flooding = False
    await task
    assert app.snapshot is snapshot
