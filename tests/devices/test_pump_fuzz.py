"""Bounded version of bench/fuzz_pumps.py: random and mutated replies never raise anything but
ProtocolError, and some mutated frames still decode (the fuzzer reaches the decoders)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fuzz_pumps.py"


def _fuzz_module():  # bench/ is scripts, not a package
    spec = importlib.util.spec_from_file_location("fuzz_pumps", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_pumps"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["modbus", "ne500"])
def test_fuzzed_replies_raise_only_protocol_errors(protocol: str) -> None:
    fuzz = _fuzz_module()
    run = fuzz.fuzz_modbus if protocol == "modbus" else fuzz.fuzz_ne500
    stats = run(200_000, seed=11)
    assert stats.frames == 200_000
    assert stats.exceptions == 0, stats.examples
    assert stats.protocol_errors > 100_000
    assert stats.decoded > 1_000


def test_small_fuzz_runs_in_the_default_suite() -> None:
    fuzz = _fuzz_module()
    for run in (fuzz.fuzz_modbus, fuzz.fuzz_ne500):
        stats = run(5_000, seed=3)
        assert stats.exceptions == 0, stats.examples
