"""What the controller sees each cycle: one frozen snapshot of signals, grouped by role."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast, overload

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


NO_VALUE = "no value"
"""Why a point sampled as None is bad."""


_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, eq=False)
class SampledSignals(Mapping[str, tuple[Signal, ...]]):
    """Role -> Signals of points all sampled at one instant ``now`` from plain readings.

    ``readings`` maps each role to one reading, or to a tuple with one reading per point.
    A reading stands for ``Signal(reading, True, now)``, None for
    ``Signal(None, False, now, "no value")``. A simulator samples some thirty points per
    step, millions of steps per simulated year: the Signals are made only for the roles
    someone looks up, and kept. Validation sees every snapshot as one plain reading per
    role and judges both forms with the same code; these readings are that view already,
    so a fresh, plausible cycle builds no Signal. Read-only, like every snapshot; compared
    as the mapping it is.
    """

    now: float
    readings: Mapping[str, object]
    _made: dict[str, tuple[Signal, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False)
    """The Signals made so far, by role."""

    def __getitem__(self, role: str) -> tuple[Signal, ...]:
        made = self._made.get(role)
        if made is None:
            v = self.readings[role]
            now = self.now
            made = tuple(_signal(x, now) for x in (v if type(v) is tuple else (v,)))
            self._made[role] = made
        return made

    def __iter__(self) -> Iterator[str]:
        return iter(self.readings)

    def __len__(self) -> int:
        return len(self.readings)

    def __contains__(self, role: object) -> bool:
        return role in self.readings

    @overload
    def get(self, role: str, /) -> tuple[Signal, ...] | None: ...
    @overload
    def get(self, role: str, default: tuple[Signal, ...] | _T, /) -> tuple[Signal, ...] | _T: ...

    def get(self, role: str, default: object = None, /) -> object:
        """``Mapping.get`` without raising and catching a KeyError for a role the site does
        not bind (445 -> 55 ns): the rule-based baseline asks for every role, every scan."""
        return self[role] if role in self.readings else default

    def keys(self) -> KeysView[str]:
        return self.readings.keys()

    def items(self) -> ItemsView[str, tuple[Signal, ...]]:
        return ItemsView(self)

    def __repr__(self) -> str:
        return f"SampledSignals({self.now!r}, {dict(self.items())!r})"


def _signal(reading: object, now: float) -> Signal:
    """The Signal a plain reading stands for: None is a bad point, a number a good one."""
    if reading is None:
        return Signal(None, False, now, NO_VALUE)
    return Signal(cast(float, reading), True, now)


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
        readings: dict[str, float | tuple[float | None, ...] | None] = {}
        for role, v in values.items():
            if isinstance(v, Sequence):
                readings[role] = tuple(None if x is None else float(x) for x in v)
            else:
                readings[role] = None if v is None else float(v)
        return cls(now, SampledSignals(now, readings))
