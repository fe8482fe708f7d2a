"""Checks that need the whole site, not one field: references, register overlaps, shared
serial lines. Each problem carries the path of the field to blame, so the loader can name
its line in the file.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from drivers.codec import DataType
from drivers.modbus.spec import Table
from heatd.config import (
    ModbusPointConfig,
    ModbusRtuDevice,
    ModbusTcpDevice,
    OpcUaDevice,
    SiteConfig,
)
from heatd.control.roles import ALL_ROLES, INPUT_ROLES, OUTPUT_ROLES

Problem = tuple[tuple[str | int, ...], str]


def site_problems(site: SiteConfig) -> list[Problem]:
    """Every whole-site mistake, in file order as far as possible."""
    return [
        *_poll_group_problems(site),
        *_modbus_address_problems(site),
        *_shared_line_problems(site),
        *_role_problems(site),
        *_staleness_problems(site),
    ]


def _poll_group_problems(site: SiteConfig) -> Iterator[Problem]:
    for device_id, device in site.devices.items():
        for name, point in device.points.items():
            if point.poll_group not in site.poll_groups:
                known = ", ".join(site.poll_groups) or "none"
                yield (("devices", device_id, "points", name, "poll_group"),
                       f"{point.poll_group!r} is not a poll group (known: {known})")


def protocol_address(device: ModbusTcpDevice | ModbusRtuDevice, point: ModbusPointConfig) -> int:
    """The 0-based address on the wire, after the address base the file states."""
    base = point.address_base if point.address_base is not None else device.address_base
    return point.address - base


def _modbus_address_problems(site: SiteConfig) -> Iterator[Problem]:
    for device_id, device in site.devices.items():
        if isinstance(device, OpcUaDevice):
            continue
        forbidden = [hole.on_wire(device.address_base) for hole in device.forbidden]
        taken: dict[Table, list[tuple[int, int, str, ModbusPointConfig]]] = defaultdict(list)
        for name, point in device.points.items():
            where = ("devices", device_id, "points", name, "address")
            first = protocol_address(device, point)
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
    lines: dict[str, tuple[str, ModbusRtuDevice]] = {}
    units: dict[tuple[str, int], str] = {}
    for device_id, device in site.devices.items():
        if isinstance(device, ModbusRtuDevice):
            endpoint = device.serial_port
            first = lines.setdefault(endpoint, (device_id, device))
            for setting in ("baudrate", "parity", "stopbits", "bytesize"):
                if getattr(device, setting) != getattr(first[1], setting):
                    yield (("devices", device_id, setting),
                           f"differs from device {first[0]!r} on the same line {endpoint}")
        elif isinstance(device, ModbusTcpDevice):
            endpoint = f"{device.host}:{device.port}"
        else:
            continue
        owner = units.setdefault((endpoint, device.unit_id), device_id)
        if owner != device_id:
            yield (("devices", device_id, "unit_id"),
                   f"unit id {device.unit_id} on {endpoint} is already device {owner!r}")


def _role_problems(site: SiteConfig) -> Iterator[Problem]:
    for role in site.roles:
        where: tuple[str | int, ...] = ("roles", role)
        if role not in ALL_ROLES:
            yield where, f"{role!r} is not a role heatd knows"
            continue
        refs = site.role_points(role)
        for index, ref in enumerate(refs):
            at = (*where, index) if isinstance(site.roles[role], list) else where
            device_id, name = ref.split(".", 1)
            device = site.devices.get(device_id)
            if device is None or name not in device.points:
                yield at, f"{ref!r} is not a point of this site"
            elif role in OUTPUT_ROLES and not device.points[name].writable:
                yield at, f"{ref!r} is bound to output role {role!r} but is not writable"
        if role in OUTPUT_ROLES and len(refs) != 1:
            yield where, "an output role is bound to exactly one point"


def _staleness_problems(site: SiteConfig) -> Iterator[Problem]:
    """A polled input read less often than the control core's staleness limit would be
    judged stale between two polls, so the controller would run on its worst case.
    One problem per poll group, naming the first such point."""
    limit = site.control.validation.stale_after_s
    slow: dict[str, list[str]] = defaultdict(list)
    for role in site.roles:
        if role not in INPUT_ROLES:
            continue
        for ref in site.role_points(role):
            device_id, name = ref.split(".", 1)
            device = site.devices.get(device_id)
            if device is None or name not in device.points:
                continue  # reported by the role checks
            if isinstance(device, OpcUaDevice) and device.mode == "subscription":
                continue  # heard on every publishing interval, not polled
            group_name = device.points[name].poll_group
            group = site.poll_groups.get(group_name)
            if group is not None and group.interval >= limit:
                slow[group_name].append(ref)
    for group_name, refs in slow.items():
        interval = site.poll_groups[group_name].interval
        more = f" and {len(refs) - 1} more" if len(refs) > 1 else ""
        yield (("control", "validation", "stale_after_s"),
               f"{limit:g} s is not longer than the {interval:g} s interval of poll group "
               f"{group_name!r}: its inputs ({refs[0]}{more}) would go stale between polls")
