"""OPC UA driver (asyncua): polled reads, data-change subscriptions and typed writes.

Every name loads from its module on first use: config checks import ``nodeid`` alone, and
the driver, with asyncua, loads with the first device, so a site without an OPC UA device
never pays for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from heatd.drivers.opcua.device import DISCONNECTED, OpcUaDevice
    from heatd.drivers.opcua.spec import OpcUaPoint, OpcUaSettings

__all__ = ["DISCONNECTED", "OpcUaDevice", "OpcUaPoint", "OpcUaSettings"]

_MODULE = {"DISCONNECTED": "device", "OpcUaDevice": "device", "OpcUaPoint": "spec",
           "OpcUaSettings": "spec"}


def __getattr__(name: str) -> Any:
    module = _MODULE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"heatd.drivers.opcua.{module}"), name)
