"""OPC UA driver (asyncua): polled reads, data-change subscriptions and typed writes."""

from drivers.opcua.config import OpcUaPoint, OpcUaSettings
from drivers.opcua.device import DISCONNECTED, OpcUaDevice

__all__ = ["DISCONNECTED", "OpcUaDevice", "OpcUaPoint", "OpcUaSettings"]
