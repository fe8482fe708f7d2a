"""What the controller sees each cycle: one frozen snapshot of signals, grouped by role."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Reading = float | bool | None


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

    @classmethod
    def from_values(
        cls, now: float, values: Mapping[str, Reading | Sequence[Reading]]
    ) -> Snapshot:
        """A snapshot sampled at ``now`` from plain values (None = a bad point), for a
        simulator or a test that has numbers rather than driver readings."""
        signals: dict[str, tuple[Signal, ...]] = {}
        for role, v in values.items():
            seq = v if isinstance(v, Sequence) else (v,)
            signals[role] = tuple(
                Signal.bad("no value", now) if x is None else Signal(float(x), True, now)
                for x in seq
            )
        return cls(now, signals)
