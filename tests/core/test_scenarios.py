"""The shipped clinical scenarios each play through the engine and meet their expectations."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitord.scenario import ScenarioError, library, load_scenario, parse_scenario, run_scenario

SCENARIOS = library()


def test_library_has_the_clinical_scenarios() -> None:
    names = {p.stem for p in SCENARIOS}
    assert len(names) >= 12
    for needed in ("normal-outpatient-4h", "rate-tenfold", "hypertensive-response", "spo2-artefact",
                   "respiratory-depression", "oversedation-poss", "wrong-concentration", "monitor-unplugged",
                   "outpatient-above-1", "elderly-1mgkgh"):
        assert needed in names


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    result = run_scenario(load_scenario(path))
    assert result.ok, "\n".join(result.failures)


def test_a_wrong_expectation_fails() -> None:
    """The runner really checks: the artefact scenario expecting an SpO2 alarm must fail."""
    sc = load_scenario(next(p for p in SCENARIOS if p.stem == "spo2-artefact"))
    sc.expectations[0].count = 1
    assert not run_scenario(sc).ok


def test_normal_course_numbers() -> None:
    result = run_scenario(load_scenario(next(p for p in SCENARIOS if p.stem == "normal-outpatient-4h")))
    assert result.final["infusion"]["cumulative_mg"] == pytest.approx(140, rel=1e-3)
    assert result.final["infusion"]["infusion_time_s"] == pytest.approx(4 * 3600)


def test_bad_scenario_file_is_named() -> None:
    with pytest.raises(ScenarioError, match="unknown action 'dance'"):
        parse_scenario({"name": "x", "duration": 10, "step": [{"at": 0, "dance": {}}]})
    with pytest.raises(ScenarioError, match="'soon'"):
        parse_scenario({"name": "x", "duration": "soon"})
