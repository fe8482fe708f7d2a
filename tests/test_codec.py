"""Codec round trips for every type and byte/word order, and known wire vectors."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heatd.drivers.codec import FLOAT_TYPES, RAW_LIMITS, ByteOrder, Codec, CodecError, DataType

INT_RANGES = {t: limits for t, limits in RAW_LIMITS.items() if t not in FLOAT_TYPES}
ORDERS = list(ByteOrder)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("data_type", list(INT_RANGES))
@given(data=st.data())
def test_integers_round_trip_exactly(data_type: DataType, order: ByteOrder, data) -> None:
    low, high = INT_RANGES[data_type]
    value = data.draw(st.integers(low, high))
    codec = Codec(data_type, order)
    words = codec.encode(value)
    assert len(words) == codec.count
    assert all(0 <= w <= 0xFFFF for w in words)
    assert codec.decode(words) == value


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("data_type", list(INT_RANGES))
def test_integers_out_of_range_refuse_to_encode(data_type: DataType, order: ByteOrder) -> None:
    low, high = INT_RANGES[data_type]
    codec = Codec(data_type, order)
    for bad in (low - 1, high + 1, math.nan, math.inf, 10**400):
        with pytest.raises(CodecError):
            codec.encode(bad)


@pytest.mark.parametrize("order", ORDERS)
@given(value=st.floats(width=32))
def test_float32_round_trip_including_nan_and_inf(order: ByteOrder, value: float) -> None:
    codec = Codec(DataType.FLOAT32, order)
    back = codec.decode(codec.encode(value))
    if math.isnan(value):
        assert math.isnan(back)
    else:
        assert back == value
        assert math.copysign(1, back) == math.copysign(1, value)


@pytest.mark.parametrize("order", ORDERS)
@given(value=st.floats())
def test_float64_round_trip_including_nan_and_inf(order: ByteOrder, value: float) -> None:
    codec = Codec(DataType.FLOAT64, order)
    back = codec.decode(codec.encode(value))
    assert (math.isnan(back) and math.isnan(value)) or back == value


def test_float32_refuses_values_beyond_its_range() -> None:
    with pytest.raises(CodecError):
        Codec(DataType.FLOAT32).encode(1e300)


@pytest.mark.parametrize("order", ORDERS)
@given(
    raw=st.integers(-(2**15), 2**15 - 1),
    scale=st.sampled_from([0.1, 0.01, 2.0, -0.5]),
    offset=st.sampled_from([0.0, -273.15, 40.0]),
)
def test_scale_and_offset_round_trip(order: ByteOrder, raw: int, scale: float, offset: float):
    codec = Codec(DataType.INT16, order, scale=scale, offset=offset)
    value = raw * scale + offset
    words = codec.encode(value)
    assert codec.decode(words) == pytest.approx(value, abs=abs(scale) * 1e-6)
    assert Codec(DataType.INT16, order).decode(words) == raw


def test_scaled_value_rounds_to_nearest_raw_step() -> None:
    codec = Codec(DataType.UINT16, scale=0.1)
    assert codec.encode(21.34) == [213]
    assert codec.decode([213]) == pytest.approx(21.3)
    with pytest.raises(CodecError):
        codec.encode(-0.1)


FLOAT_ONE = {
    ByteOrder.ABCD: [0x3F80, 0x0000],
    ByteOrder.CDAB: [0x0000, 0x3F80],
    ByteOrder.BADC: [0x803F, 0x0000],
    ByteOrder.DCBA: [0x0000, 0x803F],
}


@pytest.mark.parametrize(("order", "words"), FLOAT_ONE.items())
def test_float32_one_known_vectors(order: ByteOrder, words: list[int]) -> None:
    codec = Codec(DataType.FLOAT32, order)
    assert codec.encode(1.0) == words
    assert codec.decode(words) == 1.0


INT32_VECTORS = {
    ByteOrder.ABCD: [0x1234, 0x5678],
    ByteOrder.CDAB: [0x5678, 0x1234],
    ByteOrder.BADC: [0x3412, 0x7856],
    ByteOrder.DCBA: [0x7856, 0x3412],
}


@pytest.mark.parametrize(("order", "words"), INT32_VECTORS.items())
def test_uint32_known_vectors(order: ByteOrder, words: list[int]) -> None:
    codec = Codec(DataType.UINT32, order)
    assert codec.encode(0x12345678) == words
    assert codec.decode(words) == 0x12345678


def test_int64_and_float64_known_vectors() -> None:
    assert Codec(DataType.INT64).encode(-2) == [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE]
    assert Codec(DataType.INT64, ByteOrder.CDAB).encode(1) == [1, 0, 0, 0]
    big = struct.unpack(">4H", struct.pack(">d", -2.5))
    assert Codec(DataType.FLOAT64).encode(-2.5) == list(big)
    assert Codec(DataType.FLOAT64, ByteOrder.DCBA).decode(
        [((w & 0xFF) << 8) | (w >> 8) for w in reversed(big)]
    ) == -2.5


def test_sixteen_bit_orders() -> None:
    assert Codec(DataType.INT16).encode(-2) == [0xFFFE]
    assert Codec(DataType.INT16, ByteOrder.CDAB).encode(-2) == [0xFFFE]
    assert Codec(DataType.INT16, ByteOrder.BADC).encode(-2) == [0xFEFF]
    assert Codec(DataType.UINT16, ByteOrder.DCBA).decode([0x3412]) == 0x1234


@pytest.mark.parametrize("order", ORDERS)
def test_bool_and_bit(order: ByteOrder) -> None:
    assert Codec(DataType.BOOL, order).decode([0]) is False
    assert Codec(DataType.BOOL, order).decode([0x100]) is True
    assert Codec(DataType.BOOL, order).encode(True) == [1]
    swapped = order in (ByteOrder.BADC, ByteOrder.DCBA)
    word = 0x0001 if not swapped else 0x0100
    assert Codec(DataType.BIT, order, bit=0).decode([word]) is True
    assert Codec(DataType.BIT, order, bit=8).decode([word]) is False
    with pytest.raises(CodecError):
        Codec(DataType.BIT, order, bit=3).encode(True)


def test_decode_refuses_wrong_register_count() -> None:
    with pytest.raises(CodecError):
        Codec(DataType.FLOAT32).decode([0x3F80])
    with pytest.raises(CodecError):
        Codec(DataType.UINT16).decode([1, 2])


def test_invalid_codecs_are_refused() -> None:
    with pytest.raises(CodecError):
        Codec(DataType.BIT)
    with pytest.raises(CodecError):
        Codec(DataType.BIT, bit=16)
    with pytest.raises(CodecError):
        Codec(DataType.INT16, scale=0)
