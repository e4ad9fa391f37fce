"""A bounded run of the IntelliVue frame and message fuzzer (the million-frame run is bench/fuzz_intellivue.py)."""

from __future__ import annotations

import pytest

from bench.fuzz_intellivue import run


@pytest.mark.slow
def test_decoder_survives_random_and_mutated_frames_and_messages() -> None:
    res = run(60_000, seed=20260101)
    assert res.exceptions == 0, res.first_exception
    assert res.intact > 10_000
    assert res.intact_lost == 0  # every intact frame decoded as itself, whatever garbage preceded it
    assert res.results_converted > 1_000  # the driver's conversion ran on the poll results that decoded
    # damaged messages inside valid frames reached the message parser and were counted, not fatal
    assert res.errors["length"] + res.errors["short"] + res.errors["attributes"] > 1_000
    assert res.error_count > res.frames // 2
