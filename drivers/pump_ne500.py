"""Syringe pump speaking the New Era NE-500 / NE-1000 RS-232 protocol (basic or safe mode).

Each poll asks ``DIS`` (volume dispensed), ``RAT`` (rate), ``VOL`` (volume to be dispensed) and
``DIA`` (syringe diameter); every reply carries the pump's status, which gives the state.

What this pump cannot say, and what the reading therefore leaves ``None``:
- drug and concentration: the NE-500 knows neither. The order's concentration applies, and a
  mismatch between ordered and programmed concentration cannot be detected with this pump.
- syringe size: ``DIA`` gives the inside diameter only; no documented diameter-to-size table is
  shipped, so ``syringe_ml`` stays ``None``.
- bolus volume, device time, near-empty, battery and door alarms: not in the protocol.

Alarms. The pump reports an alarm once, in place of the reply to whatever command comes next,
and reporting acknowledges it. The driver recognises an alarm in the reply to any command (the
poll's ``DIS``, ``RAT``, ``VOL``, ``DIA`` and ``STP`` alike), publishes it at once, asks the query
again, and holds it until a whole poll with no alarm shows the pump running again (a running
prompt from earlier in the same poll never clears it):
- ``A?S`` motor stalled -> OCCLUSION (the pump cannot tell an occluded line from a plunger
  driven against the end of an emptied syringe);
- ``A?R`` reset (power interrupted) while the pump was infusing, ``A?T``, ``A?E``, ``A?O``
  -> DEVICE_FAULT;
- EMPTY: the pump stopped with the dispensed volume at the programmed ``VOL`` (program ``VOL``
  as the syringe's contents so that this means the syringe is empty).
An error after the prompt (``?``, ``?NA``, ``?OOR``, ``?COM``, ``?IGN``) is counted as a protocol
error and that value is left out; the prompt still gives the state.

Only queries, ``STP`` and the safe-mode communications time-out (``SAF<n>``, the interlock's
heartbeat) can be encoded (``drivers.ne500``): this driver cannot set a rate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from monitord.config import PumpDevice
from monitord.drivers import ne500
from monitord.drivers.base import Driver, Emit, LinkLost, ProtocolError
from monitord.drivers.ne500 import Action, Alarm, Prompt, Query, Reply
from monitord.drivers.pump_map import PumpCommand
from monitord.drivers.pump_serial import SerialLine
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
# Dispensed volume counts as "reached VOL" within this fraction: both are printed to 4 digits.
VOLUME_MATCH = 0.001


POLL = (Query.DISPENSED, Query.RATE, Query.VOLUME, Query.DIAMETER)
ALARM_TEXT = {
    Alarm.STALLED: "motor stalled (occluded line, or plunger at the end of the syringe)",
    Alarm.COMMS_TIMEOUT: "pump alarm: safe-mode communications time-out",
    Alarm.PROGRAM_ERROR: "pump alarm: pumping program error",
    Alarm.OUT_OF_RANGE: "pump alarm: program phase out of range",
    Alarm.RESET: "pump reset (power interrupted) while running",
}


class Ne500PumpDriver(Driver):
    role = DeviceRole.PUMP

    def __init__(self, cfg: PumpDevice, emit: Emit, *, safe_mode: bool = False) -> None:
        super().__init__(cfg.name, emit, poll_interval_s=cfg.poll_interval_s, timeout_s=cfg.timeout_s)
        self.cfg = cfg
        self.safe = safe_mode
        self.line = SerialLine(cfg.serial)
        self.reply_timeout_s = min(1.0, cfg.timeout_s / 2)
        self._io = asyncio.Lock()
        self._held: dict[DeviceAlarmCode, str] = {}  # alarms the pump reported, until it runs again
        self._derived: dict[DeviceAlarmCode, str] = {}  # alarms read from the values (EMPTY)
        self._published: frozenset[DeviceAlarmCode] | None = None
        self._last_prompt: Prompt | None = None  # the latest prompt the pump sent, in any reply
        self._poll_prompt: Prompt | None = None  # the latest prompt of the current poll
        self._alarm_in_poll = False

    @property
    def detail(self) -> str:
        return "; ".join([*self._held.values(), *self._derived.values()])

    async def connect(self) -> None:
        self.line.open()
        self._published = None  # the engine hears the full set again after every connect
        if self.safe and self.cfg.comm_watchdog_s:
            await self._arm_watchdog(self.cfg.comm_watchdog_s)

    async def _arm_watchdog(self, seconds: int) -> None:
        """The pump's communications time-out: every poll resets it; silence stops the pump. A
        reply that is an alarm means the command was not carried out (the alarm is acknowledged
        by that reply), so it is sent again."""
        for _ in range(3):
            async with self._io:
                self.line.discard_input()
                await self.line.write(ne500.encode_comm_timeout(self.cfg.ne500_address, seconds))
                raw = await self.line.read_reply(lambda b: ne500.reply_complete(b, safe=True), self.reply_timeout_s)
            frames, _ = ne500.split_frames(raw or b"", safe=True)
            replies = []
            for frame in frames:
                try:
                    replies.append(ne500.decode_reply(frame, safe=True))
                except ProtocolError:
                    continue
            for reply in replies:
                if reply.alarm is not None:
                    self._note_alarm(reply.alarm, Query.STATUS)
            if replies and replies[-1].alarm is None and replies[-1].error is None:
                return
        raise ProtocolError(f"the pump did not accept its communications time-out (SAF{seconds})",
                            cause="watchdog not armed")

    async def close(self) -> None:
        self.line.close()

    # -- one exchange ------------------------------------------------------------------------

    async def _exchange(self, command: Query | Action) -> Reply | None:
        """Send one command; return its reply, ``None`` on silence, or raise ``ProtocolError``.
        An alarm in the reply is noted and published whatever the command was."""
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
                self.protocol_error(str(exc), cause="bad reply frame")
        if rest:
            self.protocol_error(f"incomplete reply: {rest[:24]!r}")
        if not replies:
            raise ProtocolError(f"no valid reply to {command.value or 'status'}", cause="no valid reply")
        ours = [r for r in replies if r.address == self.cfg.ne500_address]
        if not ours:
            raise ProtocolError(f"reply from address {replies[-1].address}, expected {self.cfg.ne500_address}",
                                cause="reply from another address")
        self.frame_ok()
        for reply in ours:  # an alarm is never lost because another frame came with it
            if reply.alarm is not None:
                self._note_alarm(reply.alarm, command)
            elif reply.prompt is not None:
                self._last_prompt = self._poll_prompt = reply.prompt
        return ours[-1]

    def _note_alarm(self, alarm: Alarm, command: Query | Action) -> None:
        self._alarm_in_poll = True
        what = command.value or "status"
        if alarm is Alarm.RESET and self._last_prompt not in RUNNING:
            self.logs.log(logging.INFO, "alarm R idle", "%s: pump reset reported (in reply to %s) while not "
                          "running: power-on, no alarm", self.name, what)
            return
        code = DeviceAlarmCode.OCCLUSION if alarm is Alarm.STALLED else DeviceAlarmCode.DEVICE_FAULT
        self._held[code] = ALARM_TEXT[alarm]
        self.logs.log(logging.WARNING, f"alarm {alarm.value}", "%s: pump alarm A?%s in reply to %s: %s",
                      self.name, alarm.value, what, ALARM_TEXT[alarm])
        self._publish()

    def _publish(self) -> None:
        current = frozenset(self._held) | frozenset(self._derived)
        if current != self._published:
            self._published = current
            self.emit(DeviceAlarm(self.name, self.role, current, self.detail))

    async def _query(self, command: Query) -> Reply | None:
        """A query's reply: ``None`` on silence; an alarm in place of the reply is noted and the
        query asked once more (if the pump answers with an alarm again, that reply is returned)."""
        reply = await self._exchange(command)
        if reply is not None and reply.alarm is not None:
            reply = await self._exchange(command)
        return reply

    def _value(self, reply: Reply | None, command: Query, parse: Callable[[str], float]) -> float | None:
        """The value a reply carries, or None (a refusal or an unreadable value is counted)."""
        if reply is None or reply.prompt is None:
            return None
        if reply.error is not None:
            self.protocol_error(f"pump refused {command.value}: ?{reply.error.value}", cause="pump refused")
            return None
        try:
            return parse(reply.data)
        except ProtocolError as exc:
            self.protocol_error(str(exc), cause="value not understood")
            return None

    # -- the poll ----------------------------------------------------------------------------

    async def poll(self) -> None:
        self._alarm_in_poll = False
        self._poll_prompt = None
        got: dict[Query, Reply] = {}
        try:
            for query in POLL:
                reply = await self._query(query)
                if reply is None:
                    break  # silent: the rest would only time out too
                got[query] = reply
        finally:
            self._publish()  # alarms seen before a failure still reach the engine
        infused = self._value(got.get(Query.DISPENSED), Query.DISPENSED, lambda d: ne500.parse_dispensed(d)[0])
        rate = self._value(got.get(Query.RATE), Query.RATE, ne500.parse_rate)
        vtbi = self._value(got.get(Query.VOLUME), Query.VOLUME, ne500.parse_volume)
        self._value(got.get(Query.DIAMETER), Query.DIAMETER, ne500.parse_diameter)  # checked only
        prompt = self._poll_prompt
        if prompt is None:
            return  # no prompt in this poll (silence, or only alarms): no state to report
        if prompt in RUNNING and not self._alarm_in_poll:
            self._held.clear()  # a whole poll without an alarm shows the pump running again
        if prompt is not Prompt.STOPPED:
            self._derived.clear()
        elif infused is not None and vtbi:
            if infused >= vtbi * (1 - VOLUME_MATCH):
                self._derived[DeviceAlarmCode.EMPTY] = "stopped with the dispensed volume at VOL"
            else:
                self._derived.clear()
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
        self._publish()

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
