"""The pump stop interlock: stop the drug when breathing fails, verify it from the pump, hold it.

Opt-in per bed (``[interlock]``, off by default). While armed, an active alarm of any trigger rule
makes ``step`` ask for a stop command; the stop counts as done only when a pump report *newer than
the command* shows the pump not infusing. Without that within ``confirm_s`` the command is resent,
``retries`` times, then the interlock fails (a latching HIGH alarm: stop the pump by hand). Once
stopped it holds: a pump restarted at the device raises a HIGH alarm; only a nurse at the bedside
releases it (``InterlockRelease`` from the dashboard link; never from MQTT).

``step`` is a pure function of the interlock's state, the active trigger occurrences, the pump's
last report and the time; it returns what to do (commands to send, events to record). The engine
carries the state, sends the commands through its command subscribers and records the events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from monitord.config import InterlockConfig
from monitord.readings import PumpState


class Phase(StrEnum):
    OFF = "off"  # not enabled for this bed
    ARMED = "armed"
    STOPPING = "stopping"  # command sent, waiting for the pump to report it stopped
    HOLDING = "holding"  # the pump confirmed stopped; held until released at the bedside
    FAILED = "failed"  # not confirmed after every retry: stop it by hand


@dataclass
class InterlockState:
    phase: Phase = Phase.OFF
    trigger: str | None = None  # the rule whose alarm triggered it
    occurrence: int | None = None  # that alarm's occurrence (alarm_seq), so a release is not re-triggered by it
    since_mono: float | None = None  # when the current phase began
    command_mono: float | None = None  # when the last command was sent
    attempts: int = 0
    pump_restarted: bool = False  # the pump infused again while held
    ignore: list[int] = field(default_factory=list)  # occurrences present at the last release

    def to_dict(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies, and this runs with every checkpoint
        return {"phase": self.phase.value, "trigger": self.trigger, "occurrence": self.occurrence,
                "since_mono": self.since_mono, "command_mono": self.command_mono, "attempts": self.attempts,
                "pump_restarted": self.pump_restarted, "ignore": list(self.ignore)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InterlockState:
        d = dict(d)
        d["phase"] = Phase(d.get("phase", "off"))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class PumpView:
    """What the interlock needs from the pump's last report."""

    state: PumpState
    rate_ml_h: float | None
    mono: float  # when the report arrived

    @property
    def stopped(self) -> bool:
        return self.state in (PumpState.STOPPED, PumpState.PAUSED) or not self.rate_ml_h


@dataclass
class Outcome:
    commands: list[str] = field(default_factory=list)  # "stop" | "pause"
    events: list[dict[str, Any]] = field(default_factory=list)  # each an interlock event's data


def _event(out: Outcome, il: InterlockState, step: str, **data: Any) -> None:
    out.events.append({"step": step, "phase": il.phase.value, "trigger": il.trigger, "attempts": il.attempts} | data)


def step(il: InterlockState, cfg: InterlockConfig, triggers: dict[str, int], pump: PumpView | None,
         now: float) -> Outcome:
    """Advance the interlock. ``triggers``: active alarms of trigger rules, rule id -> occurrence."""
    out = Outcome()
    if not cfg.enabled:
        il.phase = Phase.OFF
        return out
    if il.phase is Phase.OFF:
        il.phase, il.since_mono = Phase.ARMED, now
        _event(out, il, "armed")
    if il.phase is Phase.ARMED:
        il.ignore = [o for o in il.ignore if o in triggers.values()]
        fresh = [(rule, occ) for rule, occ in triggers.items() if occ not in il.ignore]
        if fresh:
            il.trigger, il.occurrence = fresh[0]
            il.phase, il.since_mono, il.attempts, il.pump_restarted = Phase.STOPPING, now, 0, False
            _event(out, il, "triggered")
            _send(il, cfg, out, now)
        return out
    confirmed = pump is not None and pump.stopped and il.command_mono is not None and pump.mono >= il.command_mono
    if il.phase in (Phase.STOPPING, Phase.FAILED) and confirmed:
        assert pump is not None
        late = il.phase is Phase.FAILED
        il.phase, il.since_mono = Phase.HOLDING, now
        _event(out, il, "confirmed", pump_state=pump.state.value, rate_ml_h=pump.rate_ml_h, late=late)
        return out
    if il.phase is Phase.STOPPING and il.command_mono is not None and now - il.command_mono >= cfg.confirm_s:
        if il.attempts <= cfg.retries:
            _send(il, cfg, out, now)
        else:
            il.phase, il.since_mono = Phase.FAILED, now
            _event(out, il, "not_confirmed")
        return out
    if il.phase is Phase.HOLDING and pump is not None:
        running = not pump.stopped
        if running and not il.pump_restarted:
            il.pump_restarted = True
            _event(out, il, "pump_restarted", pump_state=pump.state.value, rate_ml_h=pump.rate_ml_h)
        elif not running and il.pump_restarted:
            il.pump_restarted = False
            _event(out, il, "pump_stopped_again")
    return out


def _send(il: InterlockState, cfg: InterlockConfig, out: Outcome, now: float) -> None:
    il.attempts += 1
    il.command_mono = now
    out.commands.append(cfg.action)
    _event(out, il, "command_sent", command=cfg.action)


def release(il: InterlockState, triggers: dict[str, int], actor: str, reason: str, now: float) -> dict[str, Any]:
    """A nurse at the bedside releases the interlock; the alarms present now do not re-trigger it."""
    il.ignore = sorted(set(triggers.values()))
    prior = il.phase
    il.phase, il.since_mono, il.trigger, il.occurrence = Phase.ARMED, now, None, None
    il.attempts, il.command_mono, il.pump_restarted = 0, None, False
    return {"step": "released", "phase": il.phase.value, "from": prior.value, "actor": actor, "reason": reason}
