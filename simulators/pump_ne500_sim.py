"""Device side of a New Era NE-500 / NE-1000 pump, rendering a ``PumpModel`` on the wire.

Commands are cut and decoded, replies encoded, with ``drivers.ne500`` (the driver's own wire
module). Behaviour follows the published manual: one reply per command, no reply to another
address, an alarm replaces the reply to the next command and is acknowledged by it, and a
command the pump does not know gets ``?``.

The model maps onto the pump like this: running -> ``I``, bolus -> ``X`` (purge), paused -> ``P``,
stopped -> ``S``. Occlusion is a motor stall (``A?S``). A syringe emptied before ``VOL`` was
dispensed stalls the motor too; one emptied exactly at ``VOL`` ends the program normally.
On start the pump reports its power-on reset (``A?R``) once, as a real one does.

Alarms for tests and scenarios: ``alarm_on = "RAT"`` makes every pending alarm wait for that
command (so a stall is reported in the reply to ``RAT``, not to whatever comes next), and
``inject_alarm(alarm, on=...)`` reports any ``A?`` alarm in place of the reply to the next
(``on``) command. An injected alarm ends the pumping program as it is reported: a stall raises
the model's occlusion, the others stop the pump. ``inject_error(error, on=...)`` answers the next
(``on``) command with its prompt and that error (``?OOR``, ``?NA``...) instead of its data.
``lose_reply(on=..., after=n)`` drops the reply to the (n+1)-th next (``on``) command, as a line
that loses a packet does.

Run standalone: ``python -m monitord.simulators.pump_ne500_sim --pty /tmp/ne500`` (or ``--tcp 5021``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
from dataclasses import dataclass

from monitord.drivers import ne500
from monitord.drivers.base import ProtocolError
from monitord.drivers.ne500 import Alarm, CommandError, Prompt
from monitord.readings import DeviceAlarmCode, PumpState
from monitord.simulators.pump_endpoint import Endpoint, PtyEndpoint, TcpEndpoint, send_reply
from monitord.simulators.pump_model import PumpModel

log = logging.getLogger(__name__)

PROMPT = {
    PumpState.RUNNING: Prompt.INFUSING,
    PumpState.BOLUS: Prompt.PURGING,
    PumpState.PAUSED: Prompt.PAUSED,
    PumpState.STOPPED: Prompt.STOPPED,
    PumpState.UNKNOWN: Prompt.STOPPED,
}


@dataclass
class _LostReply:
    on: str | None  # the command whose reply is lost; None: any
    after: int  # how many such commands still get their reply first


class Ne500PumpSim:
    def __init__(
        self,
        model: PumpModel,
        endpoint: Endpoint,
        *,
        address: int = 0,
        safe: bool = False,
        diameter_mm: float = 26.7,
        power_on_reset: bool = True,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.endpoint = endpoint
        self.address = address
        self.safe = safe
        self.diameter_mm = diameter_mm
        # (alarm, command it waits for or None, injected)
        self._pending: list[tuple[Alarm, str | None, bool]] = [(Alarm.RESET, None, False)] if power_on_reset else []
        self.alarm_on: str | None = None  # report pending alarms only in reply to this command
        self._errors: list[tuple[CommandError, str | None]] = []
        self._lost: list[_LostReply] = []
        self._reported_stall = False
        self._rng = random.Random(seed)
        self.commands: list[ne500.CommandFrame] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Safe-mode communications time-out (SAF<n>): no valid packet for this long stops the pump
        # with alarm T; it runs again only from the next valid packet (manual 8.3.3).
        self.comm_timeout_s: float | None = None
        self._last_valid: float | None = None
        self._timed_out = False
        model.on_unplug = self._unplug

    def _unplug(self, duration_s: float) -> None:
        task = asyncio.get_running_loop().create_task(self.endpoint.unplug(duration_s))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _check_alarms(self) -> None:
        snap = self.model.snapshot()
        stalled = DeviceAlarmCode.OCCLUSION in snap.alarms or (
            DeviceAlarmCode.EMPTY in snap.alarms and snap.volume_infused_ml < snap.volume_to_be_infused_ml
        )
        if stalled and not self._reported_stall:
            self._pending.append((Alarm.STALLED, None, False))
            self._reported_stall = True
        elif not stalled:
            self._reported_stall = False

    def inject_alarm(self, alarm: Alarm, *, on: str | None = None) -> None:
        """Report ``alarm`` in place of the reply to the next command (the next ``on`` command)."""
        self._pending.append((alarm, on, True))

    def inject_error(self, error: CommandError, *, on: str | None = None) -> None:
        """Answer the next command (the next ``on`` command) with its prompt and ``error``."""
        self._errors.append((error, on))

    def lose_reply(self, *, on: str | None = None, after: int = 0) -> None:
        """Send no reply to the (``after`` + 1)-th next command (``on`` command)."""
        self._lost.append(_LostReply(on, after))

    def _reply_lost(self, mnemonic: str) -> bool:
        for i, entry in enumerate(self._lost):
            if entry.on not in (None, mnemonic):
                continue
            if entry.after == 0:
                del self._lost[i]
                return True
            entry.after -= 1
        return False

    def _take_alarm(self, mnemonic: str) -> Alarm | None:
        for i, (alarm, on, injected) in enumerate(self._pending):
            target = on if on is not None else self.alarm_on
            if target is not None and target != mnemonic:
                continue
            del self._pending[i]
            if injected and alarm is Alarm.STALLED:
                self.model.raise_alarm(DeviceAlarmCode.OCCLUSION)  # stops the pump
                self._reported_stall = True
            elif injected:
                self.model.stop()
            return alarm
        return None

    def _reply(self, cmd: ne500.CommandFrame) -> bytes:
        self._check_alarms()
        alarm = self._take_alarm(cmd.mnemonic)
        if alarm is not None:
            return ne500.encode_reply(self.address, alarm, safe=self.safe)
        injected = next((i for i, (_, on) in enumerate(self._errors) if on in (None, cmd.mnemonic)), None)
        error: CommandError | None
        if injected is not None:
            data, error = "", self._errors.pop(injected)[0]
        else:
            data, error = self._execute(cmd)
        prompt = PROMPT[self.model.snapshot().state]
        return ne500.encode_reply(self.address, prompt, data, error=error, safe=self.safe)

    def _execute(self, cmd: ne500.CommandFrame) -> tuple[str, CommandError | None]:
        m, p = cmd.mnemonic, cmd.parameter
        snap = self.model.snapshot()
        f = ne500.format_float
        try:
            if m == "" and not p:
                return "", None
            if m == "DIS" and not p:
                return f"I{f(snap.volume_infused_ml)}W{f(0.0)}ML", None
            if m == "RAT":
                if not p:
                    return f"{f(snap.rate_ml_h)}MH", None
                self.model.set_rate(ne500.parse_rate(p if p[-2:] in ne500.RATE_TO_ML_H else p + "MH"))
                return "", None
            if m == "VOL":
                if not p:
                    return f"{f(snap.volume_to_be_infused_ml)}ML", None
                if p in ne500.VOLUME_TO_ML:
                    return "", None  # unit change: the simulator keeps mL
                self.model.volume_to_be_infused_ml = ne500.parse_volume(p + "ML")
                return "", None
            if m == "DIA":
                if not p:
                    return f(self.diameter_mm), None
                self.diameter_mm = ne500.parse_diameter(p)
                return "", None
            if m == "DIR":
                return ("INF", None) if p in ("", "INF") else ("", CommandError.NOT_APPLICABLE)
            if m == "VER" and not p:
                return "NE500V3.928", None
            if m == "RUN" and not p:
                self.model.start()
                return "", None
            if m == "STP" and not p:
                if snap.state in (PumpState.RUNNING, PumpState.BOLUS):
                    self.model.pause()
                else:
                    self.model.stop()
                return "", None
            if m == "SAF" and p.isdigit():
                self.comm_timeout_s = float(p) or None
                return "", None
            if m == "CLD" and p in ("INF", "WDR"):
                if p == "INF":
                    self.model.volume_infused_ml = 0.0
                return "", None
        except ProtocolError:
            return "", CommandError.OUT_OF_RANGE
        return "", CommandError.NOT_RECOGNISED

    @staticmethod
    def _corrupt(frame: bytes) -> bytes:
        if len(frame) < 3:
            return frame
        i = len(frame) - 2  # basic mode: the last data byte; safe mode: the CRC low byte
        return frame[:i] + bytes([frame[i] ^ 0x21]) + frame[i + 1 :]

    def _watch_comms(self) -> None:
        if self.comm_timeout_s is None or self._last_valid is None or self._timed_out:
            return
        if asyncio.get_running_loop().time() - self._last_valid > self.comm_timeout_s:
            self._timed_out = True
            self.model.stop()
            self._pending.append((Alarm.COMMS_TIMEOUT, None, False))

    async def run(self) -> None:
        buf = b""
        while True:
            data = await self.endpoint.read(0.5)
            self._watch_comms()
            if not data:
                buf = b"" if self.safe else buf  # safe mode drops a packet after 0.5 s of silence
                continue
            buf += data
            packets, buf = ne500.split_commands(buf, safe=self.safe)
            for packet in packets:
                try:
                    cmd = ne500.decode_command(packet, safe=self.safe)
                except ProtocolError:
                    if self.safe and packet[:1] == bytes([ne500.STX]):
                        reply = ne500.encode_reply(
                            self.address, PROMPT[self.model.snapshot().state], error=CommandError.BAD_PACKET, safe=True
                        )
                        await send_reply(self.endpoint, self.model, reply, self._corrupt, self._rng)
                    continue
                if cmd.address is not None and cmd.address != self.address:
                    continue
                self._last_valid, self._timed_out = asyncio.get_running_loop().time(), False
                self.commands.append(cmd)
                if self._reply_lost(cmd.mnemonic):
                    continue
                await send_reply(self.endpoint, self.model, self._reply(cmd), self._corrupt, self._rng)


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pty", help="symlink to create for the pty (the driver's port)")
    parser.add_argument("--tcp", type=int, help="TCP port to listen on (driver: socket://127.0.0.1:PORT)")
    parser.add_argument("--address", type=int, default=0)
    parser.add_argument("--safe", action="store_true", help="safe mode (CRC-16 framed packets)")
    parser.add_argument("--rate", type=float, default=5.0)
    args = parser.parse_args()
    model = PumpModel(rate_ml_h=args.rate)
    model.start()
    endpoint: Endpoint = await TcpEndpoint(port=args.tcp).start() if args.tcp else PtyEndpoint(args.pty or "/tmp/monitord-ne500")
    print(f"NE-500 pump simulator on {endpoint.url}", flush=True)
    await Ne500PumpSim(model, endpoint, address=args.address, safe=args.safe).run()


if __name__ == "__main__":
    asyncio.run(_main())
