"""The pure parts of the OPC UA driver: DataValue to Reading, value to Variant, reconnect
backoff and settings validation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from asyncua import ua
from hypothesis import given
from hypothesis import strategies as st

from heatd.drivers.backoff import Backoff
from heatd.drivers.codec import DataType
from heatd.drivers.opcua import OpcUaPoint, OpcUaSettings
from heatd.drivers.opcua.convert import VARIANT_TYPES, status_name, to_reading, to_variant
from heatd.drivers.reading import Quality

T = OpcUaPoint("t", "ns=2;s=Loop.SupplyTemp")
SCALED = OpcUaPoint("p", "ns=2;i=1001", scale=0.1, offset=-40.0)
SOURCE = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
SERVER = datetime(2024, 5, 6, 7, 8, 10, tzinfo=UTC)
RECEIVED = 1_800_000_000.0


def dv(value: object, vtype: ua.VariantType, status: int = 0, **stamps: object) -> ua.DataValue:
    return ua.DataValue(ua.Variant(value, vtype), StatusCode=ua.StatusCode(status), **stamps)


def test_timestamp_prefers_source_then_server_then_receive_time() -> None:
    both = dv(1.0, ua.VariantType.Double, SourceTimestamp=SOURCE, ServerTimestamp=SERVER)
    server_only = dv(1.0, ua.VariantType.Double, ServerTimestamp=SERVER)
    neither = dv(1.0, ua.VariantType.Double)
    assert to_reading(T, both, RECEIVED).source_ts == SOURCE.timestamp()
    assert to_reading(T, server_only, RECEIVED).source_ts == SERVER.timestamp()
    assert to_reading(T, neither, RECEIVED).source_ts == RECEIVED


def test_naive_and_null_timestamps() -> None:
    naive = dv(1.0, ua.VariantType.Double, SourceTimestamp=datetime(2024, 5, 6, 7, 8, 9))
    null = dv(1.0, ua.VariantType.Double, SourceTimestamp=datetime(1601, 1, 1, tzinfo=UTC))
    assert to_reading(T, naive, RECEIVED).source_ts == SOURCE.timestamp()
    assert to_reading(T, null, RECEIVED).source_ts == RECEIVED


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (ua.StatusCodes.BadSensorFailure, "BadSensorFailure"),
        (ua.StatusCodes.BadCommunicationError | 0x0400, "BadCommunicationError"),
        (ua.StatusCodes.UncertainSensorNotAccurate, "UncertainSensorNotAccurate"),
        (ua.StatusCodes.Uncertain, "Uncertain"),
    ],
)
def test_non_good_status_is_bad_with_its_name_and_no_value(status: int, reason: str) -> None:
    reading = to_reading(T, dv(21.5, ua.VariantType.Double, status), RECEIVED)
    assert (reading.quality, reading.value, reading.reason) == (Quality.BAD, None, reason)


def test_good_with_info_bits_or_substatus_is_good() -> None:
    overflow = dv(3.0, ua.VariantType.Double, ua.StatusCodes.Good | 0x0480)
    clamped = dv(4.0, ua.VariantType.Double, ua.StatusCodes.GoodClamped)
    assert to_reading(T, overflow, RECEIVED).value == 3.0
    assert to_reading(T, clamped, RECEIVED).quality is Quality.GOOD
    assert status_name(ua.StatusCode(ua.StatusCodes.BadTimeout | 0x0400)) == "BadTimeout"


def test_scaling_and_types() -> None:
    assert to_reading(SCALED, dv(650, ua.VariantType.Int16), RECEIVED).value == pytest.approx(25.0)
    unscaled = to_reading(T, dv(650, ua.VariantType.Int16), RECEIVED).value
    assert (unscaled, type(unscaled)) == (650, int)
    assert to_reading(SCALED, dv(True, ua.VariantType.Boolean), RECEIVED).value is True


@pytest.mark.parametrize(
    ("value", "vtype", "reason"),
    [
        (None, ua.VariantType.Null, "no value"),
        ("on", ua.VariantType.String, "unsupported str value"),
        ([1.0, 2.0], ua.VariantType.Double, "unsupported list value"),
    ],
)
def test_good_status_without_a_number_is_bad(
    value: object, vtype: ua.VariantType, reason: str
) -> None:
    reading = to_reading(T, dv(value, vtype), RECEIVED)
    assert (reading.quality, reading.value, reading.reason) == (Quality.BAD, None, reason)


def test_variant_has_the_requested_type() -> None:
    double = to_variant(T, ua.VariantType.Double, 42)
    assert (double.Value, type(double.Value), double.VariantType) == (
        42.0,
        float,
        ua.VariantType.Double,
    )
    int16 = to_variant(T, ua.VariantType.Int16, 55.4)
    assert (int16.Value, int16.VariantType) == (55, ua.VariantType.Int16)
    assert to_variant(T, ua.VariantType.Boolean, 1).Value is True
    assert to_variant(SCALED, ua.VariantType.UInt16, 25.0).Value == 650
    big = to_variant(T, ua.VariantType.UInt64, 2**64 - 1)
    assert big.Value == 2**64 - 1  # integers pass unscaled, without a float round trip


@pytest.mark.parametrize(
    ("vtype", "value"),
    [
        (ua.VariantType.Int16, 32768),
        (ua.VariantType.UInt32, -1),
        (ua.VariantType.Int32, float("nan")),
        (ua.VariantType.Float, 1e39),
        (ua.VariantType.Boolean, 0.5),
        (ua.VariantType.String, 1.0),
    ],
)
def test_values_that_do_not_fit_are_refused(vtype: ua.VariantType, value: float) -> None:
    with pytest.raises(ValueError):
        to_variant(T, vtype, value)


@given(st.integers(-(2**15), 2**15 - 1))
def test_scaled_write_inverts_scaled_read(raw: int) -> None:
    value = to_reading(SCALED, dv(raw, ua.VariantType.Int16), RECEIVED).value
    assert value is not None
    assert to_variant(SCALED, ua.VariantType.Int16, value).Value == raw


def test_every_writable_data_type_has_a_variant_type() -> None:
    assert set(VARIANT_TYPES) == set(DataType) - {DataType.BIT}


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    low = Backoff(0.5, 4.0, rng=lambda: 0.0)
    assert [low.next() for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    high = Backoff(0.5, 4.0, rng=lambda: 0.999)
    assert max(high.next() for _ in range(100)) < 4.0
    low.reset()
    assert low.next() == 0.25


@pytest.mark.parametrize(
    "kwargs",
    [
        {"endpoint": "http://plc:4840"},
        {"security_policy": "Basic256Sha256"},
        {"security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt"},
        {"security_mode": "Sign"},
        {"password": "secret"},
        {"timeout": 0},
        {"reconnect_min": 5.0, "reconnect_max": 1.0},
    ],
)
def test_settings_refuse_impossible_combinations(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"endpoint": "opc.tcp://plc:4840"} | kwargs
    with pytest.raises(ValueError):
        OpcUaSettings(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"node_id": "ns=2;x=oops"},
        {"data_type": DataType.BIT},
        {"scale": 0.0},
    ],
)
def test_points_refuse_bad_definitions(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"name": "p", "node_id": "ns=2;i=5"} | kwargs
    with pytest.raises(ValueError):
        OpcUaPoint(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("declared", "value", "vtype", "reason"), [
    (DataType.FLOAT32, True, ua.VariantType.Boolean,
     "the server's Boolean where the point is float32"),
    (DataType.UINT16, -100, ua.VariantType.SByte, "-100 does not fit uint16"),
    (DataType.INT16, 70000, ua.VariantType.Int32, "70000 does not fit int16"),
    (DataType.INT32, 1.5, ua.VariantType.Double, "the server's Double where the point is int32"),
    (DataType.BOOL, 1, ua.VariantType.Byte, "the server's Byte where the point is bool"),
])
def test_a_value_its_declared_type_cannot_hold_is_bad(
        declared: DataType, value: object, vtype: ua.VariantType, reason: str) -> None:
    point = OpcUaPoint("p", "ns=2;i=7", data_type=declared)
    reading = to_reading(point, dv(value, vtype), RECEIVED)
    assert (reading.quality, reading.value, reading.reason) == (
        Quality.BAD, None, f"type mismatch: {reason}")


@pytest.mark.parametrize(("declared", "value", "vtype"), [
    (DataType.FLOAT32, 40, ua.VariantType.Int16),  # any number on a float point
    (DataType.FLOAT64, 21.5, ua.VariantType.Float),
    (DataType.UINT16, 65535, ua.VariantType.Int32),  # an integer within the span
    (DataType.BOOL, False, ua.VariantType.Boolean),
])
def test_a_value_its_declared_type_can_hold_is_good(
        declared: DataType, value: object, vtype: ua.VariantType) -> None:
    reading = to_reading(OpcUaPoint("p", "ns=2;i=7", data_type=declared), dv(value, vtype),
                         RECEIVED)
    assert (reading.quality, reading.value) == (Quality.GOOD, value)
