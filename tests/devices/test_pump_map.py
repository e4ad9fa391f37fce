"""Pump register maps: the shipped map loads, bad maps are refused with a clear message, register
decoding is exact and total, and no map or code path can aim a write at the rate register."""

from __future__ import annotations

import ast
import copy
import math
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitord.drivers import modbus_pump as mb
from monitord.drivers.base import ProtocolError
from monitord.drivers.pump_map import (
    DEFAULT_MAP_PATH,
    MapEntry,
    PumpCommand,
    PumpMapError,
    RegType,
    decode_block,
    encode_value,
    load_map,
    parse_map,
    raw_value,
)
from monitord.readings import DeviceAlarmCode, PumpState

ROOT = Path(__file__).resolve().parents[2]


def default_data() -> dict:
    with DEFAULT_MAP_PATH.open("rb") as fh:
        return tomllib.load(fh)


def entry(data: dict, name: str) -> dict:
    return next(e for e in data["entry"] if e["name"] == name)


def test_default_map_loads_with_every_quantity() -> None:
    pmap = load_map()
    assert set(pmap.entries) == {
        "rate_ml_h", "volume_infused_ml", "volume_to_be_infused_ml", "syringe_ml", "drug",
        "concentration_mg_ml", "state", "bolus_ml", "alarms", "device_time",
    }
    assert (pmap.start, pmap.count) == (0, 19)
    assert pmap.commands is not None and pmap.commands.address == 32
    assert set(pmap.entries["alarms"].bits) == {
        DeviceAlarmCode.OCCLUSION, DeviceAlarmCode.NEAR_EMPTY, DeviceAlarmCode.EMPTY,
        DeviceAlarmCode.LOW_BATTERY, DeviceAlarmCode.DOOR_OPEN,
    }


def test_map_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(PumpMapError, match="no such pump map file"):
        load_map(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[entry]\nname=")
    with pytest.raises(PumpMapError, match=r"bad\.toml: not valid TOML"):
        load_map(bad)


def test_unknown_type_names_file_and_entry() -> None:
    data = default_data()
    entry(data, "syringe_ml")["type"] = "uint8"
    with pytest.raises(PumpMapError, match=r"site\.toml: entry #4 'syringe_ml': type = 'uint8': unknown type"):
        parse_map(data, "site.toml")


def test_overlapping_registers_are_refused() -> None:
    data = default_data()
    entry(data, "volume_infused_ml")["address"] = 1  # inside the 2-word rate
    with pytest.raises(PumpMapError, match=r"site\.toml: entry 'volume_infused_ml' \(register 1\) overlaps 'rate_ml_h'"):
        parse_map(data, "site.toml")


@pytest.mark.parametrize("name", ["rate_ml_h", "volume_infused_ml", "state"])
def test_missing_required_quantity_is_refused(name: str) -> None:
    data = default_data()
    data["entry"] = [e for e in data["entry"] if e["name"] != name]
    with pytest.raises(PumpMapError, match=rf"site\.toml: required quantity missing: {name}"):
        parse_map(data, "site.toml")


@pytest.mark.parametrize(
    ("name", "key", "value", "message"),
    [
        ("rate_ml_h", "unit", "L/h", "unit = 'L/h': allowed for rate_ml_h"),
        ("rate_ml_h", "scale", 0, "scale = 0"),
        ("rate_ml_h", "word_order", "middle", "word_order = 'middle'"),
        ("rate_ml_h", "colour", "red", "unknown key"),
        ("state", "values", {"0": "asleep"}, "values.0 = 'asleep'"),
        ("alarms", "bits", {"fire": 1}, "bits.fire: unknown alarm"),
        ("alarms", "bits", {"occlusion": 16}, "bits.occlusion = 16"),
        ("drug", "words", 0, "words = 1..16"),
    ],
)
def test_bad_entry_fields_are_refused(name: str, key: str, value: object, message: str) -> None:
    data = default_data()
    entry(data, name)[key] = value
    with pytest.raises(PumpMapError, match=rf"'{name}'.*{message}".replace("(", r"\(").replace(")", r"\)")):
        parse_map(data, "site.toml")


def test_unknown_quantity_and_duplicate_are_refused() -> None:
    data = default_data()
    data["entry"].append({"name": "flow", "address": 40, "type": "uint16", "unit": "mL/h"})
    with pytest.raises(PumpMapError, match="'flow': unknown quantity name"):
        parse_map(data, "m")
    data = default_data()
    data["entry"].append(dict(entry(data, "rate_ml_h"), address=50))
    with pytest.raises(PumpMapError, match="'rate_ml_h': quantity given twice"):
        parse_map(data, "m")


def test_block_wider_than_one_read_is_refused() -> None:
    data = default_data()
    entry(data, "device_time")["address"] = 200
    with pytest.raises(PumpMapError, match="one read covers at most 125"):
        parse_map(data, "m")


def test_drug_as_code_decodes_through_its_table() -> None:
    data = default_data()
    drug = entry(data, "drug")
    drug.clear()
    drug.update(name="drug", address=8, type="uint16", unit="code", codes={"1": "ketamine"})
    pmap = parse_map(data, "m")
    block = [0] * pmap.count
    block[8] = 1
    block[14] = 1
    assert decode_block(pmap, block).drug == "ketamine"
    block[8] = 7
    decoded = decode_block(pmap, block)
    assert decoded.drug is None and decoded.questionable == ["unknown drug code 7"]


# --- the rate register cannot be written ----------------------------------------------------


@pytest.mark.parametrize("address", [0, 1, 14, 18])
def test_command_register_inside_any_entry_is_refused(address: int) -> None:
    data = default_data()
    data["commands"]["address"] = address
    with pytest.raises(PumpMapError, match=rf"\[commands\]: address {address} is inside entry"):
        parse_map(data, "site.toml")


def test_only_stop_and_pause_exist_as_commands() -> None:
    data = default_data()
    data["commands"]["rate"] = 500
    with pytest.raises(PumpMapError, match="only stop and pause exist"):
        parse_map(data, "m")
    assert {c.value for c in PumpCommand} == {"stop", "pause"}


@settings(max_examples=300, deadline=None)
@given(
    rate_addr=st.integers(0, 100),
    cmd_addr=st.integers(0, 0xFFFF),
    stop=st.integers(0, 0xFFFF),
)
def test_no_valid_map_aims_a_command_at_the_rate(rate_addr: int, cmd_addr: int, stop: int) -> None:
    data = {
        "entry": [
            {"name": "rate_ml_h", "address": rate_addr, "type": "uint32", "unit": "mL/h"},
            {"name": "volume_infused_ml", "address": rate_addr + 2, "type": "uint16", "unit": "mL"},
            {"name": "state", "address": rate_addr + 3, "type": "uint16", "unit": "enum", "values": {"0": "stopped"}},
        ],
        "commands": {"address": cmd_addr, "stop": stop},
    }
    try:
        pmap = parse_map(data, "m")
    except PumpMapError:
        return
    assert pmap.commands is not None
    frame = mb.encode_command_request(1, pmap.commands, PumpCommand.STOP)
    written = int.from_bytes(frame[2:4], "big")
    assert frame[1] == mb.WRITE_SINGLE
    assert written not in pmap.rate_span


def test_no_code_path_builds_another_write() -> None:
    """The only Modbus write PDU in drivers/ is built in encode_command_request, whose address is
    the map's command register; the NE-500 encoder has no parameter to carry a rate."""
    writes = {"WriteSingleRegisterRequest", "WriteMultipleRegistersRequest", "ReadWriteMultipleRegistersRequest",
              "MaskWriteRegisterRequest", "write_register", "write_registers"}
    found: list[tuple[str, str]] = []
    for path in (ROOT / "drivers").glob("*.py"):
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(func):
                    if isinstance(node, ast.Call):
                        name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                        if name in writes:
                            found.append((path.name, func.name))
    assert found == [("modbus_pump.py", "encode_command_request")]
    src = ast.parse((ROOT / "drivers" / "modbus_pump.py").read_text())
    fn = next(n for n in ast.walk(src) if isinstance(n, ast.FunctionDef) and n.name == "encode_command_request")
    assert [a.arg for a in fn.args.args] == ["unit", "commands", "command"]  # no address, no value
    from monitord.drivers import ne500

    assert {c.value for c in ne500.Action} == {"STP"}
    assert "RAT" not in {c.value for c in ne500.Action}


# --- register decoding ----------------------------------------------------------------------

regs16 = st.integers(0, 0xFFFF)


@settings(max_examples=500, deadline=None)
@given(st.lists(regs16, min_size=19, max_size=19))
def test_decode_block_is_total_on_any_registers(block: list[int]) -> None:
    pmap = load_map()
    decoded = decode_block(pmap, block)
    assert isinstance(decoded.state, PumpState)
    for value in decoded.values.values():
        assert value is None or math.isfinite(value)
    if decoded.state is PumpState.UNKNOWN:
        assert decoded.questionable


@settings(max_examples=500, deadline=None)
@given(
    rtype=st.sampled_from([RegType.UINT16, RegType.INT16, RegType.UINT32, RegType.INT32]),
    order=st.sampled_from(["big", "little"]),
    scale=st.sampled_from([1.0, 0.1, 0.01, 0.001]),
    data=st.data(),
)
def test_integer_registers_round_trip(rtype: RegType, order: str, scale: float, data: st.DataObject) -> None:
    bits = 16 if rtype in (RegType.UINT16, RegType.INT16) else 32
    signed = rtype in (RegType.INT16, RegType.INT32)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    counts = data.draw(st.integers(lo, hi))
    e = MapEntry("rate_ml_h", 0, rtype, "mL/h", scale, order, bits // 16)
    regs = encode_value(e, counts * scale)
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert raw_value(e, regs) == counts


@settings(max_examples=300, deadline=None)
@given(st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from(["big", "little"]))
def test_float32_round_trip_and_word_order(value: float, order: str) -> None:
    e = MapEntry("concentration_mg_ml", 0, RegType.FLOAT32, "mg/mL", 1.0, order, 2)
    regs = encode_value(e, value)
    assert raw_value(e, regs) == value
    other = MapEntry("concentration_mg_ml", 0, RegType.FLOAT32, "mg/mL", 1.0, "little" if order == "big" else "big", 2)
    assert raw_value(other, list(reversed(regs))) == value


def test_known_register_values_decode_to_units() -> None:
    pmap = load_map()
    block = [0] * pmap.count
    block[0:2] = [0x0001, 0x86A0]  # 100000 x 0.01 = 1000.00 mL/h
    block[2:4] = [0, 12345]  # 12.345 mL
    block[8:12] = [0x6B65, 0x7461, 0x6D69, 0x6E65]  # "ketamine"
    block[12:14] = [0x4120, 0x0000]  # float32 10.0
    block[14] = 3
    block[16] = 0b10001  # occlusion + door open
    d = decode_block(pmap, block)
    assert d.values["rate_ml_h"] == pytest.approx(1000.0)
    assert d.values["volume_infused_ml"] == pytest.approx(12.345)
    assert d.drug == "ketamine" and d.values["concentration_mg_ml"] == 10.0
    assert d.state is PumpState.BOLUS
    assert d.alarms == {DeviceAlarmCode.OCCLUSION, DeviceAlarmCode.DOOR_OPEN}
    data = copy.deepcopy(default_data())
    entry(data, "rate_ml_h").update(unit="uL/min", scale=1.0)
    block[0:2] = [0, 1000]  # 1000 uL/min = 60 mL/h
    assert decode_block(parse_map(data, "m"), block).values["rate_ml_h"] == pytest.approx(60.0)


# --- RTU response decoding ------------------------------------------------------------------


def test_rtu_read_response_round_trip_and_rejections() -> None:
    frame = mb.encode_read_response(1, [1, 2, 3])
    assert frame.hex() == "010306000100020003fd74"
    assert mb.decode_read_response(frame, 1, 3) == [1, 2, 3]
    with pytest.raises(ProtocolError, match="no valid RTU frame"):  # another unit's reply
        mb.decode_read_response(frame, 2, 3)
    with pytest.raises(ProtocolError, match="3 registers, expected 4"):
        mb.decode_read_response(frame, 1, 4)
    with pytest.raises(ProtocolError, match="bad CRC"):
        mb.decode_read_response(frame[:-1] + b"\x00", 1, 3)
    with pytest.raises(ProtocolError, match="exception 2"):
        mb.decode_read_response(mb.encode_exception(1, 3, 2), 1, 3)
    assert mb.decode_read_response(b"\xff\x00" + frame, 1, 3) == [1, 2, 3]  # leading noise skipped


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=64))
def test_rtu_response_decoding_is_total(data: bytes) -> None:
    try:
        regs = mb.decode_read_response(data, 1, 19)
    except ProtocolError:
        return
    assert len(regs) == 19 and all(0 <= r <= 0xFFFF for r in regs)
