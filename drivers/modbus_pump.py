"""Syringe pump over Modbus RTU, read through a site-editable register map.

Each poll reads the map's register block with one "read holding registers" request (function 3),
decodes it with ``drivers.pump_map`` and emits a ``PumpReading`` and, when the set changes, a
``DeviceAlarm``. The only write that exists is a stop/pause value to the map's command register,
and only with ``allow_stop_commands``; the map refuses a command register that overlaps any
quantity, so the rate register cannot be written.

Every pymodbus call in monitord lives in this module (pymodbus changes its API between minor
versions; pinned to 3.8.x): the RTU framer, CRC and PDU classes for both the host side (this
driver) and the device side (``simulators/pump_modbus_sim.py``). The serial I/O is ours
(``drivers.pump_serial``), so a pty, a real port and ``socket://`` behave alike and every fault
is visible to the driver as bytes.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.pdu import ExceptionResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    WriteSingleRegisterRequest,
    WriteSingleRegisterResponse,
)

from monitord.config import PumpDevice
from monitord.drivers.base import Driver, Emit, LinkLost, ProtocolError
from monitord.drivers.pump_map import CommandRegister, PumpCommand, PumpMap, decode_block, load_map
from monitord.drivers.pump_serial import SerialLine
from monitord.readings import DeviceAlarm, DeviceAlarmCode, DeviceRole, PumpReading, Quality

log = logging.getLogger(__name__)

READ_HOLDING = 3
WRITE_SINGLE = 6
ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2

# pymodbus logs every exception response it builds or decodes at ERROR level; that is the
# device's answer, which we count ourselves, not a fault of ours.
logging.getLogger("pymodbus.logging").setLevel(logging.CRITICAL)



def _release_server_datastore() -> None:
    """pymodbus (3.8) builds its server context's default data blocks, four lists of 65,536
    registers, when its PDU modules are imported: 2 MB that a Modbus client (this driver, the
    simulator's device side) never uses. Replace them with one-register blocks; nothing in
    monitord builds a pymodbus server context."""
    try:
        from pymodbus.datastore import ModbusSequentialDataBlock, ModbusSlaveContext

        defaults = ModbusSlaveContext.__init__.__kwdefaults__
        if defaults and all(isinstance(v, ModbusSequentialDataBlock) for v in defaults.values()):
            ModbusSlaveContext.__init__.__kwdefaults__ = {k: ModbusSequentialDataBlock(0, [0]) for k in defaults}
    except (ImportError, AttributeError, TypeError):  # another pymodbus: leave it as it is
        pass


_release_server_datastore()
_HOST_FRAMER = FramerRTU(DecodePDU(is_server=False))
_DEVICE_FRAMER = FramerRTU(DecodePDU(is_server=True))
# What pymodbus may raise on malformed input; converted to ProtocolError at this boundary.
_DECODE_ERRORS = (ModbusException, struct.error, ValueError, IndexError, KeyError, TypeError)


# --- host side: requests and replies --------------------------------------------------------


def encode_read_request(unit: int, start: int, count: int) -> bytes:
    return _HOST_FRAMER.buildFrame(ReadHoldingRegistersRequest(address=start, count=count, dev_id=unit))


def encode_command_request(unit: int, commands: CommandRegister, command: PumpCommand) -> bytes:
    """The one write monitord can make: ``command``'s value to the command register."""
    value = commands.values[command]
    return _HOST_FRAMER.buildFrame(
        WriteSingleRegisterRequest(address=commands.address, registers=[value], dev_id=unit)
    )


def _decode(framer: FramerRTU, frame: bytes) -> ModbusPDU | None:
    try:
        _, pdu = framer.processIncomingFrame(frame)
    except _DECODE_ERRORS as exc:
        raise ProtocolError(f"undecodable RTU frame: {exc}") from None
    return pdu


def _find_response(frame: bytes, unit: int, function: int, length: int) -> ModbusPDU | None:
    """The first well-formed reply from ``unit`` to ``function`` inside ``frame``.

    Noise before a reply is skipped by trying only offsets where the unit and function (or its
    exception form) appear, each with the reply's exact length and its CRC checked first:
    pymodbus's own hunt tries every length at every offset, a CRC each, which is quadratic on a
    garbled line.
    """
    marker = bytes([unit])
    i = frame.find(marker)
    while 0 <= i < len(frame) - 1:
        fc = frame[i + 1]
        if fc == function or fc == function | 0x80:
            candidate = frame[i : i + (length if fc == function else 5)]
            if len(candidate) >= 4 and FramerRTU.check_CRC(candidate[:-2], int.from_bytes(candidate[-2:], "big")):
                pdu = _decode(_HOST_FRAMER, candidate)
                if pdu is not None:
                    return pdu
        i = frame.find(marker, i + 1)
    return None


def response_complete(buf: bytes, unit: int, function: int, length: int) -> bool:
    """Whether ``buf`` holds a whole reply (good CRC) from ``unit`` to ``function``."""
    try:
        return _find_response(buf, unit, function, length) is not None
    except ProtocolError:
        return False


def _check_response(pdu: ModbusPDU | None, frame: bytes, unit: int, function: int) -> ModbusPDU:
    if pdu is None:
        raise ProtocolError(f"no valid RTU frame (short, bad CRC or garbled): {frame[:16].hex()}")
    if pdu.dev_id != unit:
        raise ProtocolError(f"reply from unit {pdu.dev_id}, expected {unit}")
    if isinstance(pdu, ExceptionResponse):
        raise ProtocolError(f"pump answered exception {pdu.exception_code} to function {function}")
    if pdu.function_code != function:
        raise ProtocolError(f"reply is function {pdu.function_code}, expected {function}")
    return pdu


def decode_read_response(frame: bytes, unit: int, count: int) -> list[int]:
    """A reply to ``encode_read_request`` -> its ``count`` registers; else ``ProtocolError``."""
    pdu = _find_response(frame, unit, READ_HOLDING, response_length(count))
    pdu = _check_response(pdu, frame, unit, READ_HOLDING)
    regs = list(pdu.registers) if isinstance(pdu, ReadHoldingRegistersResponse) else []
    if len(regs) != count:
        raise ProtocolError(f"reply holds {len(regs)} registers, expected {count}")
    return regs


def decode_write_response(frame: bytes, unit: int, address: int, value: int) -> None:
    pdu = _check_response(_find_response(frame, unit, WRITE_SINGLE, 8), frame, unit, WRITE_SINGLE)
    if pdu.address != address or list(pdu.registers) != [value]:
        raise ProtocolError("write echo does not match the request")


def response_length(count: int) -> int:
    """Bytes in a read reply carrying ``count`` registers."""
    return 5 + 2 * count


# --- device side (simulator) ----------------------------------------------------------------


@dataclass(frozen=True)
class DeviceRequest:
    unit: int
    function: int
    address: int
    count: int  # registers to read (function 3)
    value: int | None  # value to write (function 6)


def decode_request(buf: bytes) -> tuple[int, DeviceRequest | None]:
    """Device side: (bytes consumed, request or None while incomplete/garbled)."""
    try:
        used, pdu = _DEVICE_FRAMER.processIncomingFrame(buf)
    except _DECODE_ERRORS:
        return len(buf), None
    if pdu is None:
        return used, None
    value = pdu.registers[0] if pdu.function_code == WRITE_SINGLE and pdu.registers else None
    return used, DeviceRequest(pdu.dev_id, pdu.function_code, pdu.address, pdu.count, value)


def encode_read_response(unit: int, registers: list[int]) -> bytes:
    return _DEVICE_FRAMER.buildFrame(ReadHoldingRegistersResponse(registers=registers, dev_id=unit))


def encode_write_response(unit: int, address: int, value: int) -> bytes:
    return _DEVICE_FRAMER.buildFrame(WriteSingleRegisterResponse(address=address, registers=[value], dev_id=unit))


def encode_exception(unit: int, function: int, code: int) -> bytes:
    return _DEVICE_FRAMER.buildFrame(ExceptionResponse(function, code, slave=unit))


# --- the driver -----------------------------------------------------------------------------


class CommandRefused(Exception):
    """A stop/pause was asked for but is not allowed, not mapped, or the link is down."""


class ModbusPumpDriver(Driver):
    role = DeviceRole.PUMP

    def __init__(self, cfg: PumpDevice, emit: Emit, pump_map: PumpMap | None = None) -> None:
        super().__init__(cfg.name, emit, poll_interval_s=cfg.poll_interval_s, timeout_s=cfg.timeout_s)
        self.cfg = cfg
        self.map = pump_map if pump_map is not None else load_map(cfg.register_map)
        self.line = SerialLine(cfg.serial)
        self.reply_timeout_s = min(1.0, cfg.timeout_s / 2)
        self._io = asyncio.Lock()
        self._alarms: frozenset[DeviceAlarmCode] | None = None

    async def connect(self) -> None:
        self.line.open()
        self._alarms = None  # the next good poll re-sends the full alarm set

    async def close(self) -> None:
        self.line.close()

    async def _transact(self, request: bytes, function: int, expected_len: int) -> bytes:
        unit = self.cfg.modbus_unit

        def complete(buf: bytes) -> bool:
            return response_complete(buf, unit, function, expected_len)

        async with self._io:
            self.line.discard_input()
            await self.line.write(request)
            return await self.line.read_reply(complete, self.reply_timeout_s)

    async def poll(self) -> None:
        request = encode_read_request(self.cfg.modbus_unit, self.map.start, self.map.count)
        reply = await self._transact(request, READ_HOLDING, response_length(self.map.count))
        if not reply:
            return  # no answer: the base class turns a long silence into SILENT
        block = decode_read_response(reply, self.cfg.modbus_unit, self.map.count)
        decoded = decode_block(self.map, block)
        self.frame_ok()
        v = decoded.values
        device_time = None
        if decoded.device_time is not None and 0 < decoded.device_time < 2**32:
            device_time = datetime.fromtimestamp(decoded.device_time, UTC)
        self.emit(
            PumpReading(
                device=self.name,
                state=decoded.state,
                rate_ml_h=v.get("rate_ml_h"),
                volume_infused_ml=v.get("volume_infused_ml"),
                volume_to_be_infused_ml=v.get("volume_to_be_infused_ml"),
                syringe_ml=v.get("syringe_ml"),
                drug=decoded.drug,
                concentration_mg_ml=v.get("concentration_mg_ml"),
                bolus_ml=v.get("bolus_ml"),
                quality=Quality.QUESTIONABLE if decoded.questionable else Quality.VALID,
                device_time=device_time,
            )
        )
        if decoded.questionable:
            log.warning("%s: questionable reading: %s", self.name, "; ".join(decoded.questionable))
        if decoded.alarms is not None and decoded.alarms != self._alarms:
            self._alarms = decoded.alarms
            self.emit(DeviceAlarm(self.name, self.role, decoded.alarms))

    async def send_command(self, command: PumpCommand) -> None:
        """Stop or pause the pump (for a safety interlock). Raises ``CommandRefused``."""
        if not self.cfg.allow_stop_commands:
            raise CommandRefused("allow_stop_commands is off for this pump")
        commands = self.map.commands
        if commands is None or command not in commands.values:
            raise CommandRefused(f"the register map ({self.map.source}) has no '{command.value}' command")
        if not self.line.is_open:
            raise CommandRefused("pump link is down")
        request = encode_command_request(self.cfg.modbus_unit, commands, command)
        try:
            reply = await self._transact(request, WRITE_SINGLE, len(request))  # 6 echoes the request
            decode_write_response(reply, self.cfg.modbus_unit, commands.address, commands.values[command])
        except ProtocolError as exc:
            self.protocol_error(str(exc))
            raise CommandRefused(f"pump did not confirm {command.value}: {exc}") from exc
        except LinkLost as exc:
            raise CommandRefused(f"pump link lost: {exc}") from exc
        log.warning("%s: %s command sent and confirmed", self.name, command.value)


def build(cfg: PumpDevice, emit: Emit) -> Driver:
    return ModbusPumpDriver(cfg, emit)
