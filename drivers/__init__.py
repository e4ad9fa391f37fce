"""Device drivers: wire protocols to typed readings. No clinical policy lives here."""

from __future__ import annotations

from drivers.base import Driver, Emit
from monitord.config import DevicesConfig


def build_drivers(devices: DevicesConfig, emit: Emit) -> list[Driver]:
    """One driver per configured device."""
    out: list[Driver] = []
    if devices.pump is not None:
        if devices.pump.driver == "modbus":
            from drivers.modbus_pump import build as build_pump
        else:
            from drivers.pump_ne500 import build as build_pump
        out.append(build_pump(devices.pump, emit))
    if devices.monitor is not None:
        from drivers.monitor_datex import build as build_monitor

        out.append(build_monitor(devices.monitor, emit))
    return out
