"""``heatd probe``: read every point once and show what heatd would see, with the raw
registers and the block requests behind them, so a commissioning engineer can check byte
order, scale and address base against the device's own display before going live."""

from __future__ import annotations

import asyncio
import time
from typing import IO

from drivers.modbus.device import ModbusDevice
from drivers.modbus.plan import format_plan
from drivers.reading import Quality, Reading
from heatd.config import SiteConfig
from heatd.devices import BoundDevice, build_devices

CONNECT_WAIT_S = 5.0
"""How long to wait for a device to connect before reporting it as it is."""


async def _read_once(device: BoundDevice) -> dict[str, Reading]:
    points = tuple(device.points.values())
    await device.driver.start()
    deadline = time.monotonic() + CONNECT_WAIT_S
    while True:
        readings = await device.driver.read(points)
        disconnected = all(r.reason == "disconnected" for r in readings.values())
        if not disconnected or time.monotonic() > deadline:
            return readings
        await asyncio.sleep(0.1)


def _format_value(reading: Reading) -> str:
    if reading.value is None:
        return "-"
    if isinstance(reading.value, float):
        return f"{reading.value:.6g}"
    return str(reading.value)


def _format_raw(reading: Reading) -> str:
    if reading.raw is None:
        return "-"
    return " ".join(f"{word:04X}" for word in reading.raw)


async def probe(site: SiteConfig, only: str | None, out: IO[str]) -> int:
    """Print one table per device; exit status 0 when every point read good, else 2."""
    devices = build_devices(site, only)
    all_good = True
    try:
        for name, device in devices.items():
            config = site.devices[name]
            readings = await _read_once(device)
            out.write(f"device {name} ({config.protocol}): "
                      f"{'online' if device.driver.online else 'offline'}\n")
            if isinstance(device.driver, ModbusDevice):
                plan = device.driver.plan(tuple(device.points.values()))
                out.write("read plan:\n" + _indent(format_plan(plan)) + "\n")
            rows = [("point", "raw", "value", "unit", "quality")]
            for pname, point in config.points.items():
                reading = readings[pname]
                all_good &= reading.quality is Quality.GOOD
                rows.append((pname, _format_raw(reading), _format_value(reading),
                             point.unit or "", reading.quality_text))
            out.write(_table(rows) + "\n\n")
    finally:
        for device in devices.values():
            await device.driver.close()
    return 0 if all_good else 2


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        .rstrip()
        for row in rows
    )
