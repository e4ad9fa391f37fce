"""Device side of a Modbus RTU syringe pump, speaking the register map a driver reads.

Requests are decoded and replies encoded with the same pymodbus framer and PDU classes the driver
uses (``drivers.modbus_pump``); register contents come from ``drivers.pump_map.encode_value`` over
a ``PumpModel``. Register values are computed from the model at each read, so they follow the
syringe as it drains without an update task.

Accepted: read holding registers (3) inside the map's block; write single register (6) to the
command register with the map's stop or pause value. Everything else gets a Modbus exception:
illegal function (1) or illegal address (2), so not even another master could write the rate.

Run standalone: ``python -m monitord.simulators.pump_modbus_sim --pty /tmp/pump`` (or ``--tcp 5020``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import time
from collections.abc import Callable

from monitord.drivers import modbus_pump as mb
from monitord.drivers.pump_map import QUANTITY_UNITS, PumpCommand, PumpMap, encode_value, load_map
from monitord.readings import PumpState
from monitord.simulators.pump_endpoint import Endpoint, PtyEndpoint, TcpEndpoint, send_reply
from monitord.simulators.pump_model import PumpModel

log = logging.getLogger(__name__)


class ModbusPumpSim:
    def __init__(
        self,
        model: PumpModel,
        endpoint: Endpoint,
        pump_map: PumpMap | None = None,
        *,
        unit: int = 1,
        wall: Callable[[], float] = time.time,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.endpoint = endpoint
        self.map = pump_map if pump_map is not None else load_map()
        self.unit = unit
        self._wall = wall
        self._rng = random.Random(seed)
        self.writes: list[tuple[int, int]] = []  # (address, value) of every write accepted
        self.refused_writes: list[tuple[int, int | None]] = []
        self.requests = 0
        self._tasks: set[asyncio.Task[None]] = set()
        model.on_unplug = self._unplug
        self._state_value = {state: value for value, state in self.map.entries["state"].values.items()}

    def _unplug(self, duration_s: float) -> None:
        task = asyncio.get_running_loop().create_task(self.endpoint.unplug(duration_s))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def registers(self) -> list[int]:
        """The map's register block as the pump holds it now."""
        snap = self.model.snapshot()
        block = [0] * self.map.count
        values: dict[str, int | float | str] = {
            "rate_ml_h": snap.rate_ml_h,
            "volume_infused_ml": snap.volume_infused_ml,
            "volume_to_be_infused_ml": snap.volume_to_be_infused_ml,
            "syringe_ml": snap.syringe_ml,
            "bolus_ml": snap.bolus_ml,
            "concentration_mg_ml": snap.concentration_mg_ml,
            "device_time": int(self._wall()),
        }
        for entry in self.map.entries.values():
            if entry.name == "state":
                raw: int | float | str = self._state_value.get(snap.state, self._state_value.get(PumpState.STOPPED, 0))
            elif entry.name == "alarms":
                raw = sum(1 << bit for code, bit in entry.bits.items() if code in snap.alarms)
            elif entry.name == "drug":
                if entry.codes:
                    raw = next((k for k, v in entry.codes.items() if v == snap.drug), 0)
                else:
                    raw = snap.drug
            else:  # from monitord's unit back to the entry's unit
                raw = float(values[entry.name]) / QUANTITY_UNITS[entry.name][entry.unit]
            regs = encode_value(entry, raw)
            block[entry.address - self.map.start : entry.end - self.map.start] = regs
        return block

    def _answer(self, req: mb.DeviceRequest) -> bytes:
        if req.function == mb.READ_HOLDING:
            lo, hi = req.address, req.address + req.count
            if req.count < 1 or lo < self.map.start or hi > self.map.start + self.map.count:
                return mb.encode_exception(self.unit, req.function, mb.ILLEGAL_ADDRESS)
            block = self.registers()
            return mb.encode_read_response(self.unit, block[lo - self.map.start : hi - self.map.start])
        if req.function == mb.WRITE_SINGLE:
            commands = self.map.commands
            if commands is None or req.address != commands.address or req.value not in commands.values.values():
                self.refused_writes.append((req.address, req.value))
                return mb.encode_exception(self.unit, req.function, mb.ILLEGAL_ADDRESS)
            assert req.value is not None
            command = next(c for c, v in commands.values.items() if v == req.value)
            if command is PumpCommand.STOP:
                self.model.stop()
            else:
                self.model.pause()
            self.writes.append((req.address, req.value))
            return mb.encode_write_response(self.unit, req.address, req.value)
        return mb.encode_exception(self.unit, req.function, mb.ILLEGAL_FUNCTION)

    @staticmethod
    def _corrupt_crc(frame: bytes) -> bytes:
        return frame[:-1] + bytes([frame[-1] ^ 0x5A]) if frame else frame

    async def run(self) -> None:
        buf = b""
        while True:
            data = await self.endpoint.read(0.5)
            if not data:
                buf = b""  # an RTU frame ends with silence; drop a stale fragment
                continue
            buf += data
            while buf:
                used, req = mb.decode_request(buf)
                if req is None:
                    if used:
                        buf = buf[used:]
                        continue
                    if len(buf) > 256:
                        buf = b""
                    break
                buf = buf[used:]
                self.requests += 1
                if req.unit != self.unit:
                    continue
                await send_reply(self.endpoint, self.model, self._answer(req), self._corrupt_crc, self._rng)


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pty", help="symlink to create for the pty (the driver's port)")
    parser.add_argument("--tcp", type=int, help="TCP port to listen on (driver: socket://127.0.0.1:PORT)")
    parser.add_argument("--map", help="register map (default config/pump-map.toml)")
    parser.add_argument("--rate", type=float, default=5.0)
    args = parser.parse_args()
    model = PumpModel(rate_ml_h=args.rate)
    model.start()
    endpoint: Endpoint = await TcpEndpoint(port=args.tcp).start() if args.tcp else PtyEndpoint(args.pty or "/tmp/monitord-pump")
    print(f"Modbus pump simulator on {endpoint.url}", flush=True)
    await ModbusPumpSim(model, endpoint, load_map(args.map)).run()


if __name__ == "__main__":
    asyncio.run(_main())
