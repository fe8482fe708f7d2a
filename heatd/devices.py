"""Turn a validated site into driver objects: one per device, sharing a TCP connection per
gateway (unless a device asks for a connection of its own) and one serial client per RS-485
line, with each point's driver spec and the poll group it belongs to. Every unit keeps its
own timeout, retries and backoff on a shared link.

A protocol's driver (and its library: pymodbus, asyncua) is imported only when the site
has a device that speaks it, so a Modbus-only gateway never loads asyncua.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from heatd.config import (
    ModbusRtuDeviceConfig,
    ModbusTcpDeviceConfig,
    OpcUaDeviceConfig,
    PointConfig,
    SiteConfig,
)
from heatd.drivers.base import Device
from heatd.drivers.codec import Codec
from heatd.drivers.modbus.spec import ModbusPoint, PlanLimits, SerialSettings, TcpSettings
from heatd.drivers.opcua.spec import OpcUaPoint, OpcUaSettings
from heatd.drivers.reading import Reading, Value
from heatd.points import PointLimits

if TYPE_CHECKING:
    from heatd.drivers.modbus.device import ModbusDevice
    from heatd.drivers.modbus.link import Link, SerialLine, TcpLink
    from heatd.drivers.modbus.plan import Block
    from heatd.drivers.opcua.device import OpcUaDevice

STALE_AFTER_POLLS = 3
"""A point with no max_age of its own is stale after this many missed polls."""

P = TypeVar("P", ModbusPoint, OpcUaPoint)


@dataclass
class BoundDevice(Generic[P]):
    """A driver with the points it serves, grouped the way they are polled.

    Driver and points speak one protocol, and every read and write goes through here by
    point name, so a point can only ever reach a driver of its own protocol.
    """

    name: str
    driver: Device[P]
    points: dict[str, P]
    groups: dict[str, tuple[P, ...]] = field(default_factory=dict)

    def ref(self, point_name: str) -> str:
        return f"{self.name}.{point_name}"

    async def read_all(self) -> dict[str, Reading]:
        return await self.driver.read(tuple(self.points.values()))

    async def read_group(self, group: str) -> dict[str, Reading]:
        """One poll of ``group`` (the same tuple every time: the driver's plan cache
        recognises it by identity)."""
        return await self.driver.read(self.groups[group])

    async def read_point(self, name: str) -> Reading:
        spec = self.points[name]
        return (await self.driver.read((spec,)))[spec.name]

    async def write_point(self, name: str, value: Value, *, urgent: bool = False) -> None:
        """Raises heatd.drivers.base.WriteError."""
        await self.driver.write(self.points[name], value, urgent=urgent)


@dataclass
class ModbusBound(BoundDevice[ModbusPoint]):
    """A Modbus unit: its read plan can be shown (``heatd probe``)."""

    driver: ModbusDevice

    def plan(self) -> list[Block]:
        return self.driver.plan(tuple(self.points.values()))


@dataclass
class OpcUaBound(BoundDevice[OpcUaPoint]):
    """An OPC UA server: polled, or pushing its changes on a subscription."""

    driver: OpcUaDevice
    subscribed: bool = False
    publishing_interval: float = 1.0


AnyBound = ModbusBound | OpcUaBound
"""What ``build_devices`` makes of each device of a site."""


def _modbus_points(device: ModbusTcpDeviceConfig | ModbusRtuDeviceConfig) -> dict[str, ModbusPoint]:
    return {
        name: ModbusPoint(
            name=name,
            table=point.table,
            address=device.protocol_address(point),
            codec=Codec(point.data_type, point.order, point.scale, point.offset, point.bit),
            unit_id=device.unit_id,
            write_multiple=(point.write_function or device.write_function) == "fc16",
        )
        for name, point in device.points.items()
    }


def _groups(device: ModbusTcpDeviceConfig | ModbusRtuDeviceConfig | OpcUaDeviceConfig,
            points: Mapping[str, P]) -> dict[str, tuple[P, ...]]:
    """The points of each poll group, in the site file's order."""
    groups: dict[str, list[P]] = defaultdict(list)
    for pname, spec in points.items():
        groups[device.points[pname].poll_group].append(spec)
    return {group: tuple(specs) for group, specs in groups.items()}


def _own_connection(device: ModbusTcpDeviceConfig) -> bool:
    """``connection: own`` in the site file, once the schema offers it; shared otherwise."""
    return getattr(device, "connection", "shared") == "own"


def _limits(device: ModbusTcpDeviceConfig | ModbusRtuDeviceConfig) -> PlanLimits:
    return PlanLimits(
        max_registers=device.max_registers,
        allow_gaps=device.allow_gaps,
        max_gap=device.max_gap,
        forbidden=tuple(hole.on_wire(device.address_base) for hole in device.forbidden),
    )


def _opcua_settings(device: OpcUaDeviceConfig) -> OpcUaSettings:
    return OpcUaSettings(
        endpoint=device.endpoint,
        security_policy=device.security_policy,
        security_mode=device.security_mode,
        username=device.username,
        password=device.password,
        certificate=device.certificate,
        private_key=device.private_key,
        server_certificate=device.server_certificate,
        application_uri=device.application_uri,
        trust=device.server_trust,
        trust_list=device.trust_list,
        namespaces=device.namespaces,
        timeout=device.timeout,
        mode=device.mode,
        publishing_interval=device.publishing_interval,
        reconnect_min=device.backoff.min,
        reconnect_max=device.backoff.max,
    )


_Key = TypeVar("_Key")
_Link = TypeVar("_Link", bound="Link")
_Settings = TypeVar("_Settings", TcpSettings, SerialSettings)


def _shared(links: dict[_Key, _Link], key: _Key, settings: _Settings,
            make: Callable[[_Settings], _Link]) -> _Link:
    """The link under ``key``: made for the first unit on it, joined by every later one."""
    link = links.get(key)
    if link is None:
        link = links[key] = make(settings)
    else:
        link.join(settings)
    return link


def _bind_tcp(name: str, device: ModbusTcpDeviceConfig,
              links: dict[tuple[str, int, str], TcpLink]) -> ModbusBound:
    """A unit behind a TCP server or gateway, on the link it shares with the gateway's
    other units (or its own)."""
    from heatd.drivers.modbus.device import ModbusTcpDevice
    from heatd.drivers.modbus.link import TcpLink

    settings = TcpSettings(
        host=device.host, port=device.port, timeout=device.timeout,
        retries=device.retries, request_delay=device.request_delay,
        backoff_min=device.backoff.min, backoff_max=device.backoff.max,
        own_connection=_own_connection(device),
    )
    key = (device.host, device.port, name if settings.own_connection else "")
    link = _shared(links, key, settings, TcpLink)
    points = _modbus_points(device)
    return ModbusBound(name, ModbusTcpDevice(name, settings, device.unit_id, _limits(device),
                                             link=link),
                       points, _groups(device, points))


def _bind_rtu(name: str, device: ModbusRtuDeviceConfig,
              lines: dict[str, SerialLine]) -> ModbusBound:
    """A unit on an RS-485 line, sharing the line's serial client."""
    from heatd.drivers.modbus.device import ModbusRtuDevice
    from heatd.drivers.modbus.link import SerialLine

    unit = SerialSettings(
        port=device.serial_port, baudrate=device.baudrate, parity=device.parity,
        stopbits=device.stopbits, bytesize=device.bytesize, timeout=device.timeout,
        retries=device.retries, request_delay=device.request_delay,
        backoff_min=device.backoff.min, backoff_max=device.backoff.max,
    )
    line = _shared(lines, device.serial_port, unit, SerialLine)
    points = _modbus_points(device)
    return ModbusBound(name, ModbusRtuDevice(name, line, device.unit_id, _limits(device),
                                             settings=unit),
                       points, _groups(device, points))


def bind_opcua(name: str, device: OpcUaDeviceConfig) -> OpcUaBound:
    """An OPC UA server with its points; nothing connects yet."""
    from heatd.drivers.opcua.device import OpcUaDevice

    points = {
        pname: OpcUaPoint(name=pname, node_id=p.node_id, data_type=p.data_type,
                          scale=p.scale, offset=p.offset)
        for pname, p in device.points.items()
    }
    return OpcUaBound(name, OpcUaDevice(name, _opcua_settings(device)), points,
                      _groups(device, points), subscribed=device.mode == "subscription",
                      publishing_interval=device.publishing_interval)


def build_devices(site: SiteConfig, only: str | None = None) -> dict[str, AnyBound]:
    """Driver objects for every device (or just ``only``); nothing connects yet."""
    tcp_links: dict[tuple[str, int, str], TcpLink] = {}
    serial_lines: dict[str, SerialLine] = {}
    bound: dict[str, AnyBound] = {}
    for name, device in site.devices.items():
        if only is not None and name != only:
            continue
        if isinstance(device, ModbusTcpDeviceConfig):
            bound[name] = _bind_tcp(name, device, tcp_links)
        elif isinstance(device, ModbusRtuDeviceConfig):
            bound[name] = _bind_rtu(name, device, serial_lines)
        else:
            bound[name] = bind_opcua(name, device)
    return bound


def max_age_of(site: SiteConfig, device_name: str, point: PointConfig) -> float:
    """The point's own max_age, else a few poll intervals (or publishing intervals for a
    subscription, which reports only changes)."""
    if point.max_age is not None:
        return point.max_age
    interval = site.poll_groups[point.poll_group].interval
    device = site.devices[device_name]
    if isinstance(device, OpcUaDeviceConfig) and device.mode == "subscription":
        interval = max(interval, device.publishing_interval)
    return STALE_AFTER_POLLS * interval


def point_limits(site: SiteConfig) -> dict[str, PointLimits]:
    """What the point image needs for every point of the site."""
    limits = {}
    for device_name, device in site.devices.items():
        for name, point in device.points.items():
            low, high = point.range if point.range is not None else (None, None)
            limits[f"{device_name}.{name}"] = PointLimits(
                max_age=max_age_of(site, device_name, point), low=low, high=high
            )
    return limits
