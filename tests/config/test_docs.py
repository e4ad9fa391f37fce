"""docs/config.md's table of allowed ranges is generated from the models: it must not drift."""

from __future__ import annotations

from pathlib import Path

from monitord.config_doc import ranges_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"
BEGIN, END = "<!-- ranges:begin -->", "<!-- ranges:end -->"


def test_ranges_doc_matches_the_models() -> None:
    table = DOC.read_text().split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == ranges_markdown().strip(), "regenerate with: python -m monitord.config_doc"


def test_every_number_has_a_bound_or_is_a_vital_value() -> None:
    """Only the vital values themselves are unbounded (they are checked against physical_range)."""
    from monitord.config_doc import numeric_ranges

    unbounded = {key for key, _, allowed in numeric_ranges() if allowed == "finite"}
    assert unbounded == {"vitals.physical_range.<name>.min", "vitals.physical_range.<name>.max",
                         "vitals.limits[].above", "vitals.limits[].below"}
