"""Device drivers: wire protocols to typed readings. No clinical policy lives here."""

from __future__ import annotations

from monitord.config import DevicesConfig
from monitord.drivers.base import Driver, Emit


def build_drivers(devices: DevicesConfig, emit: Emit) -> list[Driver]:
    """One driver per configured device."""
    out: list[Driver] = []
    if devices.pump is not None:
        if devices.pump.driver == "modbus":
            from monitord.drivers.modbus_pump import build as build_pump
        else:
            from monitord.drivers.pump_ne500 import build as build_pump
        out.append(build_pump(devices.pump, emit))
    if devices.monitor is not None:
        if devices.monitor.driver == "intellivue":
            from monitord.drivers.monitor_intellivue import build as build_intellivue

            out.append(build_intellivue(devices.monitor, emit))
        else:
            from monitord.drivers.monitor_datex import build as build_monitor

            out.append(build_monitor(devices.monitor, emit))
    if devices.oximeter is not None:
        from monitord.drivers.oximeter_masimo import build as build_oximeter

        out.append(build_oximeter(devices.oximeter, emit))
    return out
