"""The point image judges readings at snapshot time: stale by heatd's own clock, bad when
implausible, and never a number where the device gave none."""

from __future__ import annotations

import math

import pytest

from heatd.drivers.reading import Quality, Reading
from heatd.points import PointImage, PointLimits


@pytest.fixture
def image() -> PointImage:
    return PointImage({"loop.supply": PointLimits(max_age=3.0, low=0.0, high=90.0),
                       "loop.flag": PointLimits(max_age=3.0)})


def test_never_read_is_bad(image: PointImage) -> None:
    reading = image.snapshot(100.0)["loop.supply"]
    assert reading.quality is Quality.BAD and reading.value is None


def test_good_then_stale_by_heard_time_not_device_clock(image: PointImage) -> None:
    # the device clock is an hour behind: staleness must not care
    image.update("loop.supply", Reading.good(35.0, ts=1000.0 - 3600), heard_at=1000.0)
    assert image.snapshot(1002.9)["loop.supply"].quality is Quality.GOOD
    stale = image.snapshot(1003.1)["loop.supply"]
    assert stale.quality is Quality.STALE and stale.value == 35.0


def test_confirm_keeps_an_unchanged_subscription_value_fresh(image: PointImage) -> None:
    image.update("loop.supply", Reading.good(35.0, ts=1000.0), heard_at=1000.0)
    image.confirm(["loop.supply"], heard_at=1005.0)
    assert image.snapshot(1007.0)["loop.supply"].quality is Quality.GOOD


def test_confirm_does_not_revive_a_bad_reading(image: PointImage) -> None:
    image.update("loop.supply", Reading.bad("timeout", ts=1000.0), heard_at=1000.0)
    image.confirm(["loop.supply"], heard_at=1001.0)
    assert image.snapshot(1001.0)["loop.supply"].reason == "timeout"


def test_out_of_range_and_nan_are_bad_without_a_value(image: PointImage) -> None:
    image.update("loop.supply", Reading.good(150.0, ts=0.0), heard_at=10.0)
    reading = image.snapshot(10.0)["loop.supply"]
    assert reading.quality is Quality.BAD and reading.value is None
    assert reading.reason == "out of range: 150 not in [0, 90]"
    image.update("loop.supply", Reading.good(math.nan, ts=0.0), heard_at=10.0)
    assert image.snapshot(10.0)["loop.supply"].reason == "NaN"


def test_booleans_are_not_range_checked(image: PointImage) -> None:
    image.update("loop.flag", Reading.good(True, ts=0.0), heard_at=1.0)
    assert image.snapshot(1.0)["loop.flag"].value is True


def test_snapshot_is_frozen(image: PointImage) -> None:
    image.update("loop.supply", Reading.good(30.0, ts=0.0), heard_at=1.0)
    snap = image.snapshot(1.0)
    image.update("loop.supply", Reading.good(31.0, ts=0.0), heard_at=1.5)
    assert snap["loop.supply"].value == 30.0
    with pytest.raises(TypeError):
        snap.readings["loop.supply"] = Reading.good(0.0, ts=0.0)  # type: ignore[index]


def test_unknown_point_is_refused(image: PointImage) -> None:
    with pytest.raises(KeyError):
        image.update("loop.nope", Reading.good(1.0, ts=0.0), heard_at=0.0)

