"""A bounded run of the decoder fuzzer (the full million-frame run is bench/fuzz_datex.py)."""

from __future__ import annotations

import pytest

from bench.fuzz_datex import run


@pytest.mark.slow
def test_decoder_survives_random_and_mutated_frames() -> None:
    res = run(150_000, seed=20260101)
    assert res.exceptions == 0, res.first_exception
    assert res.intact > 10_000
    assert res.intact_lost == 0  # every intact frame decoded, whatever garbage preceded it
    assert res.error_count > res.frames // 2  # the garbage really was garbage, and was counted
