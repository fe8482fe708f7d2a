"""Energy counters: the delta between two readings, across a wrap, never across a reset.

A counter of ``bits`` raw bits that passes its top starts again at zero. Read every few
seconds it cannot pass a quarter of its range between two readings, so a step back from
the top quarter into the bottom quarter is a wrap; any other step back is a reset (a
replaced or cleared meter), whose delta is unknown.
"""

from __future__ import annotations


def counter_delta(before: float, after: float, modulus: float | None) -> float | None:
    """Energy between two readings of one counter; None when it was reset."""
    delta = after - before
    if delta >= 0:
        return delta
    if modulus is not None and before >= 0.75 * modulus and after < 0.25 * modulus:
        return delta + modulus
    return None


def counter_at(before: float, delta: float, share: float, modulus: float | None) -> float:
    """The reading a counter showed ``share`` (0..1) of the way through ``delta``."""
    value = before + delta * share
    return value % modulus if modulus is not None else value
