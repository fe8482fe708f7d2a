"""One Modbus server of the served plant: every unit id the site puts behind one host:port
(Modbus TCP) or on one serial line (Modbus RTU), registers encoded with the daemon's own
codecs, writes captured as they arrive.

Protocol-layer faults: a silenced unit swallows requests (no answer, writes not applied),
as a gateway does when the device behind it is gone; the whole server can be stopped and
started again (a restart), keeping the setpoints the client wrote.

Modbus carries no quality, so a value the plant cannot give (sensor dropout or NaN) is
served as the sentinel a transmitter reports on a wire break: NaN in a float register,
the most negative value of a signed integer, all ones in an unsigned one. The site's point
ranges make those bad quality in the daemon. A boolean keeps its last state.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

import structlog
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from heatd.config import ModbusRtuDeviceConfig, ModbusTcpDeviceConfig
from heatd.drivers.codec import FLOAT_TYPES, Codec, CodecError, DataType
from heatd.drivers.modbus import Table
from heatd.hil.pointmap import Binding

log = structlog.get_logger(__name__)

READ_CODE = {Table.COIL: 1, Table.DISCRETE: 2, Table.HOLDING: 3, Table.INPUT: 4}
_WRITE_TABLE = {5: Table.COIL, 15: Table.COIL, 6: Table.HOLDING, 16: Table.HOLDING,
                22: Table.HOLDING, 23: Table.HOLDING}
_BIT_TABLES = (Table.COIL, Table.DISCRETE)
_SIGNED = {DataType.INT16: 16, DataType.INT32: 32, DataType.INT64: 64}
_UNSIGNED = {DataType.UINT16: 16, DataType.UINT32: 32, DataType.UINT64: 64}


@dataclass(frozen=True, slots=True)
class WireWrite:
    """One write request as received, decoded into the point it hit (if any)."""

    device: str
    unit_id: int
    table: Table
    address: int
    raw: tuple[int, ...]
    binding: Binding | None
    value: float | bool | int | None


WriteSink = Callable[[WireWrite], None]


@dataclass(frozen=True, slots=True)
class Slot:
    """One point on the wire: where it lives and how it is encoded."""

    binding: Binding
    unit_id: int
    table: Table
    address: int
    codec: Codec

    @property
    def count(self) -> int:
        return 1 if self.table in _BIT_TABLES else self.codec.count


def no_value_registers(codec: Codec) -> list[int] | None:
    """The wire-break sentinel for a point with no value; None for booleans."""
    if codec.is_boolean:
        return None
    raw_codec = Codec(codec.data_type, codec.order)
    if codec.data_type in FLOAT_TYPES:
        return raw_codec.encode(math.nan)
    if codec.data_type in _SIGNED:
        return raw_codec.encode(-(1 << (_SIGNED[codec.data_type] - 1)))
    return raw_codec.encode((1 << _UNSIGNED[codec.data_type]) - 1)


def encode(slot: Slot, value: float | None) -> list[int] | list[bool] | None:
    """Registers (or bits) serving `value`; None leaves the point as it is."""
    codec = slot.codec
    if slot.table in _BIT_TABLES:
        return None if value is None or math.isnan(value) else [value >= 0.5]
    if value is None or math.isnan(value):
        return no_value_registers(codec)
    if codec.data_type is DataType.BOOL:
        return [1 if value >= 0.5 else 0]
    try:
        return codec.encode(value)
    except CodecError:
        return no_value_registers(codec)


def _bit_word(bits: Mapping[int, bool], order: str) -> int:
    word = sum(1 << bit for bit, on in bits.items() if on)
    if order in ("BADC", "DCBA"):
        word = ((word & 0xFF) << 8) | (word >> 8)
    return word


@dataclass(frozen=True, slots=True)
class SerialServerLine:
    """Where the simulator serves a Modbus RTU line: its own end of the wire (``path``),
    with the framing the site file gives the line."""

    path: str
    baudrate: int
    parity: str
    stopbits: int
    bytesize: int

    @classmethod
    def serving(cls, path: str, device: ModbusRtuDeviceConfig) -> SerialServerLine:
        return cls(path, device.baudrate, device.parity, device.stopbits, device.bytesize)


class ModbusEndpoint:
    """A pymodbus server for the site devices behind one TCP port on 127.0.0.1 (``place``
    an int) or on one serial line (``place`` a SerialServerLine)."""

    def __init__(self, place: int | SerialServerLine,
                 devices: Mapping[str, ModbusTcpDeviceConfig | ModbusRtuDeviceConfig],
                 bindings: Mapping[str, Binding], on_write: WriteSink) -> None:
        self.place = place
        self.devices = dict(devices)
        self.unit_of = {name: d.unit_id for name, d in self.devices.items()}
        self.silent: set[int] = set()
        self._on_write = on_write
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self.slots: list[Slot] = []
        for name, device in self.devices.items():
            for pname, point in device.points.items():
                codec = Codec(point.data_type, point.order, point.scale, point.offset, point.bit)
                self.slots.append(Slot(bindings[f"{name}.{pname}"], device.unit_id, point.table,
                                       device.protocol_address(point), codec))
        self._outputs: dict[tuple[int, Table], list[Slot]] = defaultdict(list)
        for slot in self.slots:
            if slot.binding.actuator is not None:
                self._outputs[(slot.unit_id, slot.table)].append(slot)
        self._served: dict[Slot, list[int] | list[bool]] = {}

    @property
    def running(self) -> bool:
        return self._server is not None

    def describe(self) -> str:
        units = ", ".join(f"unit {d.unit_id} {name} ({len(d.points)} points)"
                          for name, d in self.devices.items())
        return f"{self.where}: {units}"

    @property
    def where(self) -> str:
        if isinstance(self.place, SerialServerLine):
            return f"Modbus RTU {self.place.path}"
        return f"Modbus TCP 127.0.0.1:{self.place}"

    def _sim_device(self, unit_id: int) -> SimDevice:
        sizes = dict.fromkeys(Table, 1)
        for slot in self.slots:
            if slot.unit_id == unit_id:
                sizes[slot.table] = max(sizes[slot.table], slot.address + slot.count)
        bits = [[SimData(0, values=[False] * sizes[t], datatype=SimType.BITS)]
                for t in _BIT_TABLES]
        regs = [[SimData(0, values=[0] * sizes[t], datatype=SimType.REGISTERS)]
                for t in (Table.HOLDING, Table.INPUT)]
        return SimDevice(id=unit_id, simdata=(bits[0], bits[1], regs[0], regs[1]),
                         action=functools.partial(self._action, unit_id))

    async def start(self, outputs: Mapping[str, float | bool | int | None]) -> None:
        """Listen; output points start at `outputs` (engineering values by ref)."""
        units = [self._sim_device(u) for u in sorted(set(self.unit_of.values()))]
        server: ModbusTcpServer | ModbusSerialServer
        # pymodbus declares that trace_pdu hands a PDU back; given None it drops the request
        trace = cast("Callable[[bool, ModbusPDU], ModbusPDU]", self._trace_pdu)
        if isinstance(self.place, SerialServerLine):
            line = self.place
            server = ModbusSerialServer(units, port=line.path, baudrate=line.baudrate,
                                        parity=line.parity, stopbits=line.stopbits,
                                        bytesize=line.bytesize, trace_pdu=trace)
        else:
            server = ModbusTcpServer(units, address=("127.0.0.1", self.place), trace_pdu=trace)
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus reports a port in use this way
            raise OSError(f"cannot serve {self.where}: {exc}") from exc
        self._server = server
        self._served.clear()
        for slot in self.slots:
            value = outputs.get(slot.binding.ref)
            if slot.binding.actuator is not None and value is not None:
                await self._set(slot, encode(slot, float(value)))

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()

    def set_silent(self, device: str, silent: bool) -> None:
        (self.silent.add if silent else self.silent.discard)(self.unit_of[device])

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU | None:
        """A silent unit gets nothing: returning None drops the request unexecuted."""
        if not sending and pdu.dev_id in self.silent:
            return None
        return pdu

    async def update(self, values: Mapping[str, float | None]) -> None:
        """Serve the plant's values (engineering units by ref); unchanged points are skipped."""
        if self._server is None:
            return
        words: dict[tuple[int, Table, int], tuple[Slot, dict[int, bool]]] = {}
        for slot in self.slots:
            ref = slot.binding.ref
            if ref not in values:
                continue
            bit = slot.codec.bit
            if slot.codec.data_type is DataType.BIT and bit is not None:
                key = (slot.unit_id, slot.table, slot.address)
                value = values[ref]
                if value is not None and not math.isnan(value):
                    words.setdefault(key, (slot, {}))[1][bit] = value >= 0.5
                continue
            await self._set(slot, encode(slot, values[ref]))
        for slot, bits in words.values():
            await self._set(slot, [_bit_word(bits, slot.codec.order)])

    async def _set(self, slot: Slot, data: list[int] | list[bool] | None) -> None:
        if data is None or self._server is None or self._served.get(slot) == data:
            return
        self._served[slot] = data
        await self._server.async_setValues(slot.unit_id, READ_CODE[slot.table], slot.address,
                                           data)

    async def _action(self, unit_id: int, function_code: int, start_address: int,
                      address: int, _count: int, registers: list[int],
                      values: list[int] | list[bool] | None) -> None:
        """pymodbus calls this before it applies a request; writes from the wire have write
        function codes (the simulator's own updates use read codes)."""
        table = _WRITE_TABLE.get(function_code)
        if table is None or not values:
            return
        device = next(n for n, u in self.unit_of.items() if u == unit_id)
        hit = False
        for slot in self._outputs.get((unit_id, table), ()):
            first = slot.address
            if first + slot.count <= address or address + len(values) <= first:
                continue
            hit = True
            if table is Table.COIL:
                raw = [int(bool(values[first - address]))]
                value: float | bool | int = bool(raw[0])
            else:
                raw = [values[a - address] if address <= a < address + len(values)
                       else registers[a - start_address] for a in range(first, first + slot.count)]
                value = slot.codec.decode(raw)
            self._served.pop(slot, None)
            self._on_write(WireWrite(device, unit_id, table, first, tuple(int(x) for x in raw),
                                     slot.binding, value))
        if not hit:
            self._on_write(WireWrite(device, unit_id, table, address,
                                     tuple(int(x) for x in values), None, None))
