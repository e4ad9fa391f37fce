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


WHY = ("pump-runs-without-start", "pump-runs-with-no-order", "pump-runs-after-stop",
       "pause-does-not-clear-rate-mismatch", "pump-stopped-during-session", "apnoea-25s", "monitor-apnoea-flag",
       "rr-and-etco2-invalid", "ecg-leads-off", "agitation-rass-plus4", "severe-psychomimetic-effect",
       "respiratory-depression-after-stop", "restart-keeps-sedation-and-effects", "nibp-high-then-cuff-stops",
       "exactly-2-mgkgh-float", "exactly-1-mgkgh-outpatient", "elderly-monitored-unit-1-5", "pump-reports-bolus-rate",
       "spo2-artefact-no-capnograph", "bolus-permitted-in-monitored-unit", "pounds-typed-as-kg",
       "three-boluses-ten-minutes", "hand-bolus-counts", "start-without-checklist", "elderly-outpatient-5mgkgh",
       "observations-on-time", "observation-20-min-late", "rate-change-observation", "discharge-before-criteria")


def test_library_has_a_scenario_for_each_device_truth_failure() -> None:
    assert set(WHY) <= {p.stem for p in SCENARIOS}


def _course(steps: list[dict[str, object]], duration: int = 900) -> dict[str, object]:
    checklist = {"cv_unstable": False, "raised_icp_iop": False, "endocrine": False, "severe_liver": False,
                 "full_stomach": False, "pregnancy": False, "psychiatric": False, "no_consent": False,
                 "psychomimetic_no_benzo": False, "ecg_cv_risk": True, "liver_tests": True}
    base = [{"at": 0, "admit": {"patient_id": "P-1", "weight_kg": 70, "age_years": 45}},
            {"at": 0, "order": {"concentration_mg_ml": 1.0, "rate_ml_h": 35}},
            {"at": 0, "checklist": {"answers": checklist}},
            {"at": 60, "baseline": {}},
            {"at": 120, "pump": {"state": "running", "rate_ml_h": 35}},
            {"at": 120, "start": {}}]
    return {"name": "t", "duration": duration, "pump": {"concentration_mg_ml": 1.0}, "step": base + steps}


def test_restart_step_keeps_an_active_alarm_without_a_cleared_raised_pair() -> None:
    sc = parse_scenario(_course([{"at": 300, "sedation": {"scale": "rass", "score": -4}},
                                 {"at": 400, "restart": {"downtime": 30}}]))
    result = run_scenario(sc)
    assert result.ok, result.failures
    rass = [(e.data["transition"], e.mono - 1000) for e in result.alarm_events() if e.data["rule_id"] == "sedation.rass_high"]
    assert rass == [("raised", 300.0)]
    assert any(a["rule_id"] == "sedation.rass_high" for a in result.final["alarms"])


def test_nurse_step_while_the_daemon_is_down_fails_the_scenario() -> None:
    sc = parse_scenario(_course([{"at": 300, "restart": {"downtime": 60}}, {"at": 330, "pain": {"score": 3}}]))
    assert any("while the daemon is down" in f for f in run_scenario(sc).failures)


def test_bolus_is_delivered_at_the_bolus_rate_and_the_pump_resumes() -> None:
    sc = parse_scenario(_course([{"at": 300, "pump": {"state": "bolus", "bolus_ml": 10}}]))
    result = run_scenario(sc)
    inf = result.final["infusion"]
    # 35 mL/h for the infusing time plus the 10 mL bolus (1 mg/mL), within a second's worth of rate.
    expected = 35 * (inf["infusion_time_s"] - 120) / 3600 + 10
    assert inf["cumulative_mg"] == pytest.approx(expected, abs=0.2)
    assert inf["state"] == "running" and inf["bolus_window_mg_kg"] == pytest.approx(10 / 70, abs=0.001)


def test_no_files_is_not_a_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from monitord import scenario

    monkeypatch.setattr(scenario, "library", lambda: [])
    assert scenario.main(argparse.Namespace(files=[], events=False)) == 2
