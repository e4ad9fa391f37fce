"""Delivery receipts from central stations: an unconfirmed HIGH alarm is a bedside technical alarm."""

from __future__ import annotations

import pytest

from monitord import readings as r
from monitord.errors import Refused

from .conftest import Bed, make_config


def _bed(**mqtt: object) -> Bed:
    return Bed(make_config(mqtt={"expect_receipts": True, "receipt_timeout_s": 30, **mqtt}))


def _apnoea(bed: Bed) -> dict[str, object]:
    bed.admit_and_start()
    bed.vitals[r.Vital.RR] = 0
    bed.vitals[r.Vital.ETCO2] = 0
    bed.run(21)
    return bed.active()["resp.apnoea"]


def test_no_central_confirming_a_high_alarm_raises_the_technical_alarm_in_time() -> None:
    bed = _bed()
    _apnoea(bed)
    bed.run(28)
    assert "tech.central_unconfirmed" not in bed.active()
    bed.run(3)
    alarm = bed.active()["tech.central_unconfirmed"]
    assert alarm["priority"] == "medium" and "resp.apnoea" in alarm["message"]


def test_a_receipt_for_the_occurrence_keeps_it_quiet_and_a_stale_one_does_not() -> None:
    bed = _bed()
    apnoea = _apnoea(bed)
    occurrence = apnoea["occurrence_seq"]
    bed.submit(r.CentralReceipt("ward-3", "resp.apnoea", occurrence - 1))  # an earlier occurrence: no
    bed.run(31)
    assert "tech.central_unconfirmed" in bed.active()
    bed.submit(r.CentralReceipt("ward-3", "resp.apnoea", occurrence))
    bed.run(2)
    assert "tech.central_unconfirmed" not in bed.active()


def test_off_by_default(bed: Bed) -> None:
    _apnoea(bed)
    bed.run(120)
    assert "tech.central_unconfirmed" not in bed.raised()


@pytest.mark.parametrize("receipt", [r.CentralReceipt("", "resp.apnoea", 1),
                                     r.CentralReceipt("x" * 65, "resp.apnoea", 1),
                                     r.CentralReceipt("ward[3]", "resp.apnoea", 1),
                                     r.CentralReceipt("ward-3", "resp.apnoea", -1),
                                     r.CentralReceipt("ward-3", "resp.apnoea", 10**9)])
def test_bad_receipts_are_refused(receipt: r.CentralReceipt) -> None:
    bed = _bed()
    _apnoea(bed)
    with pytest.raises(Refused):
        bed.submit(receipt)


def test_receipts_from_many_stations_are_bounded() -> None:
    bed = _bed()
    occ = _apnoea(bed)["occurrence_seq"]
    for i in range(500):
        bed.submit(r.CentralReceipt(f"s{i}", "resp.apnoea", occ))
    assert len(bed.engine.state.receipts[occ]) == 32
