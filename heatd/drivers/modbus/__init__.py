"""Modbus TCP and RTU drivers (pymodbus): point specs, read plans, links and devices.

Specs and plans load without pymodbus (config checks need only them); the links and
devices, and pymodbus with them, load on first use, so a site without a Modbus device
never pays for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heatd.drivers.modbus.plan import Block, build_plan, format_plan
from heatd.drivers.modbus.spec import (
    Forbidden,
    ModbusPoint,
    PlanLimits,
    SerialSettings,
    Table,
    TcpSettings,
)

if TYPE_CHECKING:
    from heatd.drivers.modbus.device import (
        DeviceStats,
        ModbusDevice,
        ModbusRtuDevice,
        ModbusTcpDevice,
    )
    from heatd.drivers.modbus.link import Link, SerialLine, TcpLink

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

_LAZY = {
    "DeviceStats": "device", "ModbusDevice": "device", "ModbusRtuDevice": "device",
    "ModbusTcpDevice": "device", "Link": "link", "SerialLine": "link", "TcpLink": "link",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"heatd.drivers.modbus.{module}"), name)
