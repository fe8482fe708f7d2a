"""What the controller sees each cycle: one frozen snapshot of signals, grouped by role."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Signal:
    """One point's latest value as the daemon froze it.

    ``value`` is None whenever ``good`` is False: a dead sensor must never read as a
    number. ``ts`` is the source timestamp in epoch seconds; the core judges its age.
    """

    value: float | None
    good: bool
    ts: float
    reason: str | None = None

    @classmethod
    def ok(cls, value: float, ts: float) -> Signal:
        return cls(value, True, ts, None)

    @classmethod
    def bad(cls, reason: str, ts: float) -> Signal:
        return cls(None, False, ts, reason)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """All signals at one instant: role -> one Signal per point bound to that role."""

    now: float
    signals: Mapping[str, tuple[Signal, ...]]
