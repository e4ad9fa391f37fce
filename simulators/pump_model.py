"""A simulated syringe pump, shared by the Modbus and NE-500 simulators, plus fault injection.

The model holds what a pump is programmed to do (rate, drug, concentration, syringe, volume to
be infused) and integrates the volume infused over an injected time source, so a test or a
scenario can run hours of infusion in a moment by advancing its clock. Both protocol simulators
render the same model on the wire.

Scenario API (all synchronous, safe to call from the event loop):
    start(), pause(), stop(), bolus(volume_ml, rate_ml_h), set_rate(rate_ml_h)  # keypad actions
    raise_alarm(code) / clear_alarm(code)       # occlusion stops the pump; others are flags
    inject(kind, duration_s)                    # a wire fault for duration_s (see Fault)
    snapshot()                                  # integrate up to now and return the state

Faults (``Fault``): ``unplug`` (the port disappears, then returns), ``garble`` (replies replaced
by random bytes), ``bad_crc`` (reply checksum corrupted; in NE-500 basic mode, which has no
checksum, one byte of the reply is corrupted), ``partial`` (only the first half of each reply),
``slow`` (each reply delayed by ``slow_reply_s``), ``silent`` (no replies at all).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from monitord.readings import DeviceAlarmCode, PumpState


class Fault(StrEnum):
    UNPLUG = "unplug"
    GARBLE = "garble"
    BAD_CRC = "bad_crc"
    PARTIAL = "partial"
    SLOW = "slow"
    SILENT = "silent"


@dataclass(frozen=True)
class PumpSnapshot:
    state: PumpState
    rate_ml_h: float
    volume_infused_ml: float
    volume_to_be_infused_ml: float
    syringe_ml: float
    remaining_ml: float
    drug: str
    concentration_mg_ml: float
    bolus_ml: float
    alarms: frozenset[DeviceAlarmCode]
    stopped_by_vtbi: bool  # stopped because the volume to be infused was delivered


class PumpModel:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        rate_ml_h: float = 5.0,
        drug: str = "ketamine",
        concentration_mg_ml: float = 1.0,
        syringe_ml: float = 50.0,
        loaded_ml: float | None = None,
        volume_to_be_infused_ml: float | None = None,
        near_empty_ml: float = 5.0,
        bolus_rate_ml_h: float = 300.0,
        slow_reply_s: float = 1.5,
    ) -> None:
        """``near_empty_ml`` is the simulated pump's own near-empty setting, not a clinical one."""
        self._clock = clock
        self._t = clock()
        self.rate_ml_h = rate_ml_h
        self.drug = drug
        self.concentration_mg_ml = concentration_mg_ml
        self.syringe_ml = syringe_ml
        self.loaded_ml = syringe_ml if loaded_ml is None else loaded_ml
        self.volume_to_be_infused_ml = self.loaded_ml if volume_to_be_infused_ml is None else volume_to_be_infused_ml
        self.near_empty_ml = near_empty_ml
        self.bolus_rate_ml_h = bolus_rate_ml_h
        self.slow_reply_s = slow_reply_s
        self.state = PumpState.STOPPED
        self.volume_infused_ml = 0.0
        self.bolus_ml = 0.0  # programmed bolus volume
        self._bolus_left = 0.0
        self._flags: set[DeviceAlarmCode] = set()
        self.stopped_by_vtbi = False
        self._faults: dict[Fault, float] = {}  # kind -> end time on the real monotonic clock
        self.on_unplug: Callable[[float], None] | None = None  # set by a simulator

    # -- time ------------------------------------------------------------------------------

    def _advance(self) -> None:
        now = self._clock()
        dt = max(0.0, now - self._t)
        self._t = now
        while dt > 0 and self.state in (PumpState.RUNNING, PumpState.BOLUS):
            rate = self.bolus_rate_ml_h if self.state is PumpState.BOLUS else self.rate_ml_h
            if rate <= 0:
                return
            limits = [self.loaded_ml - self.volume_infused_ml, self.volume_to_be_infused_ml - self.volume_infused_ml]
            if self.state is PumpState.BOLUS:
                limits.append(self._bolus_left)
            step_ml = min(rate * dt / 3600.0, *limits)
            step_ml = max(0.0, step_ml)
            self.volume_infused_ml += step_ml
            dt -= step_ml / rate * 3600.0
            if self.state is PumpState.BOLUS:
                self._bolus_left -= step_ml
            eps = 1e-9
            if self.volume_infused_ml >= self.loaded_ml - eps:
                self.volume_infused_ml = self.loaded_ml
                self._flags.add(DeviceAlarmCode.EMPTY)
                self.state = PumpState.STOPPED
            elif self.volume_infused_ml >= self.volume_to_be_infused_ml - eps:
                self.volume_infused_ml = self.volume_to_be_infused_ml
                self.stopped_by_vtbi = True
                self.state = PumpState.STOPPED
            elif self.state is PumpState.BOLUS and self._bolus_left <= eps:
                self.state = PumpState.RUNNING
            if step_ml <= 0:
                break

    # -- keypad ----------------------------------------------------------------------------

    def start(self) -> None:
        self._advance()
        if DeviceAlarmCode.OCCLUSION in self._flags or DeviceAlarmCode.EMPTY in self._flags:
            return  # a real pump refuses to start with these active
        self.stopped_by_vtbi = False
        self.state = PumpState.RUNNING

    def pause(self) -> None:
        self._advance()
        if self.state in (PumpState.RUNNING, PumpState.BOLUS):
            self.state = PumpState.PAUSED

    def stop(self) -> None:
        self._advance()
        self.state = PumpState.STOPPED

    def bolus(self, volume_ml: float, rate_ml_h: float | None = None) -> None:
        self._advance()
        self.bolus_ml = volume_ml
        self._bolus_left = volume_ml
        if rate_ml_h is not None:
            self.bolus_rate_ml_h = rate_ml_h
        self.state = PumpState.BOLUS

    def set_rate(self, rate_ml_h: float) -> None:
        self._advance()
        self.rate_ml_h = rate_ml_h

    def raise_alarm(self, code: DeviceAlarmCode) -> None:
        self._advance()
        self._flags.add(code)
        if code in (DeviceAlarmCode.OCCLUSION, DeviceAlarmCode.EMPTY, DeviceAlarmCode.DEVICE_FAULT):
            self.state = PumpState.STOPPED

    def clear_alarm(self, code: DeviceAlarmCode) -> None:
        self._advance()
        self._flags.discard(code)

    # -- faults ----------------------------------------------------------------------------

    def inject(self, kind: Fault | str, duration_s: float) -> None:
        """Start a wire fault lasting ``duration_s`` real seconds (wire time is never simulated)."""
        fault = Fault(kind)
        self._faults[fault] = time.monotonic() + duration_s
        if fault is Fault.UNPLUG and self.on_unplug is not None:
            self.on_unplug(duration_s)

    def fault_active(self, kind: Fault) -> bool:
        end = self._faults.get(kind)
        if end is None:
            return False
        if time.monotonic() >= end:
            del self._faults[kind]
            return False
        return True

    # -- reading -----------------------------------------------------------------------------

    def snapshot(self) -> PumpSnapshot:
        self._advance()
        remaining = max(0.0, self.loaded_ml - self.volume_infused_ml)
        alarms = set(self._flags)
        if 0 < remaining <= self.near_empty_ml:
            alarms.add(DeviceAlarmCode.NEAR_EMPTY)
        return PumpSnapshot(
            state=self.state,
            rate_ml_h=self.rate_ml_h,
            volume_infused_ml=self.volume_infused_ml,
            volume_to_be_infused_ml=self.volume_to_be_infused_ml,
            syringe_ml=self.syringe_ml,
            remaining_ml=remaining,
            drug=self.drug,
            concentration_mg_ml=self.concentration_mg_ml,
            bolus_ml=self.bolus_ml,
            alarms=frozenset(alarms),
            stopped_by_vtbi=self.stopped_by_vtbi,
        )
