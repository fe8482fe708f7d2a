"""OPC UA driver (asyncua): polled reads, data-change subscriptions and typed writes.

The point and settings types load without asyncua (config checks need only them); the
driver, and asyncua with it, loads on first use, so a site without an OPC UA device never
pays for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heatd.drivers.opcua.config import OpcUaPoint, OpcUaSettings

if TYPE_CHECKING:
    from heatd.drivers.opcua.device import DISCONNECTED, OpcUaDevice

__all__ = ["DISCONNECTED", "OpcUaDevice", "OpcUaPoint", "OpcUaSettings"]

_LAZY = {"DISCONNECTED": "device", "OpcUaDevice": "device"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"heatd.drivers.opcua.{module}"), name)
