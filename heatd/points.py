"""The point image: the latest reading of every point, and frozen snapshots of it.

Drivers write into the image as replies arrive; the control cycle takes a snapshot at the
start of each cycle so every decision sees one consistent picture. Staleness is measured
from when heatd last heard of a point (its own clock), not from the device's timestamp,
because device clocks drift and a frozen device may keep sending an old timestamp.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from heatd.drivers.reading import Quality, Reading


@dataclass(frozen=True, slots=True)
class PointLimits:
    """What the image needs to judge a reading: when it is stale, when it is implausible."""

    max_age: float
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True, slots=True)
class _Entry:
    reading: Reading
    heard_at: float


_NEVER = Reading(value=None, quality=Quality.BAD, source_ts=0.0, reason="no reading yet")


class PointImage:
    """Latest reading per point reference (``device.point``)."""

    def __init__(self, limits: Mapping[str, PointLimits]) -> None:
        self._limits = dict(limits)
        self._latest: dict[str, _Entry] = {}

    def update(self, ref: str, reading: Reading, heard_at: float) -> None:
        """Store a reading heard at ``heard_at`` (epoch seconds). Unknown refs are refused
        loudly: they mean a driver and the configuration disagree."""
        if ref not in self._limits:
            raise KeyError(f"{ref!r} is not a configured point")
        self._latest[ref] = _Entry(reading, heard_at)

    def carry(self, before: PointImage, refs: Iterable[str]) -> None:
        """Start from ``before``'s readings of ``refs`` (the points of devices a reload left
        as they were), as heard when they were heard: they age as they would have, and
        go stale on their own max age unless the new drivers read them again in time."""
        for ref in refs:
            entry = before._latest.get(ref)
            if entry is not None and ref in self._limits:
                self._latest[ref] = entry

    def confirm(self, refs: list[str], heard_at: float) -> None:
        """Mark points as still current without a new value (an OPC UA subscription that
        is alive reports only changes, so silence there means 'unchanged')."""
        for ref in refs:
            entry = self._latest.get(ref)
            if entry is not None and entry.reading.quality is Quality.GOOD:
                self._latest[ref] = _Entry(entry.reading, heard_at)

    def judged(self, ref: str, now: float) -> Reading:
        """The reading as it stands at ``now``: stale once too old, bad when implausible."""
        entry = self._latest.get(ref)
        if entry is None:
            return _NEVER
        reading, limits = entry.reading, self._limits[ref]
        if reading.quality is not Quality.GOOD:
            return reading
        if now - entry.heard_at > limits.max_age:
            return replace(reading, quality=Quality.STALE,
                           reason=f"not heard for more than {limits.max_age:g} s")
        value = reading.value
        if isinstance(value, float | int) and not isinstance(value, bool):
            if isinstance(value, float) and math.isnan(value):  # a device saying "no value"
                return replace(reading, value=None, quality=Quality.BAD, reason="NaN")
            if limits.low is not None and limits.high is not None and not (
                limits.low <= value <= limits.high
            ):
                return replace(reading, value=None, quality=Quality.BAD,
                               reason=f"out of range: {value:g} not in "
                                      f"[{limits.low:g}, {limits.high:g}]")
        return reading

    def snapshot(self, now: float) -> PointSnapshot:
        return PointSnapshot(now, MappingProxyType({ref: self.judged(ref, now)
                                                    for ref in self._limits}))


@dataclass(frozen=True, slots=True)
class PointSnapshot:
    """An immutable view of every point at one instant (the control core's
    ``heatd.control.signals.Snapshot`` is made from it, by role)."""

    taken_at: float
    readings: Mapping[str, Reading]

    def __getitem__(self, ref: str) -> Reading:
        return self.readings[ref]
