"""What the daemon and the dashboard agree on: message framing and the command table.

One JSON object per line, UTF-8. The server sends ``hello``, ``snapshot``, ``event``,
``heartbeat`` and ``reply``; the client sends commands ``{"type": <command>, "id", "actor",
...fields}``. ``to_input`` turns a command into the engine's typed input, or raises
``ProtocolError`` with a message a nurse can read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from monitord import readings as r

PROTOCOL_VERSION = 1
# A line longer than this from a client is refused (commands are small).
MAX_COMMAND_BYTES = 64 * 1024
# The client accepts large lines: ``hello`` carries up to 240 min of trend history.
MAX_SERVER_LINE_BYTES = 16 * 1024 * 1024
HEARTBEAT_S = 0.5
SNAPSHOT_MIN_INTERVAL_S = 0.5
# The dashboard declares the daemon not responding after this long without a heartbeat.
NOT_RESPONDING_AFTER_S = 3.0


class ProtocolError(ValueError):
    """A message that cannot be understood; the text goes back in the reply."""


def encode(msg: dict[str, Any]) -> bytes:
    return (json.dumps(msg, separators=(",", ":"), allow_nan=False) + "\n").encode()


def decode(line: bytes) -> dict[str, Any]:
    try:
        msg = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("a message must be a JSON object")
    return msg


# -- field coercion ------------------------------------------------------------------------

Coerce = Callable[[Any, str], Any]


def _str(v: Any, name: str) -> str:
    if not isinstance(v, str):
        raise ProtocolError(f"'{name}' must be text")
    return v


def _float(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ProtocolError(f"'{name}' must be a number")
    return float(v)


def _opt_float(v: Any, name: str) -> float | None:
    return None if v is None else _float(v, name)


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ProtocolError(f"'{name}' must be a whole number")
    return v


def _bool(v: Any, name: str) -> bool:
    if not isinstance(v, bool):
        raise ProtocolError(f"'{name}' must be true or false")
    return v


def _opt_bool(v: Any, name: str) -> bool | None:
    return None if v is None else _bool(v, name)


def _scale(v: Any, name: str) -> r.SedationScale:
    try:
        return r.SedationScale(v)
    except ValueError:
        raise ProtocolError(f"'{name}' must be one of {', '.join(s.value for s in r.SedationScale)}") from None


def _effects(v: Any, name: str) -> frozenset[r.Effect]:
    if not isinstance(v, list):
        raise ProtocolError(f"'{name}' must be a list")
    try:
        return frozenset(r.Effect(e) for e in v)
    except ValueError:
        raise ProtocolError(f"'{name}' items must be among {', '.join(e.value for e in r.Effect)}") from None


def _answers(v: Any, name: str) -> dict[str, bool]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(b, bool) for k, b in v.items()):
        raise ProtocolError(f"'{name}' must map item ids to true/false")
    return dict(v)


def _opt_int(v: Any, name: str) -> int | None:
    return None if v is None else _int(v, name)


def _items(v: Any, name: str) -> dict[str, int]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(n, int) and not isinstance(n, bool)
                                          for k, n in v.items()):
        raise ProtocolError(f"'{name}' must map item names to whole numbers")
    return dict(v)


@dataclass(frozen=True, slots=True)
class CommandSpec:
    cls: type
    required: Mapping[str, Coerce]
    optional: Mapping[str, Coerce]


_ACTOR: dict[str, Coerce] = {"actor": _str}

COMMANDS: dict[str, CommandSpec] = {
    "admit": CommandSpec(r.Admit, {"patient_id": _str, "weight_kg": _float, "age_years": _int, **_ACTOR},
                         {"elderly": _opt_bool, "comorbid": _bool, "previous_weight_kg": _opt_float,
                          "confirm": _bool}),
    "confirm_weight": CommandSpec(r.ConfirmWeight, {"weight_kg": _float, **_ACTOR}, {}),
    "order": CommandSpec(r.SetOrder, {"drug": _str, "concentration_mg_ml": _float, "rate_ml_h": _float, **_ACTOR},
                         {"bolus_mg": _float, "syringe_ml": _opt_float, "planned_duration_min": _opt_float,
                          "confirm": _bool}),
    "start": CommandSpec(r.StartInfusion, _ACTOR, {"confirm": _bool}),
    "pause": CommandSpec(r.PauseInfusion, _ACTOR, {"reason": _str}),
    "resume": CommandSpec(r.ResumeInfusion, _ACTOR, {}),
    "stop": CommandSpec(r.StopInfusion, _ACTOR, {"reason": _str}),
    "discharge": CommandSpec(r.Discharge, _ACTOR, {"reason": _str}),
    "discharge_score": CommandSpec(r.DischargeScore, {"scale": _str, "items": _items, **_ACTOR}, {}),
    "escort": CommandSpec(r.EscortConfirmed, _ACTOR, {"name": _str}),
    "controlled": CommandSpec(r.ControlledDrug, {"action": _str, "witness": _str, **_ACTOR}, {"volume_ml": _float}),
    "manual_bolus": CommandSpec(r.ManualBolus, {"dose_mg": _float, **_ACTOR}, {"route": _str, "note": _str}),
    "baseline": CommandSpec(r.CaptureBaseline, _ACTOR, {}),
    "sedation": CommandSpec(r.SedationScore, {"scale": _scale, "score": _int, **_ACTOR}, {}),
    "pain": CommandSpec(r.PainScore, {"score": _int, **_ACTOR}, {}),
    "effects": CommandSpec(r.PsychomimeticEffects, {"effects": _effects, **_ACTOR}, {"note": _str, "severity": _str}),
    "rescue": CommandSpec(r.RescueMedication, {"drug": _str, "dose_mg": _float, "route": _str, **_ACTOR},
                          {"reason": _str}),
    "ack": CommandSpec(r.Acknowledge, {"rule_id": _str, **_ACTOR}, {"alarm_seq": _opt_int}),
    "audio_pause": CommandSpec(r.AudioPause, _ACTOR, {}),
    "reset": CommandSpec(r.ResetAlarm, {"rule_id": _str, **_ACTOR}, {}),
    "checklist": CommandSpec(r.ChecklistAnswers, {"answers": _answers, **_ACTOR}, {}),
    "interlock_release": CommandSpec(r.InterlockRelease, {"reason": _str, **_ACTOR}, {}),
    "override": CommandSpec(r.Override, {"rule_id": _str, "reason": _str, **_ACTOR}, {"entered_by": _str}),
}

_ENVELOPE = {"type", "id"}


def to_input(msg: dict[str, Any]) -> r.Input:
    """Build the engine input for one command message. Raises ``ProtocolError``."""
    kind = msg.get("type")
    spec = COMMANDS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise ProtocolError(f"unknown command type {kind!r} (known: {', '.join(COMMANDS)})")
    fields = {k: v for k, v in msg.items() if k not in _ENVELOPE}
    unknown = set(fields) - set(spec.required) - set(spec.optional)
    if unknown:
        raise ProtocolError(f"{kind}: unknown field(s) {', '.join(sorted(unknown))}")
    missing = set(spec.required) - set(fields)
    if missing:
        raise ProtocolError(f"{kind}: missing field(s) {', '.join(sorted(missing))}")
    kwargs = {name: (spec.required.get(name) or spec.optional[name])(value, name) for name, value in fields.items()}
    item: r.Input = spec.cls(**kwargs)
    return item
