"""Cycle timing: duration, start jitter and overruns, as published in ``control/state``.

Percentiles come from a bounded window of recent cycles, so the figures describe now, not
the whole uptime. The window is also kept sorted, one insertion and one removal a cycle,
so the figures are read, not computed, when each cycle's report takes them.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field


def _percentile(ordered: list[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True, slots=True)
class CycleFigures:
    """The timing figures at one instant (seconds; None before the first cycle)."""

    period: float
    cycles: int = 0
    overruns: int = 0
    duration_p50: float | None = None
    duration_max: float | None = None
    jitter_p50: float | None = None
    jitter_p99: float | None = None
    jitter_max: float | None = None

    def summary(self) -> dict[str, float | int]:
        if self.duration_p50 is None:
            return {"period_s": self.period, "cycles": 0, "overruns": 0}
        out: dict[str, float | int] = {"period_s": self.period, "cycles": self.cycles,
                                       "overruns": self.overruns}
        for name in ("duration_p50", "duration_max", "jitter_p50", "jitter_p99",
                     "jitter_max"):
            value = getattr(self, name)
            out[name.replace("_", "_ms_", 1)] = round(value * 1e3, 3)
        return out


@dataclass
class _Window:
    """The last ``size`` values, in arrival order and sorted."""

    size: int
    arrived: deque[float] = field(default_factory=deque)
    ordered: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.arrived.append(value)
        bisect.insort(self.ordered, value)
        if len(self.arrived) > self.size:
            old = self.arrived.popleft()
            del self.ordered[bisect.bisect_left(self.ordered, old)]


@dataclass
class CycleStats:
    period: float
    window: int = 600
    cycles: int = 0
    overruns: int = 0
    _durations: _Window = field(init=False)
    _jitters: _Window = field(init=False)

    def __post_init__(self) -> None:
        self._durations, self._jitters = _Window(self.window), _Window(self.window)

    def record(self, jitter: float, duration: float) -> None:
        """One cycle: how late it started (s) and how long it took (s)."""
        self.cycles += 1
        if duration > self.period:
            self.overruns += 1
        self._jitters.add(jitter)
        self._durations.add(duration)

    def figures(self) -> CycleFigures:
        durations, jitters = self._durations.ordered, self._jitters.ordered
        if not durations:
            return CycleFigures(self.period)
        return CycleFigures(self.period, self.cycles, self.overruns,
                            _percentile(durations, 0.5), durations[-1],
                            _percentile(jitters, 0.5), _percentile(jitters, 0.99), jitters[-1])

    def summary(self) -> dict[str, float | int]:
        return self.figures().summary()
