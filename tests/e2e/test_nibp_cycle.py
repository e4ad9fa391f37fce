"""NIBP on its cycle alongside continuous HR/SpO2, monitor only, over a real pty."""

from __future__ import annotations

from monitord.events import EventKind
from tests.e2e.harness import running_bed


async def test_nibp_arrives_on_its_cycle_and_hr_spo2_in_every_frame() -> None:
    async with running_bed("nibp-cycle", pump=None) as bed:
        await bed.finish()
    vitals = [e for e in bed.of(EventKind.VITALS) if e.data["values"]]
    assert len(vitals) >= 8
    # continuous values in every frame
    assert all("hr" in e.data["values"] and "spo2" in e.data["values"] for e in vitals)
    # a new NIBP for each measurement the monitor made after the driver was listening (at 4 s and 8 s),
    # recognised even though the values repeat, each with its measurement time
    new = [e for e in vitals if e.data["new_nibp"]]
    later = [e for e in new if bed.at(e) > 1.0]
    assert len(later) == 2, [round(bed.at(e), 1) for e in new]
    gap = later[1].mono - later[0].mono
    assert 3.0 <= gap <= 5.0
    assert all(e.data["nibp_time"] is not None for e in later)
    assert [e.data["values"]["sbp"] for e in later] == [118, 118]
    # NIBP is not reported as new between measurements
    assert len(new) <= 3
