"""The Modbus address space as a site file names it: the four tables, the last address,
and ranges that must never be read. Apart from the driver's point and device specs
(``spec``) so that checking a site file loads only these."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

LAST_ADDRESS = 0xFFFF


class Table(StrEnum):
    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    @property
    def is_bits(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE)

    @property
    def writable(self) -> bool:
        return self in (Table.HOLDING, Table.COIL)


@dataclass(frozen=True, slots=True)
class Forbidden:
    """Inclusive protocol addresses that must never be read: in one table, or (``table``
    None) in every table of the device."""

    first: int
    last: int
    table: Table | None = None

    def hits(self, start: int, end: int, table: Table) -> bool:
        """True if an address in ``start <= a < end`` of ``table`` is in this range."""
        return (self.table is None or self.table is table) and (
            self.first < end and start <= self.last)
