"""From the point image to a meter's inputs, once per cycle: counters as new readings
only (stamped with the wall time heatd heard them), powers and levels in kW and degC (the
worst of redundant points: the highest)."""

from __future__ import annotations

from collections.abc import Mapping

from heatd.billing.points import Channel
from heatd.drivers.reading import Quality, Reading
from heatd.points import PointSnapshot

Inputs = tuple[dict[str, tuple[float, float] | None], dict[str, bool],
               dict[str, float | None]]


def good(reading: Reading) -> bool:
    return (reading.quality is Quality.GOOD and reading.value is not None
            and not isinstance(reading.value, bool))


class ChannelReader:
    """Remembers when each counter was last heard, so a counter not re-read since the last
    cycle is no reading at all (rather than a zero delta)."""

    def __init__(self) -> None:
        self._heard: dict[str, float] = {}

    def read(self, channels: Mapping[str, Channel], counters: frozenset[str], wall: float,
             points: PointSnapshot) -> Inputs:
        """(new counter readings, counters good, other values) of ``channels``."""
        fresh: dict[str, tuple[float, float] | None] = {}
        is_good: dict[str, bool] = {}
        values: dict[str, float | None] = {}
        for name, channel in channels.items():
            readings = [points[ref] for ref in channel.refs]
            if name in counters:
                fresh[name] = self._new(channel, readings[0], wall, points.taken_at)
                is_good[name] = good(readings[0])
            else:
                found = [float(r.value) * channel.factor  # type: ignore[arg-type]
                         for r in readings if good(r)]
                values[name] = max(found) if found else None
        return fresh, is_good, values

    def _new(self, channel: Channel, reading: Reading, wall: float, mono: float
             ) -> tuple[float, float] | None:
        ref = channel.refs[0]
        if not good(reading) or reading.heard_at is None:
            return None
        if self._heard.get(ref) == reading.heard_at:
            return None  # not re-read since the last cycle
        self._heard[ref] = reading.heard_at
        value = float(reading.value) * channel.factor  # type: ignore[arg-type]
        return wall - (mono - reading.heard_at), value
