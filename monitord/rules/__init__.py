"""All rules the product ships, built from config. ``docs/rules.md`` is generated from here."""

from __future__ import annotations

from monitord.config import Config
from monitord.rules import course, dose, interlock, nursing, technical, vitals
from monitord.rules.base import Finding, Kind, Rule

__all__ = ["Finding", "Kind", "Rule", "build_rules", "rules_markdown"]


def build_rules(cfg: Config) -> list[Rule]:
    out = (dose.rules(cfg) + vitals.rules(cfg) + nursing.rules(cfg) + technical.rules(cfg) + course.rules(cfg)
           + interlock.rules(cfg))
    ids = [r.id for r in out]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"duplicate rule ids: {sorted(dup)}")
    return out


def rules_markdown(cfg: Config) -> str:
    """The rule table for docs/rules.md, from the rules as configured."""
    latching = set(cfg.alarms.latching)
    lines = [
        "| id | priority | kind | condition (default) | delay | latching | stays active after Stop | source "
        "| why this priority |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in build_rules(cfg):
        cells = [
            f"`{r.id}`", r.priority.value, r.kind.value, r.condition, f"{r.delay_s:g} s",
            "yes (at high)" if r.id in latching else "no", "yes" if r.after_stop else "no", r.source, r.why_priority,
        ]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"
