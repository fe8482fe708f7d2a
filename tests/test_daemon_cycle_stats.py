"""The cycle figures in ``control/state``: the sorted window kept beside the cycles gives
the same percentiles as sorting the last ``window`` values, and overruns count every
cycle longer than the period."""

from __future__ import annotations

import random

from heatd.cycle_stats import CycleStats


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def test_the_figures_are_those_of_the_last_window_sorted() -> None:
    rng = random.Random(7)
    stats = CycleStats(period=0.1, window=50)
    durations: list[float] = []
    jitters: list[float] = []
    for n in range(1, 400):
        duration = rng.choice([0.1, 0.2, round(rng.random() * 0.15, 3)])  # repeats too
        jitter = rng.random() * 0.01
        stats.record(jitter, duration)
        durations.append(duration)
        jitters.append(jitter)
        recent_d, recent_j = durations[-50:], jitters[-50:]
        assert stats.summary() == {
            "period_s": 0.1, "cycles": n, "overruns": sum(d > 0.1 for d in durations),
            "duration_ms_p50": round(percentile(recent_d, 0.5) * 1e3, 3),
            "duration_ms_max": round(max(recent_d) * 1e3, 3),
            "jitter_ms_p50": round(percentile(recent_j, 0.5) * 1e3, 3),
            "jitter_ms_p99": round(percentile(recent_j, 0.99) * 1e3, 3),
            "jitter_ms_max": round(max(recent_j) * 1e3, 3),
        }


def test_before_the_first_cycle_there_are_no_figures() -> None:
    stats = CycleStats(period=1.0)
    assert stats.summary() == {"period_s": 1.0, "cycles": 0, "overruns": 0}
    assert stats.figures().jitter_max is None
