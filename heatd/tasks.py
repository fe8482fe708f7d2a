"""The fixed-rate grid the control cycle and the poll loops share."""

from __future__ import annotations


def next_tick(previous: float, now: float, period: float) -> float:
    """The deadline after ``previous`` on a fixed grid of ``period``. A loop that overran
    skips the ticks it missed, keeping its phase, instead of bursting to catch up (a burst
    hits a struggling device, or the cycle's budget, hardest)."""
    deadline = previous + period
    if deadline < now:
        deadline += ((now - deadline) // period + 1) * period
    return deadline
