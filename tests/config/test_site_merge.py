"""A site file changes what it names and nothing else: one ``[[vitals.limits]]`` entry must not
drop the other shipped limits, and removing a shipped entry is explicit and reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitord import cli
from monitord import readings as r
from monitord.config import load_config
from tests.core.conftest import DEVICES, Bed

CHANGE_ONE = '''
[[vitals.limits]]
id = "hr_high"
above = 130
'''

ADD_ONE = '''
[[vitals.limits]]
id = "temp_high"
vital = "temp"
above = 38.5
delay_s = 60
priority = "low"
source = "site policy for a test"
'''

DISABLE_ONE = '''
[[vitals.limits]]
id = "rr_high"
enabled = false

[[checklist]]
id = "liver_tests"
enabled = false
'''


def site(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def bed_for(path: Path) -> Bed:
    return Bed(load_config(path, overrides={"devices": DEVICES}))


@pytest.mark.parametrize("text", [CHANGE_ONE, ADD_ONE, DISABLE_ONE], ids=["change-one", "add-one", "disable-other"])
@pytest.mark.parametrize(
    ("vital", "value", "rule", "priority"),
    [(r.Vital.HR, 190.0, "vital.hr_high", "high"), (r.Vital.RR, 4.0, "vital.rr_low", "medium")],
)
def test_one_site_limit_keeps_the_shipped_alarms(tmp_path: Path, text: str, vital: r.Vital, value: float,
                                                 rule: str, priority: str) -> None:
    bed = bed_for(site(tmp_path, text))
    bed.admit_and_start()
    bed.vitals[vital] = value
    bed.run(35)
    assert rule in bed.raised()
    assert bed.active()[rule]["priority"] == priority


def test_the_changed_limit_applies(tmp_path: Path) -> None:
    cfg = load_config(site(tmp_path, CHANGE_ONE))
    shipped = load_config()
    assert {lim.id for lim in cfg.vitals.limits} == {lim.id for lim in shipped.vitals.limits}
    changed = next(lim for lim in cfg.vitals.limits if lim.id == "hr_high")
    assert changed.above == 130 and changed.delay_s == 10 and changed.priority == "medium"  # the rest kept
    bed = bed_for(site(tmp_path, CHANGE_ONE))
    bed.admit_and_start()
    bed.vitals[r.Vital.HR] = 125.0  # above the shipped 120, below the site's 130
    bed.run(35)
    assert "vital.hr_high" not in bed.raised()
    bed.vitals[r.Vital.HR] = 135.0
    bed.run(35)
    assert "vital.hr_high" in bed.raised()


def test_disabled_entries_are_gone_and_check_config_says_so(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = site(tmp_path, DISABLE_ONE)
    cfg = load_config(path)
    assert "rr_high" not in {lim.id for lim in cfg.vitals.limits}
    assert "liver_tests" not in {c.id for c in cfg.checklist}
    assert len(cfg.vitals.limits) == len(load_config().vitals.limits) - 1

    bed = bed_for(path)
    bed.admit_and_start()
    bed.vitals[r.Vital.RR] = 32.0  # the disabled rr_high (above 30) was the only upper RR limit
    bed.run(35)
    assert "vital.rr_high" not in bed.raised()

    assert cli.main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "DISABLED vitals.limits[rr_high]" in out
    assert "DISABLED checklist[liver_tests]" in out


def test_check_config_lists_what_the_site_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = site(tmp_path, CHANGE_ONE + ADD_ONE + "[alarms]\nlatching = []\n")
    assert cli.main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "vitals.limits[hr_high].above = 130 (shipped: 120)" in out
    assert "vitals.limits[temp_high] added" in out
    assert "alarms.latching = [] (shipped: [" in out


def test_overrides_merge_by_id_too() -> None:
    cfg = load_config(overrides={"vitals": {"limits": [{"id": "spo2_low", "below": 92}]}})
    assert next(lim for lim in cfg.vitals.limits if lim.id == "spo2_low").below == 92
    assert len(cfg.vitals.limits) == len(load_config().vitals.limits)


def test_doctor_shows_disabled_entries(tmp_path: Path) -> None:
    from monitord import doctor

    result, config = doctor.check_config(site(tmp_path, DISABLE_ONE))
    assert config is not None and result.ok
    assert "DISABLED vitals.limits[rr_high]" in result.detail
