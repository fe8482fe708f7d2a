"""Register codecs: one object per point turns Modbus registers into engineering values
and back, so reading and writing can never disagree on the format.

Byte/word order names follow the usual Modbus convention for a 32-bit value whose
big-endian bytes are A B C D: ``ABCD`` big endian, ``CDAB`` word-swapped, ``BADC``
byte-swapped within each word, ``DCBA`` little endian. The same rule extends to 16 and
64-bit values.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from heatd.drivers.reading import Value


class DataType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    BOOL = "bool"
    """A coil or discrete input, or a holding/input register read as zero/non-zero."""
    BIT = "bit"
    """One bit of a 16-bit bitfield register (status words)."""


class ByteOrder(StrEnum):
    ABCD = "ABCD"
    BADC = "BADC"
    CDAB = "CDAB"
    DCBA = "DCBA"


_STRUCT = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}

FLOAT_TYPES = frozenset({DataType.FLOAT32, DataType.FLOAT64})

RAW_LIMITS: dict[DataType, tuple[float, float]] = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
    DataType.FLOAT32: (-3.4028234663852886e38, 3.4028234663852886e38),
    DataType.FLOAT64: (-math.inf, math.inf),
}
"""The raw values each numeric type carries on the wire, before scale and offset."""


_ONE_WORD = struct.Struct(">H")
"""The register a boolean or bit point occupies; numeric types compile their own."""


class CodecError(ValueError):
    """A value cannot be encoded, or registers cannot be decoded, for this point."""


def register_count(data_type: DataType) -> int:
    """Number of 16-bit registers a value of this type occupies."""
    if data_type in (DataType.BOOL, DataType.BIT):
        return 1
    return struct.calcsize(_STRUCT[data_type]) // 2


def _swap_bytes_in_words(data: bytes) -> bytes:
    return b"".join(data[i + 1 : i + 2] + data[i : i + 1] for i in range(0, len(data), 2))


def _reverse_words(data: bytes) -> bytes:
    return b"".join(data[i : i + 2] for i in range(len(data) - 2, -2, -2))


def _to_wire(big_endian: bytes, order: ByteOrder) -> bytes:
    """Rearrange big-endian bytes into the device's order (the transform is an involution)."""
    if order in (ByteOrder.CDAB, ByteOrder.DCBA):
        big_endian = _reverse_words(big_endian)
    if order in (ByteOrder.BADC, ByteOrder.DCBA):
        big_endian = _swap_bytes_in_words(big_endian)
    return big_endian


@dataclass(frozen=True, slots=True)
class Codec:
    """Decode/encode one point. ``value = raw * scale + offset``.

    The struct formats are compiled once per point: decoding runs for every point on every
    poll, so it is the one hot path of acquisition.
    """

    data_type: DataType
    order: ByteOrder = ByteOrder.ABCD
    scale: float = 1.0
    offset: float = 0.0
    bit: int | None = None
    _words: struct.Struct = field(init=False, repr=False, compare=False, default=_ONE_WORD)
    _value: struct.Struct = field(init=False, repr=False, compare=False, default=_ONE_WORD)
    _shift: int = field(init=False, repr=False, compare=False, default=0)
    """The bit's position in its word (BIT only)."""

    def __post_init__(self) -> None:
        if self.data_type is DataType.BIT:
            if self.bit is None or not 0 <= self.bit <= 15:
                raise CodecError("a bit point needs bit 0..15")
            object.__setattr__(self, "_shift", self.bit)
        if self.scale == 0 or not math.isfinite(self.scale):
            raise CodecError("scale must be finite and non-zero")
        if self.data_type in _STRUCT:
            count = register_count(self.data_type)
            # registers -> bytes: byte-swapped orders pack each word little endian
            swapped = self.order in (ByteOrder.BADC, ByteOrder.DCBA)
            words = struct.Struct(("<" if swapped else ">") + "H" * count)
            object.__setattr__(self, "_words", words)
            object.__setattr__(self, "_value", struct.Struct(">" + _STRUCT[self.data_type]))

    @property
    def count(self) -> int:
        return register_count(self.data_type)

    @property
    def is_boolean(self) -> bool:
        return self.data_type in (DataType.BOOL, DataType.BIT)

    def decode(self, registers: Sequence[int]) -> Value:
        """Registers (as read) to the engineering value. Raises CodecError on a wrong length."""
        if len(registers) != self.count:
            raise CodecError(f"expected {self.count} registers, got {len(registers)}")
        if self.data_type is DataType.BOOL:
            return bool(registers[0])
        if self.data_type is DataType.BIT:
            word = registers[0]
            if self.order in (ByteOrder.BADC, ByteOrder.DCBA):
                word = ((word & 0xFF) << 8) | (word >> 8)
            return bool((word >> self._shift) & 1)
        if self.order in (ByteOrder.CDAB, ByteOrder.DCBA):
            registers = registers[::-1]
        try:
            wire = self._words.pack(*registers)
        except struct.error as exc:
            raise CodecError(f"registers out of range: {exc}") from exc
        raw: int | float
        (raw,) = self._value.unpack(wire)
        if self.scale == 1.0 and self.offset == 0.0:
            return raw
        return raw * self.scale + self.offset

    def encode(self, value: Value) -> list[int]:
        """Engineering value to registers. Raises CodecError when it does not fit the type.

        A bit point cannot be encoded on its own (writing it needs the other 15 bits).
        """
        if self.data_type is DataType.BIT:
            raise CodecError("a single bit of a register cannot be written on its own")
        if self.data_type is DataType.BOOL:
            return [1 if value else 0]
        try:
            raw = (float(value) - self.offset) / self.scale
        except (OverflowError, TypeError, ValueError) as exc:
            raise CodecError(f"{value!r} is not a number for {self.data_type.value}") from exc
        if self.data_type in FLOAT_TYPES:
            try:
                packed = struct.pack(">" + _STRUCT[self.data_type], raw)
            except OverflowError as exc:
                raise CodecError(f"{value!r} does not fit {self.data_type.value}") from exc
        else:
            if not math.isfinite(raw):
                raise CodecError(f"{value!r} is not a finite number")
            exact = isinstance(value, int) and self.scale == 1.0 and self.offset == 0.0
            # int -> float loses precision above 2**53; 64-bit counters must round-trip
            integer = int(value) if exact else round(raw)
            try:
                packed = struct.pack(">" + _STRUCT[self.data_type], integer)
            except struct.error as exc:
                raise CodecError(f"{value!r} does not fit {self.data_type.value}") from exc
        wire = _to_wire(packed, self.order)
        return [int.from_bytes(wire[i : i + 2], "big") for i in range(0, len(wire), 2)]
