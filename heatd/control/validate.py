"""Input validation: turn raw signals into known values or an explicit "unknown".

A bad, stale, implausible, NaN or frozen signal is never a number here; it is absent from
``Inputs.values`` and its reason is kept, so the envelope can treat it as worst case and
the daemon can say why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import NamedTuple

from heatd.control import roles
from heatd.control.params import ControlParams, ValidationParams
from heatd.control.signals import SampledSignals, Signal, Snapshot

_KNOWN_INPUTS: frozenset[str] = frozenset(roles.INPUT_ROLES) | frozenset(roles.FEEDBACK_ROLES)

_NAN = float("nan")

Tracker = tuple[float, float, Mapping[str, float] | None]
"""For one point, for frozen-value detection: (last value, time it last changed, the
validated values of the cycle before that change, which its witnesses are measured from,
or None once a witness has moved past its amount since)."""

Witness = tuple[str, float, float]
"""(role, K, share): the witness has moved once it is off its value at the change by more
than K plus that share of the value (see ``roles.FROZEN_WITNESSES``)."""


@dataclass(frozen=True, slots=True)
class ValidationState:
    """Per-point change trackers and last cycle's validated values (what the trackers'
    witnesses read); read-only, replaced every cycle."""

    trackers: Mapping[str, tuple[Tracker, ...]] = field(default_factory=dict)
    values: Mapping[str, float] = field(default_factory=dict)


class Inputs(NamedTuple):
    """Validated inputs: ``values`` holds only what is known (worst case of the good points).
    Read by the layers of the same cycle and never kept."""

    values: dict[str, float]
    invalid: dict[str, str]
    missing: tuple[str, ...]


Plan = tuple[str, float, float, bool, bool, bool, tuple[Witness, ...]]
"""How one bound input role is judged: (role, lo, hi, worst_high, frozen_checked, rack,
witnesses).

``lo``..``hi`` is the plausible range; of several good points the highest counts if
``worst_high``, else the lowest; a value that stops changing is declared frozen if
``frozen_checked`` (and, where it has ``witnesses``, one of them moved meanwhile);
``rack`` marks the rack inlet role, one point per rack, each of which must be known. A
plain tuple, not a NamedTuple: every role unpacks its plan every cycle, and the
interpreter unpacks only an exact tuple on its fast path."""


@dataclass(frozen=True, slots=True)
class _Site:
    """Per site: the snapshot's roles in order, each with its plan (None: not an input),
    the input roles it lacks, and the validation settings as plain attributes."""

    params: ControlParams
    roles: tuple[str, ...]
    plan: tuple[Plan | None, ...]
    missing: tuple[str, ...]
    stale_after_s: float
    future_tolerance_s: float
    frozen_after: float
    min_good: int | None

    @classmethod
    def of(cls, params: ControlParams, bound: tuple[str, ...]) -> _Site:
        specs, vp = params.role_specs, params.validation
        plan = tuple(
            None if spec is None else (role, *spec, role == roles.RACK_INLET_TEMP,
                                       _witnesses(role, vp) if spec[3] else ())
            for role, spec in ((r, specs.get(r)) for r in bound)
        )
        return cls(params, bound, plan, tuple(sorted(_KNOWN_INPUTS - frozenset(bound))),
                   vp.stale_after_s, vp.future_tolerance_s, vp.frozen_after_s or 0.0,
                   vp.rack_inlet_min_good)


def _witnesses(role: str, vp: ValidationParams) -> tuple[Witness, ...]:
    """What a frozen-checked role's value must have followed, with how far each may move
    before an unchanged value is stuck rather than quiet."""
    return tuple((w, 0.0, vp.frozen_witness_load_share) if w == roles.IT_POWER
                 else (w, vp.frozen_witness_k, 0.0)
                 for w in roles.FROZEN_WITNESSES.get(role, ()))


class _Sites:
    """The last site seen, worked out once and kept while the params and the roles stay
    the same, which is every cycle of a running site."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: _Site | None = None

    def get(self, params: ControlParams, bound: tuple[str, ...]) -> _Site:
        last = self._last
        if last is None or last.params is not params or last.roles != bound:
            last = self._last = _Site.of(params, bound)
        return last


_sites = _Sites()


def validate(
    snapshot: Snapshot, state: ValidationState, params: ControlParams, now: float
) -> tuple[Inputs, ValidationState]:
    """Judge every point; combine redundant points of a role into their worst good value.

    Both snapshot forms (the daemon's Signals, the co-simulator's sampled readings) are
    first seen as one plain reading per role (:func:`_readings`), so they share one rule:
    a role whose points are all plausible floats, fresh and not frozen is taken on a short
    path; any other role gets the full judgement of :meth:`_Judge.judge` on its Signals.
    """
    signals = snapshot.signals
    site = _sites.get(params, _roles(signals))
    oldest = now - site.stale_after_s
    newest = now + site.future_tolerance_s
    frozen_after, min_good = site.frozen_after, site.min_good
    old, seen = state.trackers, state.values
    values: dict[str, float] = {}
    trackers: dict[str, tuple[Tracker, ...]] = {}
    invalid: dict[str, str] = {}
    judge: _Judge | None = None
    readings = _readings(signals, oldest, newest)

    for plan, v in zip(site.plan, readings, strict=True):  # one reading per role, in order
        if plan is None:
            continue  # not an input role (an output echoed back, or a typo the loader missed)
        role, lo, hi, _, track, rack, witnesses = plan
        if type(v) is float:
            if lo <= v <= hi and not rack:  # NaN fails the range too
                if not track:
                    values[role] = v
                    continue
                prev = old.get(role, ())
                last = prev[0] if prev else None
                if last is None or last[0] != v:
                    trackers[role] = ((v, now, seen),)
                    values[role] = v
                    continue
                kept, frozen = _unchanged(last, now, frozen_after, witnesses, seen)
                if not frozen:
                    trackers[role] = prev if kept is last and len(prev) == 1 else (kept,)
                    values[role] = v
                    continue
                # frozen: judged below, which tracks it and says so
        elif (type(v) is tuple and v
              and _take_all(plan, v, old, trackers, values, now, frozen_after, min_good,
                            seen)):
            continue
        judge = judge or _Judge(now, oldest, newest, frozen_after, min_good,
                                old, trackers, values, invalid, seen)
        judge.judge(plan, signals[role])

    return Inputs(values, invalid, site.missing), ValidationState(trackers, values)


def _roles(signals: Mapping[str, Sequence[Signal]]) -> tuple[str, ...]:
    """The snapshot's roles in order; a sampled snapshot's straight from its readings."""
    return tuple(signals.readings if type(signals) is SampledSignals else signals)


def _readings(
    signals: Mapping[str, Sequence[Signal]], oldest: float, newest: float
) -> Iterable[object]:
    """One plain reading per role, in snapshot order: the value of a role's one point, or
    the tuple of its points' values, when every point is good and fresh; else None, and the
    role is judged point by point. A sampled snapshot already holds these readings for its
    one instant, so a simulator's cycle builds no Signal unless a point is judged."""
    if type(signals) is SampledSignals:
        readings = signals.readings
        if oldest <= signals.now <= newest:
            return readings.values()
        return repeat(None, len(readings))
    out: list[object] = []
    for points in signals.values():
        if len(points) == 1:
            sig = points[0]
            out.append(sig.value if sig.good and oldest <= sig.ts <= newest else None)
            continue
        vals: list[object] = []
        for sig in points:
            if not (sig.good and oldest <= sig.ts <= newest):
                vals = []
                break
            vals.append(sig.value)
        out.append(tuple(vals) if vals else None)
    return out


class _Judge:
    """The full judgement of a role's points, into one validation pass's results."""

    __slots__ = ("frozen_after", "invalid", "min_good", "newest", "now", "old", "oldest",
                 "seen", "trackers", "values")

    def __init__(self, now: float, oldest: float, newest: float, frozen_after: float,
                 min_good: int | None, old: Mapping[str, tuple[Tracker, ...]],
                 trackers: dict[str, tuple[Tracker, ...]], values: dict[str, float],
                 invalid: dict[str, str], seen: Mapping[str, float]) -> None:
        self.now, self.oldest, self.newest = now, oldest, newest
        self.frozen_after, self.min_good, self.old = frozen_after, min_good, old
        self.trackers, self.values, self.invalid = trackers, values, invalid
        self.seen = seen

    def judge(self, plan: Plan, points: Sequence[Signal]) -> None:
        """Every point of a role on its own: bad, not a number, NaN, out of range, stale,
        from the future or frozen; the role's value is the worst of the good ones."""
        role, lo, hi, high, track, rack, witnesses = plan
        prev_tr = self.old.get(role, ()) if track else ()
        new_tr: list[Tracker] = []
        best: float | None = None
        n_good = 0
        reason: str | None = None
        for i, sig in enumerate(points):
            x, why = _verdict(sig, lo, hi, self.oldest, self.newest)
            if track:
                last = prev_tr[i] if i < len(prev_tr) else None
                last, why = self._tracked(last, x, why, witnesses)
                new_tr.append(last)
            if why is not None:  # every bad point named: "point 1" alone hid a dead role
                part = why if len(points) == 1 else f"point {i}: {why}"
                reason = part if reason is None else f"{reason}; {part}"
                continue
            n_good += 1
            if best is None or (x > best if high else x < best):
                best = x
        if track:
            self.trackers[role] = tuple(new_tr)
        if reason is not None:
            self.invalid[role] = reason
        if best is None:
            if not points:
                self.invalid[role] = "no points"
            return
        if rack and n_good < (self.min_good or max(1, len(points) - 1)):
            return
        self.values[role] = best

    def _tracked(self, last: Tracker | None, x: float, why: str | None,
                 witnesses: tuple[Witness, ...]) -> tuple[Tracker, str | None]:
        """A point's change tracker after this reading, and the point frozen if a good
        value has not changed for ``frozen_after`` while its witnesses moved (see
        :func:`_unchanged`); a bad reading leaves it as it was."""
        if why is None:
            if last is None or last[0] != x:
                last = (x, self.now, self.seen)
            else:
                last, frozen = _unchanged(last, self.now, self.frozen_after, witnesses,
                                          self.seen)
                if frozen:
                    why = "frozen"
        return (last if last is not None else (_NAN, self.now, None)), why


def _unchanged(last: Tracker, now: float, frozen_after: float,
               witnesses: tuple[Witness, ...],
               seen: Mapping[str, float]) -> tuple[Tracker, bool]:
    """An unchanged value's tracker, and whether it is frozen: unchanged for
    ``frozen_after`` while a witness moved past its amount since it last changed (kept in
    the tracker once seen, so a move that came back still counts), or, with no witness
    measured both then and now, unchanged for ``frozen_after`` alone. Witnesses first
    measured after the change (the first cycle, or back from a loss) are measured from
    now on."""
    then = last[2]
    if then is None or not witnesses:
        return last, now - last[1] >= frozen_after
    compared = newly = False
    for role, k, share in witnesses:
        a, b = then.get(role), seen.get(role)
        if b is None:
            continue
        if a is None:
            newly = True
        elif abs(b - a) > k + share * abs(a):
            return (last[0], last[1], None), now - last[1] >= frozen_after
        else:
            compared = True
    if compared:
        return last, False
    if newly:
        return (last[0], last[1], seen), False
    return last, now - last[1] >= frozen_after


def _verdict(sig: Signal, lo: float, hi: float, oldest: float,
             newest: float) -> tuple[float, str | None]:
    """A point's value as a float and why it is not good, if it is not (the value is
    meaningless then)."""
    value = sig.value
    if not sig.good or value is None:
        return _NAN, sig.reason or "bad"
    try:  # a driver's value may be any type; only a float is a measurement
        x = value if type(value) is float else float(value)
    except (TypeError, ValueError):
        return _NAN, "not a number"
    if not lo <= x <= hi:
        return x, "nan" if math.isnan(x) else "out of range"
    if not sig.ts >= oldest:  # a NaN timestamp is stale too
        return x, "stale"
    if sig.ts > newest:
        return x, "timestamp in the future"
    return x, None


def _take_all(plan: Plan, good: tuple[float, ...], old: Mapping[str, tuple[Tracker, ...]],
              trackers: dict[str, tuple[Tracker, ...]], values: dict[str, float], now: float,
              frozen_after: float, min_good: int | None, seen: Mapping[str, float]) -> bool:
    """Several good, fresh points: their worst counts if every one is a plausible float and
    none is frozen; else False, nothing taken or tracked, and the role is judged."""
    role, lo, hi, high, track, rack, witnesses = plan
    prev = old.get(role, ()) if track else ()
    n = len(prev)
    tracked: list[Tracker] = []
    i = 0
    for x in good:  # a loop: all() would build a generator per role per cycle
        if type(x) is not float or not lo <= x <= hi:
            return False
        if track:
            last = prev[i] if i < n else None
            if last is None or last[0] != x:
                last = (x, now, seen)
            else:
                last, frozen = _unchanged(last, now, frozen_after, witnesses, seen)
                if frozen:
                    return False
            tracked.append(last)
            i += 1
    if track:
        trackers[role] = tuple(tracked)
    if not rack or len(good) >= (min_good or len(good)):
        values[role] = max(good) if high else min(good)
    return True
