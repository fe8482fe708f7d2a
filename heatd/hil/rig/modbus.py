"""Real Modbus peers for the tests and the benchmark: pymodbus servers (TCP, and RTU over
a socat pty pair (heatd.hil.ptys)) with several unit ids, holes that answer ILLEGAL DATA ADDRESS,
switches that make a unit fall silent or send replies one register short, and a log of
every request received. Stopped and started again on its port, it drops its clients."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from heatd.drivers.modbus import Table
from heatd.hil.ptys import PtyPair
from heatd.hil.siteports import free_port

FUNCTION_CODE = {Table.COIL: 1, Table.DISCRETE: 2, Table.HOLDING: 3, Table.INPUT: 4}
REGISTER_WRITES = frozenset({6, 16})
COIL_WRITES = frozenset({5, 15})


def _ranges(size: int, holes: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """[start, end) runs of 0..size-1 that avoid the inclusive ``holes``."""
    out, start = [], 0
    for first, last in sorted(holes):
        if first > start:
            out.append((start, first))
        start = max(start, last + 1)
    if start < size:
        out.append((start, size))
    return out


def unit(unit_id: int, size: int = 1000, holes: Iterable[tuple[int, int]] = ()) -> SimDevice:
    """A unit with separate coil, discrete, holding and input tables of ``size`` addresses,
    all zero; register addresses inside ``holes`` (inclusive) answer ILLEGAL DATA ADDRESS."""
    regs = [
        SimData(a, values=[0] * (b - a), datatype=DataType.REGISTERS)
        for a, b in _ranges(size, holes)
    ]
    bits = [SimData(0, values=[False] * size, datatype=DataType.BITS)]
    return SimDevice(id=unit_id, simdata=(bits, list(bits), regs, list(regs)))


class Request(NamedTuple):
    """One request as the server received it."""

    at: float
    """time.monotonic() on arrival."""
    unit: int
    function: int
    address: int
    registers: tuple[int, ...]
    """What a register write carries; empty for any other request."""
    bits: tuple[bool, ...] = ()
    """What a coil write carries; empty for any other request."""


@dataclass
class Faults:
    """Per-unit misbehaviour, switched on and off while the server runs."""

    silent: set[int] = field(default_factory=set)
    short: set[int] = field(default_factory=set)


class SimServer:
    """A pymodbus server (TCP or RTU) serving ``units``; start/stop/restart at will."""

    def __init__(self, units: list[SimDevice], *, port: int | None = None, serial: str = ""):
        self.units = units
        self.port = port or (0 if serial else free_port())
        self.serial = serial
        self.faults = Faults()
        self.received: list[Request] = []
        """Every request, in order: what a client put on the wire, and when."""
        self.server: ModbusTcpServer | ModbusSerialServer | None = None

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending and data:
            unit_id = data[0] if self.serial else data[6]
            if unit_id in self.faults.silent:
                return b""
        return data

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            code = pdu.function_code
            self.received.append(Request(time.monotonic(), pdu.dev_id, code, pdu.address,
                                         tuple(pdu.registers) if code in REGISTER_WRITES
                                         else (),
                                         tuple(pdu.bits) if code in COIL_WRITES else ()))
        if sending and pdu.dev_id in self.faults.short and len(pdu.registers) > 1:
            pdu.registers = pdu.registers[:-1]
        return pdu

    @property
    def requests(self) -> int:
        """Requests received so far."""
        return len(self.received)

    def writes(self, unit_id: int, address: int) -> list[Request]:
        """The register writes received for one address of one unit."""
        return [r for r in self.received if r.unit == unit_id and r.address == address
                and r.function in REGISTER_WRITES]

    def coil_writes(self, unit_id: int, address: int) -> list[Request]:
        """The coil writes received for one address of one unit."""
        return [r for r in self.received if r.unit == unit_id and r.address == address
                and r.function in COIL_WRITES]

    async def start(self) -> None:
        if self.serial:
            self.server = ModbusSerialServer(
                self.units, framer=FramerType.RTU, port=self.serial, baudrate=115200,
                trace_packet=self._trace_packet, trace_pdu=self._trace_pdu,
            )
        else:
            self.server = ModbusTcpServer(
                self.units, address=("127.0.0.1", self.port),
                trace_packet=self._trace_packet, trace_pdu=self._trace_pdu,
            )
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    async def set(self, unit_id: int, table: Table, address: int, values: list) -> None:
        assert self.server is not None
        await self.server.async_setValues(unit_id, FUNCTION_CODE[table], address, values)

    async def get(self, unit_id: int, table: Table, address: int, count: int) -> list:
        assert self.server is not None
        return await self.server.async_getValues(unit_id, FUNCTION_CODE[table], address, count)


@contextlib.asynccontextmanager
async def pty_pair(tmp: Path) -> AsyncIterator[tuple[str, str]]:
    """Two connected pseudo terminals (a null-modem cable), made by socat: yields the
    server's end and the client's end (``tmp/ttyB``)."""
    pair = PtyPair(str(tmp / "ttyB"))
    await pair.start()
    try:
        yield pair.sim_end, pair.link
    finally:
        await pair.stop()
