"""The interlock's own alarms: the pump did not stop, or was restarted while held."""

from __future__ import annotations

from monitord.config import Config, Priority
from monitord.interlock import Phase
from monitord.rules.base import Finding, Kind, Rule, fmt
from monitord.state import BedState

SOURCE = "monitord interlock (docs/interlock.md); IEC 60601-1-8: a failed protective action is a high-priority technical alarm"


def not_stopped(state: BedState, now: float, cfg: Config) -> Finding | None:
    il = state.interlock
    if il.phase is Phase.FAILED:
        return Finding(f"Interlock: pump did not stop after {il.attempts} {cfg.interlock.action} commands: "
                       "stop it by hand", float(il.attempts))
    return None


def pump_restarted(state: BedState, now: float, cfg: Config) -> Finding | None:
    il, pump = state.interlock, state.pump
    if il.phase is Phase.HOLDING and il.pump_restarted and pump is not None:
        rate = f" at {fmt(pump.rate_ml_h)} mL/h" if pump.rate_ml_h else ""
        return Finding(f"Pump restarted{rate} while the interlock holds it (triggered by {il.trigger}): stop it, "
                       "or release the interlock at the bedside", pump.rate_ml_h)
    return None


def rules(cfg: Config) -> list[Rule]:
    if not cfg.interlock.enabled:
        return []
    return [
        Rule("interlock.not_stopped", Priority.HIGH, Kind.TECHNICAL,
             f"interlock sent {cfg.interlock.retries + 1} {cfg.interlock.action} commands and the pump's reports did "
             f"not show it stopped within {fmt(cfg.interlock.confirm_s)} s of each", SOURCE, not_stopped,
             why_priority="the drug keeps flowing into a patient whose breathing failed"),
        Rule("interlock.pump_restarted", Priority.HIGH, Kind.TECHNICAL,
             "the pump infuses again while the interlock holds it", SOURCE, pump_restarted,
             why_priority="the drug that caused respiratory depression is flowing again"),
    ]
