"""A bounded run of the Masimo line fuzzer (the full million-line run is bench/fuzz_masimo.py)."""

from __future__ import annotations

import pytest

from bench.fuzz_masimo import run


@pytest.mark.slow
def test_decoder_survives_random_and_mutated_lines() -> None:
    res = run(150_000, seed=20260101)
    assert res.exceptions == 0, res.first_exception
    assert res.intact > 10_000
    assert res.intact_lost == 0  # every intact line decoded, whatever garbage preceded it
    assert res.error_count > res.lines // 2  # the garbage really was garbage, and was counted
