"""Modbus TCP and RTU drivers (pymodbus): point specs, read plans, links and devices."""

from drivers.modbus.device import DeviceStats, ModbusDevice, ModbusRtuDevice, ModbusTcpDevice
from drivers.modbus.link import Link, SerialLine, TcpLink
from drivers.modbus.plan import Block, build_plan, format_plan
from drivers.modbus.spec import (
    Forbidden,
    ModbusPoint,
    PlanLimits,
    SerialSettings,
    Table,
    TcpSettings,
)

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
