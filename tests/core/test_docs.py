"""docs/rules.md is generated from the rules as shipped: it must not drift."""

from __future__ import annotations

from pathlib import Path

from monitord.config import load_config
from monitord.rules import rules_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
BEGIN, END = "<!-- rules:begin -->", "<!-- rules:end -->"


def test_rules_doc_matches_the_shipped_rules() -> None:
    text = DOC.read_text()
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == rules_markdown(load_config()).strip(), "regenerate with: monitord rules --markdown (see docs/rules.md)"
