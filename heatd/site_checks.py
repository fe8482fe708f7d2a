"""Checks that need the whole site, not one field: references, register overlaps, shared
serial lines, write bounds a point cannot hold, a safe state its bounds would clamp. Each
problem carries the path of the field to blame, so the loader can name its line in the
file.

The loader runs these checks also when some entries failed validation and were left out
(``Invalid``): a check never blames a reference to such an entry, nor judges with a
section that fell back to its defaults.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator

from heatd.billing.points import contract_problems
from heatd.config import (
    DeviceConfig,
    ModbusPointConfig,
    ModbusRtuDeviceConfig,
    ModbusTcpDeviceConfig,
    OpcUaDeviceConfig,
    PointConfig,
    SiteConfig,
)
from heatd.control import roles as R
from heatd.control.bounds import SAFE_SETPOINTS
from heatd.control.roles import ALL_ROLES, INPUT_ROLES, OUTPUT_ROLES
from heatd.drivers.codec import FLOAT_TYPES, RAW_LIMITS, DataType
from heatd.drivers.modbus.addresses import Table
from heatd.heartbeat import heartbeat_span
from heatd.mqtt.topics import RESERVED_DEVICES, RESERVED_POINTS
from heatd.role_units import to_point_value, unit_problem

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]


class Invalid:
    """Paths of the entries (a point, a device, a poll group, a section) that failed
    validation and were left out of the site the checks see."""

    def __init__(self, paths: Iterable[Loc] = ()) -> None:
        self._paths = frozenset(tuple(path) for path in paths)

    def covers(self, *path: str | int) -> bool:
        """Whether ``path`` lies in (or is) an entry that was left out."""
        return any(path[:depth] in self._paths for depth in range(1, len(path) + 1))


def site_problems(site: SiteConfig, invalid: Invalid | None = None) -> list[Problem]:
    """Every whole-site mistake, in file order as far as possible."""
    invalid = invalid or Invalid()
    return [
        *_poll_group_problems(site, invalid),
        *_point_problems(site),
        *_modbus_address_problems(site),
        *_shared_line_problems(site),
        *_role_problems(site, invalid),
        *_staleness_problems(site, invalid),
        *_setpoint_problems(site, invalid),
        *([] if invalid.covers("contracts") else contract_problems(site)),
        *_mqtt_device_problems(site, invalid),
    ]


def _poll_group_problems(site: SiteConfig, invalid: Invalid) -> Iterator[Problem]:
    for device_id, device in site.devices.items():
        for name, point in device.points.items():
            if invalid.covers("poll_groups", point.poll_group):
                continue
            if point.poll_group not in site.poll_groups:
                known = ", ".join(site.poll_groups) or "none"
                yield (("devices", device_id, "points", name, "poll_group"),
                       f"{point.poll_group!r} is not a poll group (known: {known})")


def _modbus_address_problems(site: SiteConfig) -> Iterator[Problem]:
    for device_id, device in site.devices.items():
        if isinstance(device, OpcUaDeviceConfig):
            continue
        forbidden = [hole.on_wire(device.address_base) for hole in device.forbidden]
        taken: dict[Table, list[tuple[int, int, str, ModbusPointConfig]]] = defaultdict(list)
        for name, point in device.points.items():
            where = ("devices", device_id, "points", name, "address")
            first = device.protocol_address(point)
            last = first + point.register_count - 1
            if first < 0:
                yield where, f"{point.address} is below the address base of this point"
                continue
            if last > 65535:
                yield where, f"{point.address} + {point.register_count} registers passes 65535"
                continue
            if any(hole.hits(first, last + 1, point.table) for hole in forbidden):
                yield where, "lies inside a forbidden range of the device"
            for other_first, other_last, other_name, other in taken[point.table]:
                if first <= other_last and other_first <= last and not _may_share(point, other):
                    yield where, (f"registers {first}-{last} overlap point {other_name!r} "
                                  f"({other_first}-{other_last})")
            taken[point.table].append((first, last, name, point))


def _may_share(a: ModbusPointConfig, b: ModbusPointConfig) -> bool:
    """Bits of one status word may share its register with each other and with the word
    itself read as a whole; the same bit twice may not."""
    bits = [p for p in (a, b) if p.data_type is DataType.BIT]
    if not bits or a.address != b.address:
        return False
    if len(bits) == 2:
        return a.bit != b.bit
    whole = a if b.data_type is DataType.BIT else b
    return whole.data_type in (DataType.UINT16, DataType.INT16)


def _shared_line_problems(site: SiteConfig) -> Iterator[Problem]:
    """Devices on one serial line must agree on its settings and differ in unit id; so must
    devices behind one Modbus TCP gateway."""
    lines: dict[str, tuple[str, ModbusRtuDeviceConfig]] = {}
    units: dict[tuple[str, int], str] = {}
    for device_id, device in site.devices.items():
        if isinstance(device, ModbusRtuDeviceConfig):
            endpoint = device.serial_port
            first = lines.setdefault(endpoint, (device_id, device))
            for setting in ("baudrate", "parity", "stopbits", "bytesize"):
                if getattr(device, setting) != getattr(first[1], setting):
                    yield (("devices", device_id, setting),
                           f"differs from device {first[0]!r} on the same line {endpoint}")
        elif isinstance(device, ModbusTcpDeviceConfig):
            endpoint = f"{device.host}:{device.port}"
        else:
            continue
        owner = units.setdefault((endpoint, device.unit_id), device_id)
        if owner != device_id:
            yield (("devices", device_id, "unit_id"),
                   f"unit id {device.unit_id} on {endpoint} is already device {owner!r}")


def _read_only(point: PointConfig) -> str | None:
    """Why heatd can never write this point, or None."""
    if isinstance(point, ModbusPointConfig) and point.table is Table.INPUT:
        return "an input register (read-only in Modbus; writable registers are holding)"
    if isinstance(point, ModbusPointConfig) and point.table is Table.DISCRETE:
        return "a discrete input (read-only in Modbus; writable bits are coils)"
    if point.data_type is DataType.BIT:
        return ("a single bit of a register, which cannot be written on its own (heatd "
                "writes whole registers; use a coil or a register of its own)")
    return None


def encodable(point: PointConfig) -> tuple[float, float] | None:
    """The lowest and highest engineering value the point's data type can carry after
    ``value = raw * scale + offset``; None for booleans and untyped points."""
    limits = RAW_LIMITS.get(point.data_type) if point.data_type is not None else None
    if limits is None or point.scale == 0:
        return None
    ends = [raw * point.scale + point.offset if math.isfinite(raw) else raw * point.scale
            for raw in limits]
    return min(ends), max(ends)


def _fits(point: PointConfig, value: float) -> bool:
    """Whether ``value`` survives encoding (integers round to the nearest raw step)."""
    low, high = RAW_LIMITS[point.data_type]  # type: ignore[index]
    raw = (value - point.offset) / point.scale
    if point.data_type not in FLOAT_TYPES:
        raw = round(raw)
    return low <= raw <= high


def _encoding(point: PointConfig) -> str:
    """E.g. ``uint16 with scale 0.1 and offset -40``."""
    parts = [f"scale {point.scale:g}"] if point.scale != 1.0 else []
    if point.offset != 0.0:
        parts.append(f"offset {point.offset:g}")
    kind = point.data_type.value if point.data_type is not None else "untyped"
    return f"{kind} with {' and '.join(parts)}" if parts else str(kind)


def _point_problems(site: SiteConfig) -> Iterator[Problem]:
    """Points that can only fail: writable where the protocol cannot write, write bounds
    that read back as out of range, or that the data type cannot carry."""
    for device_id, device in site.devices.items():
        for name, point in device.points.items():
            where = ("devices", device_id, "points", name)
            reason = _read_only(point)
            if point.writable and reason is not None:
                yield (*where, "writable"), f"the point is {reason}"
                continue
            carried = encodable(point)
            for bound, value in (("write_min", point.write_min), ("write_max", point.write_max)):
                if value is None:
                    continue
                if point.range is not None and not point.range[0] <= value <= point.range[1]:
                    yield (*where, bound), (
                        f"{value:g} lies outside the point's range [{point.range[0]:g}, "
                        f"{point.range[1]:g}]: a value written there reads back as bad")
                elif carried is not None and not _fits(point, value):
                    yield (*where, bound), (
                        f"{value:g} cannot be written: {_encoding(point)} carries "
                        f"{carried[0]:g} to {carried[1]:g}")


def _bound(site: SiteConfig, ref: str) -> tuple[Loc, DeviceConfig | None, PointConfig | None]:
    """The path, device and point a role's ``device.point`` names (None where the site has
    no such device or point)."""
    device_id, name = ref.split(".", 1)
    device = site.devices.get(device_id)
    point = device.points.get(name) if device is not None else None
    return ("devices", device_id, "points", name), device, point


_CONTINUOUS_OUTPUTS = frozenset(
    {R.VALVE_RECOVERY, R.DRYCOOLER_FAN, R.HP_CAPACITY, R.DH_SUPPLY_SETPOINT})
"""Output roles that take a share or a temperature, never an on/off bit: on a coil, the
envelope's 20 % valve ceiling would be written as fully open."""


def _role_problems(site: SiteConfig, invalid: Invalid) -> Iterator[Problem]:
    for role in site.roles:
        where: tuple[str | int, ...] = ("roles", role)
        if role not in ALL_ROLES:
            yield where, f"{role!r} is not a role heatd knows"
            continue
        refs = site.role_points(role)
        for index, ref in enumerate(refs):
            at = (*where, index) if isinstance(site.roles[role], list) else where
            path, _, point = _bound(site, ref)
            if invalid.covers(*path):
                continue  # its own mistake is reported where it stands
            if point is None:
                yield at, f"{ref!r} is not a point of this site"
                continue
            reason = _read_only(point)
            if role in OUTPUT_ROLES and reason is not None:
                yield at, f"{ref!r} is bound to output role {role!r} but is {reason}"
            elif role in OUTPUT_ROLES and not point.writable:
                yield at, f"{ref!r} is bound to output role {role!r} but is not writable"
            elif role in _CONTINUOUS_OUTPUTS and point.data_type in (DataType.BOOL,
                                                                    DataType.BIT):
                yield at, (f"{ref!r} is a {point.data_type.value} point, but {role!r} is a "
                           "continuous setpoint: any share above 0 would be written as on")
            elif role == R.PLC_HEARTBEAT and isinstance(span := heartbeat_span(point), str):
                yield at, f"{ref!r} cannot carry the PLC heartbeat: {span}"
            elif (unit := unit_problem(role, point)) is not None:
                yield at, f"{ref!r} {unit}"
        if role in OUTPUT_ROLES and len(refs) != 1:
            yield where, "an output role is bound to exactly one point"
    yield from _shared_outputs(site)


def _shared_outputs(site: SiteConfig) -> Iterator[Problem]:
    """One point, one output role: two roles writing one register would take turns at it,
    and the plant would get neither's setpoint."""
    owner: dict[str, str] = {}
    for role in site.roles:
        if role not in OUTPUT_ROLES:
            continue
        for ref in site.role_points(role):
            first = owner.setdefault(ref, role)
            if first != role:
                yield ("roles", role), (f"{ref!r} is already bound to output role {first!r}:"
                                        " a point takes one output role")


_SAFE_MEANING = {
    R.VALVE_RECOVERY: "all coolant to the dry cooler",
    R.DRYCOOLER_FAN: "dry-cooler fans at full speed",
    R.HP_CAPACITY: "heat pump off",
}


def safe_state_problems(site: SiteConfig, invalid: Invalid | None = None) -> Iterator[Problem]:
    """Output points whose write bounds (or data type) keep the safe state out of reach:
    the worst case would be clamped to less cooling than it asks for. heatd clamps rather
    than refuses at run time; check-config refuses such a site. The capacity is judged only
    when no ``hp.enable`` turns the heat pump off (a minimum capacity is normal then)."""
    invalid = invalid or Invalid()
    for role, value in SAFE_SETPOINTS.as_roles().items():
        if role not in _SAFE_MEANING or isinstance(value, bool):
            continue
        if role == R.HP_CAPACITY and site.role_points(R.HP_ENABLE):
            continue
        refs = site.role_points(role)
        if len(refs) != 1:
            continue  # reported by the role checks
        where, _, point = _bound(site, refs[0])
        if invalid.covers(*where) or point is None:
            continue
        if not point.writable or _read_only(point) is not None:
            continue  # reported by the role checks
        wanted = float(to_point_value(role, point, value))
        unit = f" {point.unit}" if point.unit else ""
        what = f"the safe state writes {wanted:g}{unit} to {role} ({_SAFE_MEANING[role]})"
        if point.write_min is not None and wanted < point.write_min - 1e-9:
            yield (*where, "write_min"), (f"{what}, below write_min {point.write_min:g}: "
                                          "the worst case would be clamped short of it")
        elif point.write_max is not None and wanted > point.write_max + 1e-9:
            yield (*where, "write_max"), (f"{what}, above write_max {point.write_max:g}: "
                                          "the worst case would be clamped short of it")
        elif (carried := encodable(point)) is not None and not _fits(point, wanted):
            yield (*where, "data_type"), (f"{what}, but {_encoding(point)} carries only "
                                          f"{carried[0]:g} to {carried[1]:g}")


def _setpoint_problems(site: SiteConfig, invalid: Invalid) -> Iterator[Problem]:
    """Outputs in engineering units: a ``setpoints:`` entry for each one bound, and its
    bounds inside what the bound point may be written and can carry."""
    for role, setpoint in site.setpoints.items():
        where: Loc = ("setpoints", role)
        if role not in R.ENGINEERING_OUTPUTS:
            yield where, (f"{role!r} is not an output heatd writes from setpoints; one of "
                          f"{', '.join(sorted(R.ENGINEERING_OUTPUTS))}")
            continue
        refs = site.role_points(role)
        if not refs and not invalid.covers("roles", role):
            yield where, f"{role!r} is not bound in roles: nothing would be written"
        if len(refs) != 1:
            continue  # an unbound role, or the role checks report it
        path, _, point = _bound(site, refs[0])
        if point is None or invalid.covers(*path) or not point.writable:
            continue  # reported by the role checks
        unit = f" {point.unit}" if point.unit else ""
        for bound in ("min", "max"):
            value = getattr(setpoint, bound)
            if point.write_min is not None and value < point.write_min:
                yield (*where, bound), (f"{value:g}{unit} is below write_min "
                                        f"{point.write_min:g} of {refs[0]}")
            elif point.write_max is not None and value > point.write_max:
                yield (*where, bound), (f"{value:g}{unit} is above write_max "
                                        f"{point.write_max:g} of {refs[0]}")
            elif (carried := encodable(point)) is not None and not _fits(point, value):
                yield (*where, bound), (f"{value:g}{unit} cannot be written to {refs[0]}: "
                                        f"{_encoding(point)} carries {carried[0]:g} to "
                                        f"{carried[1]:g}")
    for role in site.roles:
        if role in R.ENGINEERING_OUTPUTS and role not in site.setpoints \
                and not invalid.covers("setpoints", role):
            yield ("roles", role), (f"{role} needs setpoints.{role} with its value, min and "
                                    "max")


def _staleness_problems(site: SiteConfig, invalid: Invalid) -> Iterator[Problem]:
    """A polled input read less often than the control core's staleness limit would be
    judged stale between two polls, so the controller would run on its worst case.
    One problem per poll group, naming the first such point."""
    if invalid.covers("control"):
        return  # the limit in the file is not known
    limit = site.control.validation.stale_after_s
    slow: dict[str, list[str]] = defaultdict(list)
    for role in site.roles:
        if role not in INPUT_ROLES:
            continue
        for ref in site.role_points(role):
            _, device, point = _bound(site, ref)
            if point is None:
                continue  # reported by the role checks
            if isinstance(device, OpcUaDeviceConfig) and device.mode == "subscription":
                continue  # heard on every publishing interval, not polled
            group_name = point.poll_group
            if invalid.covers("poll_groups", group_name):
                continue
            group = site.poll_groups.get(group_name)
            if group is not None and group.interval >= limit:
                slow[group_name].append(ref)
    for group_name, refs in slow.items():
        interval = site.poll_groups[group_name].interval
        more = f" and {len(refs) - 1} more" if len(refs) > 1 else ""
        yield (("control", "validation", "stale_after_s"),
               f"{limit:g} s is not longer than the {interval:g} s interval of poll group "
               f"{group_name!r}: its inputs ({refs[0]}{more}) would go stale between polls")


def _mqtt_device_problems(site: SiteConfig, invalid: Invalid) -> Iterator[Problem]:
    """With an ``mqtt:`` section, each device name is a topic level next to the site's own
    (``<base>/meter/...``, ``<base>/cmd/...``): a device may not take one of those names,
    or the link could not start; and each point a key of its device's state, beside
    ``ts`` and ``quality``."""
    if site.mqtt is None and not invalid.covers("mqtt"):
        return
    for device_id in site.devices:
        if device_id in RESERVED_DEVICES:
            yield (("devices", device_id),
                   f"{device_id!r} is reserved on MQTT ({', '.join(sorted(RESERVED_DEVICES))})"
                   ": rename the device")
        for name in site.devices[device_id].points:
            if name in RESERVED_POINTS:
                yield (("devices", device_id, "points", name),
                       f"{name!r} is a key of the device's MQTT state "
                       f"({', '.join(sorted(RESERVED_POINTS))}): rename the point")
