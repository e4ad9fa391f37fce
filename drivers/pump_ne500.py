"""Syringe pump speaking the New Era NE-500 / NE-1000 RS-232 protocol (basic or safe mode).

Each poll asks ``DIS`` (volume dispensed), ``RAT`` (rate), ``VOL`` (volume to be dispensed) and
``DIA`` (syringe diameter); every reply carries the pump's status, which gives the state.

What this pump cannot say, and what the reading therefore leaves ``None``:
- drug and concentration: the NE-500 knows neither. The order's concentration applies, and a
  mismatch between ordered and programmed concentration cannot be detected with this pump.
- syringe size: ``DIA`` gives the inside diameter only; no documented diameter-to-size table is
  shipped, so ``syringe_ml`` stays ``None``.
- bolus volume, device time, near-empty, battery and door alarms: not in the protocol.

Alarms. The pump reports an alarm once, in place of a reply, and reporting acknowledges it. The
driver therefore holds what it saw until the pump runs again:
- ``A?S`` motor stalled -> OCCLUSION (the pump cannot tell an occluded line from a plunger
  driven against the end of an emptied syringe);
- ``A?R`` reset (power interrupted) while the pump was infusing, ``A?T``, ``A?E``, ``A?O``
  -> DEVICE_FAULT;
- EMPTY: the pump stopped with the dispensed volume at the programmed ``VOL`` (program ``VOL``
  as the syringe's contents so that this means the syringe is empty).

Only queries and ``STP`` can be encoded (``drivers.ne500``): this driver cannot set a rate.
"""

from __future__ import annotations

import asyncio
import logging

from drivers import ne500
from drivers.base import Driver, Emit, LinkLost, ProtocolError
from drivers.ne500 import Action, Alarm, Prompt, Query, Reply
from drivers.pump_map import PumpCommand
from drivers.pump_serial import SerialLine
from monitord.config import PumpDevice
from monitord.readings import DeviceAlarm, DeviceAlarmCode, DeviceRole, PumpReading, PumpState, Quality

log = logging.getLogger(__name__)

STATE = {
    Prompt.INFUSING: PumpState.RUNNING,
    Prompt.STOPPED: PumpState.STOPPED,
    Prompt.PAUSED: PumpState.PAUSED,
    Prompt.PAUSE_PHASE: PumpState.PAUSED,
    Prompt.USER_WAIT: PumpState.PAUSED,
    Prompt.PURGING: PumpState.BOLUS,  # purge drives at the maximum rate
    Prompt.WITHDRAWING: PumpState.UNKNOWN,  # not delivering to the patient: flagged questionable
}
RUNNING = {Prompt.INFUSING, Prompt.PURGING, Prompt.WITHDRAWING}
FAULTS = {Alarm.COMMS_TIMEOUT, Alarm.PROGRAM_ERROR, Alarm.OUT_OF_RANGE}
# Dispensed volume counts as "reached VOL" within this fraction: both are printed to 4 digits.
VOLUME_MATCH = 0.001


class Ne500PumpDriver(Driver):
    role = DeviceRole.PUMP

    def __init__(self, cfg: PumpDevice, emit: Emit, *, safe_mode: bool = False) -> None:
        super().__init__(cfg.name, emit, poll_interval_s=cfg.poll_interval_s, timeout_s=cfg.timeout_s)
        self.cfg = cfg
        self.safe = safe_mode
        self.line = SerialLine(cfg.serial)
        self.reply_timeout_s = min(1.0, cfg.timeout_s / 2)
        self._io = asyncio.Lock()
        self._held: set[DeviceAlarmCode] = set()
        self._alarms: frozenset[DeviceAlarmCode] | None = None
        self._last_prompt: Prompt | None = None
        self.detail = ""

    async def connect(self) -> None:
        self.line.open()
        self._alarms = None

    async def close(self) -> None:
        self.line.close()

    # -- one exchange ------------------------------------------------------------------------

    async def _exchange(self, command: Query | Action) -> Reply | None:
        """Send one command; return its reply, ``None`` on silence, or raise ``ProtocolError``."""
        async with self._io:
            self.line.discard_input()
            await self.line.write(ne500.encode_command(self.cfg.ne500_address, command, safe=self.safe))
            raw = await self.line.read_reply(
                lambda b: ne500.reply_complete(b, safe=self.safe), self.reply_timeout_s
            )
        if not raw:
            return None
        frames, rest = ne500.split_frames(raw, safe=self.safe)
        replies: list[Reply] = []
        for frame in frames:
            try:
                replies.append(ne500.decode_reply(frame, safe=self.safe))
            except ProtocolError as exc:
                self.protocol_error(str(exc))
        if rest:
            self.protocol_error(f"incomplete reply {rest[:24]!r}")
        if not replies:
            raise ProtocolError(f"no valid reply to {command.value or 'status'}")
        reply = replies[-1]
        if reply.address != self.cfg.ne500_address:
            raise ProtocolError(f"reply from address {reply.address}, expected {self.cfg.ne500_address}")
        self.frame_ok()
        return reply

    def _note_alarm(self, alarm: Alarm) -> None:
        if alarm is Alarm.STALLED:
            self._held.add(DeviceAlarmCode.OCCLUSION)
            self.detail = "motor stalled"
        elif alarm in FAULTS:
            self._held.add(DeviceAlarmCode.DEVICE_FAULT)
            self.detail = f"pump alarm {alarm.name.lower()}"
        elif alarm is Alarm.RESET and self._last_prompt in RUNNING:
            self._held.add(DeviceAlarmCode.DEVICE_FAULT)
            self.detail = "pump reset (power interrupted) while running"
        log.warning("%s: pump alarm %s", self.name, alarm.name)

    async def _query(self, command: Query) -> Reply | None:
        """A query's reply; an alarm in place of it is noted and the query asked once more."""
        for _ in range(2):
            reply = await self._exchange(command)
            if reply is None or reply.alarm is None:
                break
            self._note_alarm(reply.alarm)
        else:
            return None
        if reply is not None and reply.error is not None:
            raise ProtocolError(f"pump refused {command.value}: ?{reply.error.value}")
        return reply

    # -- the poll ----------------------------------------------------------------------------

    async def poll(self) -> None:
        dis = await self._query(Query.DISPENSED)
        if dis is None:
            return
        infused, _ = ne500.parse_dispensed(dis.data)
        rat = await self._query(Query.RATE)
        vol = await self._query(Query.VOLUME)
        dia = await self._query(Query.DIAMETER)
        rate = ne500.parse_rate(rat.data) if rat else None
        vtbi = ne500.parse_volume(vol.data) if vol else None
        if dia is not None:
            ne500.parse_diameter(dia.data)  # validated; no documented table maps it to a size
        last = next((r for r in (dia, vol, rat, dis) if r is not None), dis)
        prompt = last.prompt
        assert prompt is not None
        if prompt in RUNNING:
            self._held.clear()  # running again: alarms seen earlier are over
            self.detail = ""
        self._last_prompt = prompt
        active = set(self._held)
        if prompt is Prompt.STOPPED and vtbi and infused >= vtbi * (1 - VOLUME_MATCH):
            active.add(DeviceAlarmCode.EMPTY)
        state = STATE[prompt]
        self.emit(
            PumpReading(
                device=self.name,
                state=state,
                rate_ml_h=rate,
                volume_infused_ml=infused,
                volume_to_be_infused_ml=vtbi,
                quality=Quality.QUESTIONABLE if state is PumpState.UNKNOWN else Quality.VALID,
            )
        )
        current = frozenset(active)
        if current != self._alarms:
            self._alarms = current
            self.emit(DeviceAlarm(self.name, self.role, current, self.detail if current else ""))

    async def send_command(self, command: PumpCommand) -> None:
        """Pause (one ``STP``) or stop (``STP`` until stopped) the pump, for a safety interlock.
        Raises ``CommandRefused`` when not allowed or not confirmed by the pump."""
        if not self.cfg.allow_stop_commands:
            raise CommandRefused("allow_stop_commands is off for this pump")
        wanted = {Prompt.STOPPED} if command is PumpCommand.STOP else {Prompt.PAUSED, Prompt.STOPPED}
        try:
            for _ in range(2):  # the first STP pauses a running program, a second stops it
                reply = await self._exchange(Action.STOP)
                if reply is not None and reply.prompt in wanted:
                    log.warning("%s: %s command sent and confirmed", self.name, command.value)
                    return
        except (ProtocolError, LinkLost) as exc:
            raise CommandRefused(f"{command.value} not confirmed: {exc}") from exc
        raise CommandRefused(f"pump did not confirm {command.value}")


class CommandRefused(Exception):
    """A stop/pause was asked for but is not allowed or was not confirmed."""


def build(cfg: PumpDevice, emit: Emit) -> Driver:
    return Ne500PumpDriver(cfg, emit, safe_mode=cfg.ne500_safe_mode)
