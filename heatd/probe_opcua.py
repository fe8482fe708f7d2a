"""What ``heatd probe`` adds for OPC UA points: the server's DataType, the access heatd
has, the raw value before scale and offset, and (``--check-types``) where the site file
disagrees with the server about the type or writability of a point."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from heatd.config import OpcUaPointConfig
from heatd.drivers.codec import DataType

if TYPE_CHECKING:
    from heatd.devices import OpcUaBound
    from heatd.drivers.opcua.browse import VariableInfo

Described = dict[str, "VariableInfo | str"]


async def describe(device: OpcUaBound) -> Described:
    """The server's facts on each point; empty when the device is not connected."""
    with contextlib.suppress(ConnectionError, TimeoutError):
        return await device.driver.describe(tuple(device.points.values()))
    return {}


def columns(info: VariableInfo | str | None) -> tuple[str, str, str]:
    """(raw, type, access) cells for one point; a float raw value with every digit it has,
    as the decoded value beside it, so the two can be compared digit for digit."""
    from heatd.probe import full_digits  # heatd.probe imports this module

    if info is None or isinstance(info, str):
        return "-", "-", "-"
    raw = "-" if info.value is None else (
        full_digits(info.value, info.heatd_type is DataType.FLOAT32)
        if isinstance(info.value, float) else str(info.value))
    return raw, info.data_type, info.access


def type_problems(point: OpcUaPointConfig, info: VariableInfo | str | None) -> list[str]:
    """Where the site file and the server disagree about this point."""
    if info is None or isinstance(info, str):
        return []
    problems = []
    server_type = info.heatd_type
    if point.data_type is not None and server_type != point.data_type:
        have = server_type.value if server_type is not None else "none heatd can write"
        problems.append(f"data_type {point.data_type.value}, the server's {info.data_type} "
                        f"is {have}")
    if point.writable and not info.writable:
        problems.append(f"writable, the server gives heatd {info.access} access")
    if point.writable and point.data_type is None and server_type is None:
        problems.append(f"writable, heatd cannot write the server's {info.data_type}")
    if not info.readable:
        problems.append("the server gives heatd no read access")
    return problems
