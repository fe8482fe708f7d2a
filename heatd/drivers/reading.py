"""A point value as a driver saw it: value, quality and source timestamp.

A bad read is never turned into a number: it carries ``value=None`` and a reason, so
nothing downstream can mistake a dead sensor for a cold one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

Value = float | int | bool


class Quality(StrEnum):
    GOOD = "good"
    STALE = "stale"
    BAD = "bad"


@dataclass(frozen=True, slots=True)
class Reading:
    """One observation of one point.

    ``source_ts`` is epoch seconds (UTC) from the source when it provides one (OPC UA),
    otherwise the time the reply arrived. ``raw`` keeps the registers for diagnostics.
    ``heard_at`` is when heatd received it, on the monotonic clock (set by acquisition):
    ages are judged on it, never on the wall clock.
    """

    value: Value | None
    quality: Quality
    source_ts: float
    reason: str | None = None
    raw: tuple[int, ...] | None = None
    heard_at: float | None = None

    @classmethod
    def good(cls, value: Value, ts: float, raw: tuple[int, ...] | None = None) -> Reading:
        return cls(value=value, quality=Quality.GOOD, source_ts=ts, raw=raw)

    @classmethod
    def bad(cls, reason: str, ts: float, raw: tuple[int, ...] | None = None) -> Reading:
        return cls(value=None, quality=Quality.BAD, source_ts=ts, reason=reason, raw=raw)

    @property
    def quality_text(self) -> str:
        """``good``, ``stale`` or ``bad:<reason>``, as published on MQTT."""
        if self.quality is Quality.GOOD:
            return "good"
        return f"{self.quality.value}:{self.reason}" if self.reason else self.quality.value
