"""Modbus TCP and RTU drivers (pymodbus): point specs, read plans, links and devices.

Every name loads from its module on first use: config checks import ``addresses`` alone, the
read plans come with the first device, and pymodbus with the first link, so a site
without a Modbus device never pays for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from heatd.drivers.modbus.addresses import Forbidden, Table
    from heatd.drivers.modbus.device import (
        DeviceStats,
        ModbusDevice,
        ModbusRtuDevice,
        ModbusTcpDevice,
    )
    from heatd.drivers.modbus.link import Link, SerialLine, TcpLink
    from heatd.drivers.modbus.plan import Block, build_plan, format_plan
    from heatd.drivers.modbus.spec import ModbusPoint, PlanLimits, SerialSettings, TcpSettings

__all__ = [
    "Block",
    "DeviceStats",
    "Forbidden",
    "Link",
    "ModbusDevice",
    "ModbusPoint",
    "ModbusRtuDevice",
    "ModbusTcpDevice",
    "PlanLimits",
    "SerialLine",
    "SerialSettings",
    "Table",
    "TcpLink",
    "TcpSettings",
    "build_plan",
    "format_plan",
]

_MODULE = {
    "Block": "plan", "build_plan": "plan", "format_plan": "plan",
    "Forbidden": "addresses", "Table": "addresses",
    "ModbusPoint": "spec", "PlanLimits": "spec", "SerialSettings": "spec", "TcpSettings": "spec",
    "DeviceStats": "device", "ModbusDevice": "device", "ModbusRtuDevice": "device",
    "ModbusTcpDevice": "device", "Link": "link", "SerialLine": "link", "TcpLink": "link",
}


def __getattr__(name: str) -> Any:
    module = _MODULE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"heatd.drivers.modbus.{module}"), name)
