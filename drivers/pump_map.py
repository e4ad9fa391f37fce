"""Register maps for Modbus syringe pumps: loading, validation and register decoding.

No clinical register map is standardised, so which register holds what is data, not code: a
TOML file (``config/pump-map.toml`` is the documented default) that a site replaces for its
pump. A map is validated as a whole when loaded; any error names the file and the entry.

Pure functions only: no I/O besides reading the map file, no pymodbus.
"""

from __future__ import annotations

import math
import struct
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from monitord.config import DEFAULTS_PATH
from monitord.readings import DeviceAlarmCode, PumpState

DEFAULT_MAP_PATH = DEFAULTS_PATH.parent / "pump-map.toml"  # shipped in the package; config/pump-map.toml links here
MAX_BLOCK = 125  # registers one Modbus read (function 3) may return


class PumpMapError(Exception):
    """A register map that cannot be used; the message names the file and the entry."""


class RegType(StrEnum):
    UINT16 = "uint16"
    INT16 = "int16"
    UINT32 = "uint32"
    INT32 = "int32"
    FLOAT32 = "float32"
    STRING = "string"  # ASCII, two characters per register, high byte first, NUL/space padded


WIDTH = {RegType.UINT16: 1, RegType.INT16: 1, RegType.UINT32: 2, RegType.INT32: 2, RegType.FLOAT32: 2}


class PumpCommand(StrEnum):
    """The only commands monitord can send a pump. There is deliberately no rate command."""

    STOP = "stop"
    PAUSE = "pause"


# Quantity -> allowed units and the factor that converts one unit into monitord's unit.
_RATE = {"mL/h": 1.0, "mL/min": 60.0, "uL/h": 0.001, "uL/min": 0.06}
_VOLUME = {"mL": 1.0, "uL": 0.001}
QUANTITY_UNITS: dict[str, dict[str, float]] = {
    "rate_ml_h": _RATE,
    "volume_infused_ml": _VOLUME,
    "volume_to_be_infused_ml": _VOLUME,
    "syringe_ml": _VOLUME,
    "bolus_ml": _VOLUME,
    "concentration_mg_ml": {"mg/mL": 1.0, "ug/mL": 0.001},
    "state": {"enum": 1.0},
    "alarms": {"bits": 1.0},
    "drug": {"text": 1.0, "code": 1.0},
    "device_time": {"s": 1.0},  # Unix seconds, UTC
}
REQUIRED = ("rate_ml_h", "volume_infused_ml", "state")
_ENTRY_KEYS = {"name", "address", "type", "word_order", "scale", "unit", "words", "values", "bits", "codes"}


@dataclass(frozen=True)
class MapEntry:
    name: str
    address: int
    type: RegType
    unit: str
    scale: float = 1.0
    word_order: str = "big"  # "big": high word at the lower address
    words: int = 1
    values: dict[int, PumpState] = field(default_factory=dict)  # state: register value -> state
    bits: dict[DeviceAlarmCode, int] = field(default_factory=dict)  # alarms: code -> bit number
    codes: dict[int, str] = field(default_factory=dict)  # drug given as a numeric code

    @property
    def end(self) -> int:
        """One past the last register this entry occupies."""
        return self.address + self.words


@dataclass(frozen=True)
class CommandRegister:
    address: int
    values: dict[PumpCommand, int]


@dataclass(frozen=True)
class PumpMap:
    source: str
    entries: dict[str, MapEntry]
    commands: CommandRegister | None
    start: int  # first register of the block read each poll
    count: int  # registers in that block

    @property
    def rate_span(self) -> range:
        rate = self.entries["rate_ml_h"]
        return range(rate.address, rate.end)


def load_map(path: str | Path | None = None) -> PumpMap:
    """Read and validate a map file (the shipped default when ``path`` is None)."""
    p = Path(path) if path is not None else DEFAULT_MAP_PATH
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise PumpMapError(f"{p}: no such pump map file") from None
    except tomllib.TOMLDecodeError as exc:
        raise PumpMapError(f"{p}: not valid TOML: {exc}") from None
    return parse_map(data, str(p))


def parse_map(data: dict[str, Any], source: str = "<pump map>") -> PumpMap:
    unknown = set(data) - {"pump_map", "entry", "commands"}
    if unknown:
        raise PumpMapError(f"{source}: unknown top-level key(s) {sorted(unknown)}")
    header = data.get("pump_map", {})
    default_order = header.get("word_order", "big")
    if default_order not in ("big", "little"):
        raise PumpMapError(f"{source}: [pump_map] word_order = {default_order!r}: use 'big' or 'little'")
    raw_entries = data.get("entry")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise PumpMapError(f"{source}: no [[entry]] tables")
    entries: dict[str, MapEntry] = {}
    for i, raw in enumerate(raw_entries, start=1):
        entry = _parse_entry(raw, default_order, f"{source}: entry #{i}")
        if entry.name in entries:
            raise PumpMapError(f"{source}: entry #{i} '{entry.name}': quantity given twice")
        entries[entry.name] = entry
    missing = [name for name in REQUIRED if name not in entries]
    if missing:
        raise PumpMapError(f"{source}: required quantity missing: {', '.join(missing)}")
    ordered = sorted(entries.values(), key=lambda e: e.address)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b.address < a.end:
            raise PumpMapError(
                f"{source}: entry '{b.name}' (register {b.address}) overlaps '{a.name}' "
                f"(registers {a.address}..{a.end - 1})"
            )
    start, end = ordered[0].address, max(e.end for e in ordered)
    if end - start > MAX_BLOCK:
        raise PumpMapError(
            f"{source}: entries span registers {start}..{end - 1} ({end - start}); "
            f"one read covers at most {MAX_BLOCK}"
        )
    commands = _parse_commands(data.get("commands"), ordered, source)
    return PumpMap(source, entries, commands, start, end - start)


def _parse_entry(raw: Any, default_order: str, where: str) -> MapEntry:
    if not isinstance(raw, dict):
        raise PumpMapError(f"{where}: must be a table")
    name = raw.get("name")
    where = f"{where} '{name}'" if name else where
    extra = set(raw) - _ENTRY_KEYS
    if extra:
        raise PumpMapError(f"{where}: unknown key(s) {sorted(extra)}")
    if name not in QUANTITY_UNITS:
        raise PumpMapError(f"{where}: unknown quantity name; known: {', '.join(QUANTITY_UNITS)}")
    address = raw.get("address")
    if not isinstance(address, int) or isinstance(address, bool) or not 0 <= address <= 0xFFFF:
        raise PumpMapError(f"{where}: address = {address!r}: need an integer register 0..65535")
    try:
        rtype = RegType(str(raw.get("type")))
    except ValueError:
        raise PumpMapError(
            f"{where}: type = {raw.get('type')!r}: unknown type; use one of {', '.join(RegType)}"
        ) from None
    unit = raw.get("unit")
    if unit not in QUANTITY_UNITS[name]:
        raise PumpMapError(f"{where}: unit = {unit!r}: allowed for {name}: {', '.join(QUANTITY_UNITS[name])}")
    scale = raw.get("scale", 1.0)
    if not isinstance(scale, int | float) or isinstance(scale, bool) or not math.isfinite(scale) or scale == 0:
        raise PumpMapError(f"{where}: scale = {scale!r}: need a finite non-zero number")
    order = raw.get("word_order", default_order)
    if order not in ("big", "little"):
        raise PumpMapError(f"{where}: word_order = {order!r}: use 'big' or 'little'")
    if rtype is RegType.STRING:
        if name != "drug":
            raise PumpMapError(f"{where}: type 'string' is only for the drug name")
        words = raw.get("words")
        if not isinstance(words, int) or not 1 <= words <= 16:
            raise PumpMapError(f"{where}: a string needs words = 1..16 (two characters per register)")
    else:
        words = WIDTH[rtype]
        if "words" in raw:
            raise PumpMapError(f"{where}: 'words' applies to type 'string' only")
    if address + words > 0x10000:
        raise PumpMapError(f"{where}: runs past register 65535")
    values: dict[int, PumpState] = {}
    bits: dict[DeviceAlarmCode, int] = {}
    codes: dict[int, str] = {}
    if name == "state":
        values = _parse_state_values(raw.get("values"), rtype, where)
    elif "values" in raw:
        raise PumpMapError(f"{where}: 'values' applies to 'state' only")
    if name == "alarms":
        bits = _parse_bits(raw.get("bits"), words, rtype, where)
    elif "bits" in raw:
        raise PumpMapError(f"{where}: 'bits' applies to 'alarms' only")
    if name == "drug" and unit == "code":
        if rtype not in (RegType.UINT16, RegType.UINT32):
            raise PumpMapError(f"{where}: a drug code must be uint16 or uint32")
        codes = _parse_codes(raw.get("codes"), where)
    elif name == "drug" and rtype is not RegType.STRING:
        raise PumpMapError(f"{where}: unit 'text' needs type 'string'; use unit 'code' with a codes table")
    elif "codes" in raw:
        raise PumpMapError(f"{where}: 'codes' applies to a drug given as a code only")
    return MapEntry(name, address, rtype, unit, float(scale), order, words, values, bits, codes)


def _parse_state_values(raw: Any, rtype: RegType, where: str) -> dict[int, PumpState]:
    if rtype not in (RegType.UINT16, RegType.INT16):
        raise PumpMapError(f"{where}: state must be uint16 or int16")
    if not isinstance(raw, dict) or not raw:
        raise PumpMapError(f"{where}: state needs a values table, e.g. values = {{ 0 = \"stopped\" }}")
    out: dict[int, PumpState] = {}
    for key, state in raw.items():
        try:
            out[int(key)] = PumpState(state)
        except ValueError:
            raise PumpMapError(
                f"{where}: values.{key} = {state!r}: need an integer key and one of {', '.join(PumpState)}"
            ) from None
    return out


def _parse_bits(raw: Any, words: int, rtype: RegType, where: str) -> dict[DeviceAlarmCode, int]:
    if rtype not in (RegType.UINT16, RegType.UINT32):
        raise PumpMapError(f"{where}: alarms must be uint16 or uint32")
    if not isinstance(raw, dict) or not raw:
        raise PumpMapError(f"{where}: alarms need a bits table, e.g. bits = {{ occlusion = 0 }}")
    out: dict[DeviceAlarmCode, int] = {}
    for code, bit in raw.items():
        try:
            alarm = DeviceAlarmCode(code)
        except ValueError:
            raise PumpMapError(f"{where}: bits.{code}: unknown alarm; known: {', '.join(DeviceAlarmCode)}") from None
        if not isinstance(bit, int) or not 0 <= bit < 16 * words:
            raise PumpMapError(f"{where}: bits.{code} = {bit!r}: need a bit number 0..{16 * words - 1}")
        if bit in out.values():
            raise PumpMapError(f"{where}: bits.{code} = {bit}: bit used twice")
        out[alarm] = bit
    return out


def _parse_codes(raw: Any, where: str) -> dict[int, str]:
    if not isinstance(raw, dict) or not raw:
        raise PumpMapError(f"{where}: a drug code needs a codes table, e.g. codes = {{ 1 = \"ketamine\" }}")
    try:
        return {int(k): str(v) for k, v in raw.items()}
    except ValueError:
        raise PumpMapError(f"{where}: codes keys must be integers") from None


def _parse_commands(raw: Any, entries: list[MapEntry], source: str) -> CommandRegister | None:
    if raw is None:
        return None
    where = f"{source}: [commands]"
    if not isinstance(raw, dict):
        raise PumpMapError(f"{where}: must be a table")
    extra = set(raw) - {"address", *PumpCommand}
    if extra:
        raise PumpMapError(f"{where}: unknown key(s) {sorted(extra)}; only stop and pause exist")
    address = raw.get("address")
    if not isinstance(address, int) or isinstance(address, bool) or not 0 <= address <= 0xFFFF:
        raise PumpMapError(f"{where}: address = {address!r}: need an integer register 0..65535")
    for e in entries:
        # The command register may share no register with any quantity, the rate above all.
        if e.address <= address < e.end:
            raise PumpMapError(f"{where}: address {address} is inside entry '{e.name}'; commands need their own register")
    values: dict[PumpCommand, int] = {}
    for cmd in PumpCommand:
        if cmd.value in raw:
            v = raw[cmd.value]
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 0xFFFF:
                raise PumpMapError(f"{where}: {cmd.value} = {v!r}: need a register value 0..65535")
            values[cmd] = v
    if not values:
        raise PumpMapError(f"{where}: give a value for stop and/or pause")
    return CommandRegister(address, values)


# --- register decoding ---------------------------------------------------------------------


def _words_to_bytes(regs: list[int] | tuple[int, ...], order: str) -> bytes:
    seq = regs if order == "big" else list(reversed(regs))
    return b"".join((r & 0xFFFF).to_bytes(2, "big") for r in seq)


def raw_value(entry: MapEntry, regs: list[int] | tuple[int, ...]) -> int | float | str:
    """The unscaled value of ``entry`` from its own registers (``len(regs) == entry.words``)."""
    if entry.type is RegType.STRING:
        raw = _words_to_bytes(regs, "big")
        return raw.split(b"\x00", 1)[0].decode("ascii", "replace").strip()
    data = _words_to_bytes(regs, entry.word_order)
    fmt = {
        RegType.UINT16: ">H",
        RegType.INT16: ">h",
        RegType.UINT32: ">I",
        RegType.INT32: ">i",
        RegType.FLOAT32: ">f",
    }[entry.type]
    value: int | float = struct.unpack(fmt, data)[0]
    return value


def encode_value(entry: MapEntry, value: int | float | str) -> list[int]:
    """Registers that hold ``value`` (in the entry's unit, before scale) — the device side."""
    if entry.type is RegType.STRING:
        raw = str(value).encode("ascii")[: entry.words * 2].ljust(entry.words * 2, b"\x00")
        return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if entry.type is RegType.FLOAT32:
        data = struct.pack(">f", float(value) / entry.scale)
    else:
        fmt = {RegType.UINT16: ">H", RegType.INT16: ">h", RegType.UINT32: ">I", RegType.INT32: ">i"}[entry.type]
        data = struct.pack(fmt, round(float(value) / entry.scale))
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return words if entry.word_order == "big" else list(reversed(words))


@dataclass(frozen=True)
class Decoded:
    """One poll's worth of values, in monitord's units. ``None``: not in the map or not valid."""

    state: PumpState
    values: dict[str, float | None]
    drug: str | None
    alarms: frozenset[DeviceAlarmCode] | None  # None: the map has no alarm register
    device_time: float | None
    questionable: list[str]  # what made this poll questionable (unknown state, non-finite value)


def decode_block(pmap: PumpMap, block: list[int] | tuple[int, ...]) -> Decoded:
    """Decode the registers read from ``pmap.start`` (``len(block) == pmap.count``). Total:
    any register contents give a ``Decoded``; oddities are listed in ``questionable``."""
    if len(block) != pmap.count:
        raise ValueError(f"need {pmap.count} registers, got {len(block)}")
    questionable: list[str] = []
    values: dict[str, float | None] = {}
    state = PumpState.UNKNOWN
    drug: str | None = None
    alarms: frozenset[DeviceAlarmCode] | None = None
    device_time: float | None = None
    for entry in pmap.entries.values():
        regs = block[entry.address - pmap.start : entry.end - pmap.start]
        raw = raw_value(entry, regs)
        if entry.name == "state":
            found = entry.values.get(int(raw))
            if found is None:
                questionable.append(f"unknown state value {raw}")
            else:
                state = found
        elif entry.name == "alarms":
            alarms = frozenset(code for code, bit in entry.bits.items() if int(raw) >> bit & 1)
        elif entry.name == "drug":
            if isinstance(raw, str):
                drug = raw or None
            else:
                drug = entry.codes.get(int(raw))
                if drug is None and raw != 0:
                    questionable.append(f"unknown drug code {raw}")
        else:
            assert not isinstance(raw, str)
            value = raw * entry.scale * QUANTITY_UNITS[entry.name][entry.unit]
            if not math.isfinite(value):
                questionable.append(f"{entry.name} not a finite number")
                value_or_none: float | None = None
            else:
                value_or_none = value
            if entry.name == "device_time":
                device_time = value_or_none
            else:
                values[entry.name] = value_or_none
    return Decoded(state, values, drug, alarms, device_time, questionable)
