"""The hourly meter: what happened in each clock hour, from counters, power and levels.

Pure: ``observe`` takes the wall-clock time and the values; it returns the hours that
closed. An hour [S, E) closes once every counter's reading at E is known (a reading at or
after E: the value at E is interpolated between the two readings around it), so
counter energy is split between hours by time and the hours' energies add up to the
counter's own delta, exactly. A counter that is good but has not changed (an OPC UA
subscription reports changes only) is taken as unchanged after ``GRACE_S``. A counter
that stays silent holds the hour open for at most ``HOLD_S``; energy the counter shows
later for an hour already closed goes to the oldest open hour as ``late_kwh``.

heatd's own downtime is an hour range nobody observed. Started with a ``Resume`` (the end
of the last stored record and the counters' values there), the meter opens every hour
from that end, so the first reading after the restart spreads the counter's delta over
the hours heatd missed (flagged estimated, with ``downtime_s``): no energy falls between
records. Power and temperatures are integrated with the trapezoid rule over samples at
most ``MAX_GAP_S`` apart, split at the hour boundary where it falls.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from heatd.billing.counter import counter_at, counter_delta

HOUR_S = 3600.0
MAX_GAP_S = 60.0
"""Two samples further apart than this are not bridged by an integral."""
LIVE_SPAN_S = 120.0
"""Counter readings further apart than this: the split of their delta between hours is
an estimate (the total is still exact)."""
GRACE_S = 60.0
HOLD_S = 6 * HOUR_S


@dataclass
class CounterPart:
    kwh: float = 0.0
    covered_s: float = 0.0
    estimated_s: float = 0.0
    late_kwh: float = 0.0
    reset: bool = False
    end_value: float | None = None
    last: tuple[float, float] | None = None
    """(time, value) of the latest reading whose delta lies in this interval: where its
    counter energy ends when the counter fell silent before the interval's end."""


@dataclass
class Integral:
    """A power integral (kWh) or a level's time integral (value x s), with its maximum."""

    total: float = 0.0
    covered_s: float = 0.0
    below_s: float = 0.0
    above_s: float = 0.0
    peak: float = -math.inf


@dataclass
class Hour:
    """One interval of the meter (a clock hour for contract records)."""

    start: float
    length: float = HOUR_S
    counters: dict[str, CounterPart] = field(default_factory=dict)
    powers: dict[str, Integral] = field(default_factory=dict)
    levels: dict[str, Integral] = field(default_factory=dict)
    observed_s: float = 0.0
    downtime_s: float = 0.0

    @property
    def end(self) -> float:
        return self.start + self.length


@dataclass(frozen=True, slots=True)
class Resume:
    """Where the stored records end: the last record's end (epoch s) and, per counter,
    (time, value) of its last known reading at or before that end."""

    end: float
    counters: Mapping[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Level:
    """A level (a temperature) and the thresholds whose crossing is timed."""

    below: float | None = None
    above: float | None = None


def _pieces(t0: float, t1: float, length: float) -> Iterator[tuple[float, float, float]]:
    """(interval start, from, to) of [t0, t1] cut at the interval boundaries."""
    a = t0
    while a < t1:
        start = math.floor(a / length) * length
        b = min(t1, start + length)
        yield start, a, b
        a = b


class HourlyMeter:
    """One contract's hours: counters, power integrals and levels by name. ``length_s``
    and ``hold_s`` serve the meter's shorter intervals (``heatd.meter``)."""

    def __init__(self, counters: Mapping[str, float | None], powers: tuple[str, ...],
                 levels: Mapping[str, Level], resume: Resume | None = None, *,
                 length_s: float = HOUR_S, hold_s: float = HOLD_S) -> None:
        self._length, self._hold = length_s, hold_s
        self._moduli = dict(counters)
        self._power_names = powers
        self._levels = dict(levels)
        self._resume = resume
        self._track: dict[str, tuple[float, float]] = dict(resume.counters) if resume else {}
        self._closed_until: float | None = resume.end if resume else None
        self._hours: dict[float, Hour] = {}
        self._last_power: dict[str, tuple[float, float] | None] = dict.fromkeys(powers)
        self._last_level: dict[str, tuple[float, float] | None] = dict.fromkeys(levels)
        self._last_seen: float | None = None
        self._started: float | None = None

    # --- input ------------------------------------------------------------------------
    def observe(self, now: float, *, counters: Mapping[str, tuple[float, float] | None],
                counters_good: Mapping[str, bool], powers: Mapping[str, float | None],
                levels: Mapping[str, float | None]) -> list[Hour]:
        """One cycle: ``counters`` holds a new reading (time, kWh) or None when the counter
        was not re-read; ``counters_good`` whether each is currently good. Returns the
        hours that closed, oldest first."""
        if self._last_seen is not None and now <= self._last_seen:
            return []  # the wall clock stepped back: wait until it passes again
        if self._started is None:
            self._start(now)
        self._open_until(now)
        last = self._last_seen
        if last is not None and now - last <= MAX_GAP_S:
            for start, a, b in _pieces(last, now, self._length):
                hour = self._hours.get(start)
                if hour is not None:
                    hour.observed_s += b - a
        self._last_seen = now
        for name, reading in counters.items():
            if reading is not None:
                self._count(name, *reading)
        for name in self._power_names:
            self._integrate(self._last_power, name, now, powers.get(name), None, "powers")
        for name, level in self._levels.items():
            self._integrate(self._last_level, name, now, levels.get(name), level, "levels")
        return self._close(now, counters_good)

    def _start(self, now: float) -> None:
        self._started = now
        if self._closed_until is None:
            self._closed_until = math.floor(now / self._length) * self._length
            return
        for start, a, b in _pieces(self._closed_until, now, self._length):  # heatd was not running
            self._hour(start).downtime_s += b - a  # type: ignore[union-attr]

    def _open_until(self, now: float) -> None:
        assert self._closed_until is not None
        start = self._closed_until
        while start <= now:
            self._hour(start)
            start += self._length

    def _hour(self, start: float) -> Hour | None:
        """The open hour starting at ``start`` (made on first use); None once closed."""
        assert self._closed_until is not None
        if start < self._closed_until:
            return None
        hour = self._hours.get(start)
        if hour is None:
            hour = self._hours[start] = Hour(  # every level, known or not this hour
                start, self._length, levels={name: Integral() for name in self._levels})
        return hour

    def _count(self, name: str, t: float, value: float) -> None:
        last = self._track.get(name)
        self._track[name] = (t, value)
        if last is None or t <= last[0]:
            if last is not None and t < last[0]:
                self._track[name] = last  # an older reading than the one kept
            return
        t0, v0 = last
        delta = counter_delta(v0, value, self._moduli.get(name))
        if delta is None:
            latest = self._hour(self._floor(t)) or self._oldest()
            latest.counters.setdefault(name, CounterPart()).reset = True
            return
        span = t - t0
        estimated = span > LIVE_SPAN_S
        for start, a, b in _pieces(t0, t, self._length):
            share = delta * (b - a) / span
            hour = self._hour(start)
            if hour is None:  # a part of the delta for an hour already closed
                part = self._oldest().counters.setdefault(name, CounterPart())
                part.kwh += share
                part.late_kwh += share
                continue
            part = hour.counters.setdefault(name, CounterPart())
            part.kwh += share
            part.covered_s += b - a
            if estimated:
                part.estimated_s += b - a
            if b == start + self._length:
                part.end_value = counter_at(v0, delta, (b - t0) / span, self._moduli.get(name))
            if b == t:
                part.last = (t, value)

    def _floor(self, t: float) -> float:
        return math.floor(t / self._length) * self._length

    def _oldest(self) -> Hour:
        hour = self._hours[min(self._hours)]
        return hour

    def _integrate(self, lasts: dict[str, tuple[float, float] | None], name: str, now: float,
                   value: float | None, level: Level | None, kind: str) -> None:
        last = lasts[name]
        lasts[name] = None if value is None else (now, value)
        if value is None:
            return
        here = self._hour(self._floor(now))
        if here is not None and level is not None:
            stats = here.levels.setdefault(name, Integral())
            stats.peak = max(stats.peak, value)
        if last is None or not 0 < now - last[0] <= MAX_GAP_S:
            return
        t0, v0 = last
        span = now - t0
        for start, a, b in _pieces(t0, now, self._length):
            hour = self._hour(start)
            if hour is None:
                continue
            va = v0 + (value - v0) * (a - t0) / span
            vb = v0 + (value - v0) * (b - t0) / span
            area = (va + vb) / 2 * (b - a)
            stats = getattr(hour, kind).setdefault(name, Integral())
            stats.covered_s += b - a
            if level is None:
                stats.total += area / HOUR_S  # kW x s -> kWh
                continue
            stats.total += area
            if level.below is not None and value < level.below:
                stats.below_s += b - a
            if level.above is not None and value > level.above:
                stats.above_s += b - a

    # --- closing ----------------------------------------------------------------------
    def _close(self, now: float, good: Mapping[str, bool]) -> list[Hour]:
        closed: list[Hour] = []
        assert self._started is not None
        for start in sorted(self._hours):
            hour = self._hours[start]
            end = hour.end
            if end > now:
                break
            waiting = [n for n in self._moduli if self._track.get(n, (-math.inf,))[0] < end]
            if waiting and now >= end + GRACE_S:
                for name in waiting:  # good but unchanged since its last reading
                    if good.get(name) and name in self._track:
                        self._count(name, now, self._track[name][1])
                waiting = [n for n in waiting if self._track.get(n, (-math.inf,))[0] < end]
            if waiting and now < max(end, self._started) + self._hold:
                break
            closed.append(self._hours.pop(start))
            self._closed_until = end
        return closed
