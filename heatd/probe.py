"""``heatd probe``: read every point once and show what heatd would see, with the raw
registers and the block requests behind them, so a commissioning engineer can check byte
order, scale and address base against the device's own display before going live."""

from __future__ import annotations

import asyncio
import math
import struct
import time
from dataclasses import dataclass, field, replace
from typing import IO

from heatd import probe_opcua
from heatd.config import OpcUaDeviceConfig, PointConfig, SiteConfig
from heatd.control.roles import OUTPUT_ROLES
from heatd.control.signals import Signal, Snapshot
from heatd.control.validate import ValidationState, validate
from heatd.devices import AnyBound, ModbusBound, OpcUaBound, build_devices, point_limits
from heatd.drivers.codec import RAW_LIMITS, DataType
from heatd.drivers.modbus.plan import format_plan
from heatd.drivers.reading import Quality, Reading
from heatd.points import PointImage
from heatd.role_signals import control_snapshot
from heatd.role_units import percent_factor

CONNECT_WAIT_S = 5.0
"""Longest a device may take to connect (or to fail to) before it is reported as it is."""


@dataclass(frozen=True, slots=True)
class _Probed:
    """One device's readings as ``run`` would judge them, and its state."""

    online: bool
    error: str | None
    readings: dict[str, Reading]
    described: probe_opcua.Described = field(default_factory=dict)


async def _read_once(device: AnyBound) -> dict[str, Reading]:
    """Read every point once, after the first connect attempt ended either way."""
    await device.driver.start()
    deadline = time.monotonic() + CONNECT_WAIT_S
    while True:
        readings = await device.read_all()
        disconnected = all(r.reason == "disconnected" for r in readings.values())
        tried = device.driver.last_error not in (None, "disconnected")
        if not disconnected or tried or time.monotonic() > deadline:
            return readings
        await asyncio.sleep(0.1)


async def _probe_device(site: SiteConfig, device: AnyBound, image: PointImage) -> _Probed:
    """Read one device within CONNECT_WAIT_S plus one request, and judge its points."""
    limit = CONNECT_WAIT_S + _request_s(site, device)
    try:
        readings = await asyncio.wait_for(_read_once(device), limit)
    except TimeoutError:
        readings = {name: Reading.bad("timeout", time.time()) for name in device.points}
    online, error = device.driver.online, device.driver.last_error
    if not online and error in (None, "disconnected"):
        error = f"no connection within {CONNECT_WAIT_S:g} s"
    described: probe_opcua.Described = {}
    if isinstance(device, OpcUaBound) and online:
        described = await probe_opcua.describe(device)
    return _Probed(online, error, judge(site, device.name, readings, image, time.monotonic()),
                   described)


def _request_s(site: SiteConfig, device: AnyBound) -> float:
    """One request with its retries, and some slack: the read after the connect."""
    config = site.devices[device.name]
    return config.timeout * (getattr(config, "retries", 0) + 2)


def judge(site: SiteConfig, device: str, readings: dict[str, Reading], image: PointImage,
          now: float) -> dict[str, Reading]:
    """The readings as ``run`` judges them now: the point image's verdict (range, NaN,
    staleness), then the control core's validation of every input role the point is
    bound to (the role's plausible range); a point either calls bad is bad here."""
    for name, reading in readings.items():
        image.update(f"{device}.{name}", replace(reading, heard_at=now), now)
    points = image.snapshot(now)
    judged = {}
    for name in readings:
        ref = f"{device}.{name}"
        reading = points[ref]
        for role in site.roles:
            if reading.quality is not Quality.GOOD or role in OUTPUT_ROLES \
                    or ref not in site.role_points(role):
                continue
            alone = ((role, ((ref, percent_factor(role, site.point(ref))),)),)
            (signal,) = control_snapshot(alone, points, now).signals[role]
            why = _role_verdict(site, role, signal, now)
            if why is not None:
                reading = replace(reading, value=None, quality=Quality.BAD, reason=why)
        judged[name] = reading
    return judged


def _role_verdict(site: SiteConfig, role: str, signal: Signal, now: float) -> str | None:
    """Why the control core would not take this one point as ``role``, or None."""
    inputs, _ = validate(Snapshot(now, {role: (signal,)}), ValidationState(),
                         site.control, now)
    why = inputs.invalid.get(role)
    if why is None:
        return None
    spec = site.control.role_specs.get(role)
    if why == "out of range" and spec is not None and signal.value is not None:
        why = f"out of range: {signal.value:g} not in [{spec[0]:g}, {spec[1]:g}]"
    return f"{role}: {why}"


def _format_value(reading: Reading, point: PointConfig) -> str:
    if reading.value is None:
        return "-"
    if isinstance(reading.value, float):
        return full_digits(reading.value, point.data_type is DataType.FLOAT32)
    return str(reading.value)


def full_digits(value: float, single: bool) -> str:
    """Every digit the value has, so a counter's scale can be checked against the device's
    display (12345678.9, not 1.23457e+07), without the noise of binary floating point:
    15 significant digits (raw * 0.1 shows as 123456.7, not 123456.70000000001), or for a
    float32 point the fewest that read back as the same float32 (12.345679)."""
    if not math.isfinite(value):
        return str(value)
    if value.is_integer() and abs(value) < 2.0 ** 63:
        return str(int(value))
    if single and abs(value) <= RAW_LIMITS[DataType.FLOAT32][1]:
        packed = struct.pack(">f", value)
        return next(text for digits in range(1, 10)
                    if struct.pack(">f", float(text := f"{value:.{digits}g}")) == packed)
    return f"{value:.15g}"


def _format_raw(reading: Reading) -> str:
    if reading.raw is None:
        return "-"
    return " ".join(f"{word:04X}" for word in reading.raw)


async def probe(site: SiteConfig, only: str | None, out: IO[str],
                check_types: bool = False) -> int:
    """Print one table per device; exit status 0 when every point is good as ``run``
    would judge it (and, with ``check_types``, every OPC UA point's data_type and
    writability agree with the server), else 2. Devices are read at the same time, each
    within its own time limit, so unreachable devices cost the probe one wait, not one
    each."""
    devices = build_devices(site, only)
    image = PointImage(point_limits(site))
    try:
        probed = await asyncio.gather(
            *(_probe_device(site, device, image) for device in devices.values()))
    finally:
        for device in devices.values():
            await device.driver.close()
    all_good = True
    for (name, device), result in zip(devices.items(), probed, strict=True):
        config = site.devices[name]
        state = "online" if result.online else "offline"
        if result.error is not None:
            state += f" ({result.error})"
        out.write(f"device {name} ({config.protocol}): {state}\n")
        if isinstance(device, ModbusBound):
            out.write("read plan:\n" + _indent(format_plan(device.plan())) + "\n")
        if isinstance(config, OpcUaDeviceConfig):
            all_good &= _opcua_table(config, result, out, check_types)
            continue
        rows: list[tuple[str, ...]] = [("point", "raw", "value", "unit", "quality")]
        for pname, point in config.points.items():
            reading = result.readings[pname]
            all_good &= reading.quality is Quality.GOOD
            rows.append((pname, _format_raw(reading), _format_value(reading, point),
                         point.unit or "", reading.quality_text))
        out.write(_table(rows) + "\n\n")
    return 0 if all_good else 2


def _opcua_table(config: OpcUaDeviceConfig, result: _Probed, out: IO[str],
                 check_types: bool) -> bool:
    """The OPC UA table, with the server's type and access; False when a point is bad or,
    with ``check_types``, disagrees with the server."""
    good = True
    rows: list[tuple[str, ...]] = [("point", "raw", "value", "unit", "type", "access",
                                    "quality")]
    mismatches = []
    for pname, point in config.points.items():
        reading = result.readings[pname]
        good &= reading.quality is Quality.GOOD
        info = result.described.get(pname)
        raw, data_type, access = probe_opcua.columns(info)
        rows.append((pname, raw, _format_value(reading, point), point.unit or "", data_type, access,
                     reading.quality_text))
        if check_types:
            mismatches += [f"  {pname}: {p}" for p in probe_opcua.type_problems(point, info)]
    out.write(_table(rows) + "\n")
    if mismatches:
        out.write("type mismatches:\n" + "\n".join(mismatches) + "\n")
    out.write("\n")
    return good and not mismatches


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        .rstrip()
        for row in rows
    )
