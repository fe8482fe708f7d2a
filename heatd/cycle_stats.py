"""Cycle timing: duration, start jitter and overruns, as published in ``control/state``.

Percentiles come from a bounded window of recent cycles, so the figures describe now, not
the whole uptime.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True, slots=True)
class CycleFigures:
    """The timing window as it was at one instant: copied once per cycle for the cycle
    report, summarised (sorted) only by a reader that publishes it."""

    period: float
    cycles: int
    overruns: int
    durations: tuple[float, ...]
    jitters: tuple[float, ...]

    def summary(self) -> dict[str, float | int]:
        if not self.durations:
            return {"period_s": self.period, "cycles": 0, "overruns": 0}
        jitters, durations = list(self.jitters), list(self.durations)
        return {
            "period_s": self.period,
            "cycles": self.cycles,
            "overruns": self.overruns,
            "duration_ms_p50": round(_percentile(durations, 0.5) * 1e3, 3),
            "duration_ms_max": round(max(durations) * 1e3, 3),
            "jitter_ms_p50": round(_percentile(jitters, 0.5) * 1e3, 3),
            "jitter_ms_p99": round(_percentile(jitters, 0.99) * 1e3, 3),
            "jitter_ms_max": round(max(jitters) * 1e3, 3),
        }


@dataclass
class CycleStats:
    period: float
    window: int = 600
    cycles: int = 0
    overruns: int = 0
    _durations: deque[float] = field(default_factory=deque)
    _jitters: deque[float] = field(default_factory=deque)

    def record(self, jitter: float, duration: float) -> None:
        """One cycle: how late it started (s) and how long it took (s)."""
        self.cycles += 1
        if duration > self.period:
            self.overruns += 1
        for series, value in ((self._jitters, jitter), (self._durations, duration)):
            series.append(value)
            if len(series) > self.window:
                series.popleft()

    def figures(self) -> CycleFigures:
        return CycleFigures(self.period, self.cycles, self.overruns, tuple(self._durations),
                            tuple(self._jitters))

    def summary(self) -> dict[str, float | int]:
        return self.figures().summary()
