"""DataValue to Reading and engineering value to Variant: the only place that knows how
OPC UA status codes, timestamps and variant types map onto heatd's readings.

A status that is not Good never yields a number, whatever the Variant carries: a server
may keep the last value in a Bad DataValue, and a dead sensor must not look alive.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from asyncua import ua

from heatd.drivers.codec import DataType
from heatd.drivers.opcua.spec import OpcUaPoint
from heatd.drivers.reading import Reading, Value

VARIANT_TYPES: dict[DataType, ua.VariantType] = {
    DataType.INT16: ua.VariantType.Int16,
    DataType.UINT16: ua.VariantType.UInt16,
    DataType.INT32: ua.VariantType.Int32,
    DataType.UINT32: ua.VariantType.UInt32,
    DataType.INT64: ua.VariantType.Int64,
    DataType.UINT64: ua.VariantType.UInt64,
    DataType.FLOAT32: ua.VariantType.Float,
    DataType.FLOAT64: ua.VariantType.Double,
    DataType.BOOL: ua.VariantType.Boolean,
}

_INTEGER_RANGES: dict[ua.VariantType, tuple[int, int]] = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38
_STATUS_MASK = 0xFFFF0000
"""Severity and sub-code; the low 16 bits are info bits (overflow, limits) with no name."""


def status_name(status: ua.StatusCode) -> str:
    """The symbolic name, e.g. ``BadSensorFailure``, ignoring the info bits."""
    return ua.StatusCode(ua.UInt32(status.value & _STATUS_MASK)).name


def _epoch(stamp: datetime | None) -> float | None:
    if stamp is None:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    seconds = stamp.timestamp()
    return seconds if seconds > 0 else None  # OPC UA's "no time" decodes to 1601


def source_time(dv: ua.DataValue, received_at: float) -> float:
    """SourceTimestamp, else ServerTimestamp, else the time the answer arrived."""
    for stamp in (dv.SourceTimestamp, dv.ServerTimestamp):
        seconds = _epoch(stamp)
        if seconds is not None:
            return seconds
    return received_at


def to_reading(point: OpcUaPoint, dv: ua.DataValue, received_at: float) -> Reading:
    """One DataValue as a Reading: Good gives the scaled value, anything else is bad, as
    is a value that the point's declared ``data_type`` cannot hold (a wrong node id, or a
    PLC program that changed the variable: a Boolean read as a float32 temperature would
    reach control as 1.0 degC)."""
    ts = source_time(dv, received_at)
    status = dv.StatusCode if dv.StatusCode is not None else ua.StatusCode()
    if not status.is_good():
        return Reading.bad(status_name(status), ts)
    variant = dv.Value
    raw = variant.Value if variant is not None else None
    if variant is None or raw is None:
        return Reading.bad("no value", ts)
    if not isinstance(raw, bool | int | float):
        return Reading.bad(f"unsupported {type(raw).__name__} value", ts)
    if point.data_type is not None:
        mismatch = _mismatch(point.data_type, variant.VariantType, raw)
        if mismatch is not None:
            return Reading.bad(f"type mismatch: {mismatch}", ts)
    if isinstance(raw, bool):
        return Reading.good(raw, ts)
    return Reading.good(_scaled(point, raw), ts)


def _mismatch(declared: DataType, variant: ua.VariantType, raw: bool | int | float
              ) -> str | None:
    """Why a value read cannot be the declared type's, or None when it can: a bool point
    takes a Boolean, a float point any number, an integer point an integer within its
    span (an SByte -100 on a uint16 point is no uint16)."""
    wanted = VARIANT_TYPES[declared]
    if (wanted is ua.VariantType.Boolean) != isinstance(raw, bool):
        return f"the server's {variant.name} where the point is {declared.value}"
    if wanted in (ua.VariantType.Float, ua.VariantType.Double, ua.VariantType.Boolean):
        return None
    if isinstance(raw, float):
        return f"the server's {variant.name} where the point is {declared.value}"
    low, high = _INTEGER_RANGES[wanted]
    if not low <= raw <= high:
        return f"{raw} does not fit {declared.value}"
    return None


def _scaled(point: OpcUaPoint, raw: int | float) -> Value:
    if point.scale == 1.0 and point.offset == 0.0:
        return raw
    return raw * point.scale + point.offset


def to_variant(point: OpcUaPoint, variant_type: ua.VariantType, value: Value) -> ua.Variant:
    """An engineering value as the exact variant type the variable has.

    Servers compare variant types strictly (a Python int sent to a Double is
    BadTypeMismatch), so the value is converted here. Raises ValueError when it does not fit.
    """
    if variant_type is ua.VariantType.Boolean:
        if not isinstance(value, bool) and value not in (0, 1):
            raise ValueError(f"{value!r} is not a boolean")
        return ua.Variant(bool(value), variant_type)
    if point.scale == 1.0 and point.offset == 0.0:
        raw: float | int = value
    else:
        raw = (float(value) - point.offset) / point.scale
    if variant_type in (ua.VariantType.Float, ua.VariantType.Double):
        raw = float(raw)
        if variant_type is ua.VariantType.Float and math.isfinite(raw) and abs(raw) > _FLOAT32_MAX:
            raise ValueError(f"{value!r} does not fit a Float")
        return ua.Variant(raw, variant_type)
    if variant_type not in _INTEGER_RANGES:
        raise ValueError(f"cannot write a number into a {variant_type.name} variable")
    if not math.isfinite(raw):
        raise ValueError(f"{value!r} is not a finite number")
    integer = round(raw)
    low, high = _INTEGER_RANGES[variant_type]
    if not low <= integer <= high:
        raise ValueError(f"{value!r} does not fit {variant_type.name}")
    return ua.Variant(integer, variant_type)
