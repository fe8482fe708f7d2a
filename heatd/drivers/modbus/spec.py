"""What the Modbus driver needs to know about a point, a device's request limits and its
connection. The config loader builds these from the site YAML; the driver never parses
configuration itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from heatd.drivers.codec import Codec, DataType
from heatd.drivers.modbus.addresses import LAST_ADDRESS, Forbidden, Table

MAX_REGISTERS = 125
"""Protocol maximum for one read of holding or input registers."""
MAX_BITS = 2000
"""Protocol maximum for one read of coils or discrete inputs."""


@dataclass(frozen=True, slots=True)
class ModbusPoint:
    """One value on one unit. ``address`` is the 0-based protocol address (the config has
    already applied the device's documented address base)."""

    name: str
    table: Table
    address: int
    codec: Codec
    unit_id: int
    write_multiple: bool = False
    """Write even a single register with function 16 (Write Multiple Registers): for
    devices that refuse function 6."""

    def __post_init__(self) -> None:
        if self.table.is_bits and self.codec.data_type is not DataType.BOOL:
            raise ValueError(f"{self.name}: a {self.table.value} point must be bool")
        if not 0 <= self.unit_id <= 255:
            raise ValueError(f"{self.name}: unit id {self.unit_id} outside 0..255")
        if self.address < 0 or self.end - 1 > LAST_ADDRESS:
            raise ValueError(f"{self.name}: address {self.address} outside 0..65535")

    @property
    def width(self) -> int:
        """Addresses the point occupies: one bit in a bit table, else its registers."""
        return 1 if self.table.is_bits else self.codec.count

    @property
    def end(self) -> int:
        """First address after the point."""
        return self.address + self.width


@dataclass(frozen=True, slots=True)
class PlanLimits:
    """How a device wants to be asked.

    ``forbidden`` holds the address ranges that must never be read. A request is never
    merged across a forbidden range and a point inside one is a configuration error.
    ``max_gap`` (only with ``allow_gaps``) is the largest number of unused addresses a
    request may read to save a round trip.
    """

    max_registers: int = MAX_REGISTERS
    max_bits: int = MAX_BITS
    allow_gaps: bool = False
    max_gap: int = 0
    forbidden: tuple[Forbidden, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.max_registers <= MAX_REGISTERS:
            raise ValueError(f"max_registers must be 1..{MAX_REGISTERS}")
        if not 1 <= self.max_bits <= MAX_BITS:
            raise ValueError(f"max_bits must be 1..{MAX_BITS}")
        if self.max_gap < 0:
            raise ValueError("max_gap must be >= 0")
        for hole in self.forbidden:
            if not 0 <= hole.first <= hole.last <= LAST_ADDRESS:
                raise ValueError(f"forbidden range {hole.first}..{hole.last} is not a valid "
                                 "range")

    def limit(self, table: Table) -> int:
        return self.max_bits if table.is_bits else self.max_registers

    @property
    def gap(self) -> int:
        return self.max_gap if self.allow_gaps else 0

    def touches_forbidden(self, start: int, end: int, table: Table) -> bool:
        """True if any address in ``start <= a < end`` of ``table`` is forbidden."""
        return any(hole.hits(start, end, table) for hole in self.forbidden)


@dataclass(frozen=True, slots=True)
class TcpSettings:
    """One TCP endpoint as one unit sees it. ``timeout`` bounds one attempt of one request;
    ``retries`` are extra attempts; ``request_delay`` is a pause between requests for slow
    gateways; reconnects and a silent unit's probes back off from ``backoff_min`` to
    ``backoff_max`` seconds with jitter, once ``breaker_after`` requests in a row went
    unanswered. ``own_connection`` gives the unit a TCP connection of its own instead of
    sharing one per host:port (for gateways that serve units in parallel)."""

    host: str
    port: int = 502
    timeout: float = 1.0
    retries: int = 0
    request_delay: float = 0.0
    backoff_min: float = 0.5
    backoff_max: float = 30.0
    breaker_after: int = 1
    own_connection: bool = False


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """One RS-485 line as one unit sees it. ``request_delay`` is the silent interval the
    slowest unit on the line needs between frames; timeout, retries, backoff and
    ``breaker_after`` mean what they mean in TcpSettings."""

    port: str
    baudrate: int = 19200
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    timeout: float = 1.0
    retries: int = 0
    request_delay: float = 0.0
    backoff_min: float = 0.5
    backoff_max: float = 30.0
    breaker_after: int = 1
