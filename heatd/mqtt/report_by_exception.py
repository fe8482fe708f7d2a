"""Report by exception: when a device's retained ``state`` is worth sending again.

A device's state topic always carries every point (it is retained, so a late subscriber
must see the whole device), but it is only re-sent when some point moved by more than its
deadband, changed quality, or the periodic full refresh is due. The decision is pure:
time is an argument (monotonic seconds), so it is tested without a broker or a clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from heatd.drivers.reading import Quality, Reading, Value


def body(readings: Mapping[str, Reading]) -> dict[str, Any]:
    """``{"<point>": value, ..., "quality": {"<point>": "bad:<reason>"}}``.

    Numbers stay numbers; a bad read is null plus a quality entry; a stale value is kept
    with its ``stale:...`` quality. Only points that are not good appear under quality.
    """
    out: dict[str, Any] = {}
    quality: dict[str, str] = {}
    for name, reading in readings.items():
        value, text = reading.value, reading.quality_text
        if reading.quality is Quality.BAD:
            value = None
        elif isinstance(value, float) and not math.isfinite(value):
            value, text = None, "bad:not a number"
        out[name] = value
        if text != "good":
            quality[name] = text
    out["quality"] = quality
    return out


def _moved(old: Value | None, new: Value | None, deadband: float) -> bool:
    if old is None or new is None or isinstance(old, bool) or isinstance(new, bool):
        return old != new or type(old) is not type(new)
    return abs(new - old) > deadband


class DeviceReporter:
    """Per-device memory of what was last sent, and the rule for sending again."""

    def __init__(self, deadband: Callable[[str], float], full_refresh: float) -> None:
        self._deadband = deadband
        self._full_refresh = full_refresh
        self._sent: dict[str, Any] | None = None
        self._sent_at = -math.inf
        self._offered: tuple[Reading, ...] = ()
        """The readings of the last update: the same objects again (no new poll or
        judgement since; the point image hands out the readings it holds) cannot have
        moved, so their body is not built again."""

    def update(self, readings: Mapping[str, Reading], now: float) -> dict[str, Any] | None:
        """The body to publish now, or None when nothing moved beyond its deadband."""
        offered = tuple(readings.values())
        if (self._sent is not None and now - self._sent_at < self._full_refresh
                and len(offered) == len(self._offered)
                and all(a is b for a, b in zip(offered, self._offered, strict=True))):
            return None
        self._offered = offered
        new = body(readings)
        if self._due(new, now):
            self._sent, self._sent_at = new, now
            return new
        return None

    def force(self) -> None:
        """Make the next update send, whatever changed (after a republish command)."""
        self._sent = None

    def _due(self, new: dict[str, Any], now: float) -> bool:
        old = self._sent
        if old is None or now - self._sent_at >= self._full_refresh:
            return True
        if old.keys() != new.keys() or old["quality"] != new["quality"]:
            return True
        return any(
            _moved(old[name], value, self._deadband(name))
            for name, value in new.items()
            if name != "quality"
        )
