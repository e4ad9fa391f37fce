"""Configuration: shipped defaults load; bad files are refused with file, key, value and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitord.config import DEFAULTS_PATH, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "site.toml"
    p.write_text(text)
    return p


def test_defaults_and_example_load() -> None:
    cfg = load_config()
    assert cfg.ketamine.dose.soft_max_mg_kg_h == 2.0
    for example in (ROOT / "config").glob("*.toml"):
        if example.name != "pump-map.toml":
            load_config(example)


def test_every_clinical_number_in_defaults_has_a_comment_or_source() -> None:
    """Each numeric line in [ketamine.*], [vitals], [sedation], [course] is commented."""
    section = ""
    missing = []
    for line in DEFAULTS_PATH.read_text().splitlines():
        s = line.strip()
        if s.startswith("["):
            section = s
            continue
        clinical = section.startswith(("[ketamine.dose", "[vitals]", "[sedation]", "[course]", "[patient_limits]"))
        numeric = "=" in s and any(c.isdigit() for c in s.split("=", 1)[1])
        if clinical and numeric and not s.startswith("#") and "#" not in s:
            missing.append(s)
    assert missing == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[bed]\ncare_area = "ward"\n', ["bed.care_area = 'ward'", "'outpatient-infusion', 'monitored-unit' or 'icu'"]),
        ("[ketamine.dose]\nsoft_max_mg_kg_h = -2\n", ["ketamine.dose.soft_max_mg_kg_h = -2", "greater than 0"]),
        ("[sedation]\nposs_medium = 9\n", ["sedation.poss_medium = 9"]),
        ("[vitals]\nstale_after_s = 30\nstale_after = 5\n", ["vitals.stale_after", "unknown key"]),
        ("[ketamine.dose]\nlow_mg_kg_h = 3\n", ["low_mg_kg_h < soft_max_mg_kg_h"]),
    ],
)
def test_bad_config_names_file_key_value_and_what_is_allowed(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg
    for part in expected:
        assert part in msg


def test_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[bed\n"))


def test_check_config_command(tmp_path: Path) -> None:
    bad = write(tmp_path, '[bed]\nid = "bed 7"\n')
    out = subprocess.run([sys.executable, "-m", "monitord.cli", "check-config", str(bad)], capture_output=True, text=True)
    assert out.returncode != 0
    assert "bed.id = 'bed 7'" in out.stderr
    good = tmp_path / "good.toml"
    good.write_text('[bed]\nid = "bed-7"\ncare_area = "icu"\n')
    out = subprocess.run([sys.executable, "-m", "monitord.cli", "check-config", str(good)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout
