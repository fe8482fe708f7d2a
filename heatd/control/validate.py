"""Input validation: turn raw signals into known values or an explicit "unknown".

A bad, stale, implausible, NaN or frozen signal is never a number here; it is absent from
``Inputs.values`` and its reason is kept, so the envelope can treat it as worst case and
the daemon can say why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from heatd.control import roles
from heatd.control.frozen import maker
from heatd.control.params import ControlParams
from heatd.control.signals import SampledSignals, Signal, Snapshot

_KNOWN_INPUTS: frozenset[str] = frozenset(roles.INPUT_ROLES) | frozenset(roles.FEEDBACK_ROLES)

_NAN = float("nan")
_RACK = roles.RACK_INLET_TEMP

Tracker = tuple[float, float]
"""(last value, time it last changed) for one point, for frozen-value detection."""


@dataclass(frozen=True, slots=True)
class ValidationState:
    """Per-point change trackers; read-only, replaced every cycle."""

    trackers: Mapping[str, tuple[Tracker, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Inputs:
    """Validated inputs: ``values`` holds only what is known (worst case of the good points)."""

    values: dict[str, float]
    invalid: dict[str, str]
    missing: tuple[str, ...]


_new_inputs = maker(Inputs)
_new_state = maker(ValidationState)

Plan = tuple[str, float, float, bool, bool, bool]
"""(role, lo, hi, worst is high, frozen-checked, is the rack inlet role) of a bound role."""


class _Plans:
    """Per site: the snapshot's roles in order, each with its spec (None: not an input), and
    the input roles it lacks. Worked out once and kept while the roles stay the same, which
    is every cycle of a running site. ``plain`` (role, lo, hi): the roles with one reading
    and no frozen check; ``rest``: the other input roles, in snapshot order."""

    __slots__ = ("missing", "params", "plain", "plan", "rest", "roles")

    def __init__(self) -> None:
        self.params: ControlParams | None = None
        self.roles: tuple[str, ...] = ()
        self.plan: tuple[Plan | None, ...] = ()
        self.missing: tuple[str, ...] = ()
        self.plain: tuple[tuple[str, float, float], ...] = ()
        self.rest: tuple[Plan, ...] = ()

    def get(self, params: ControlParams, bound: tuple[str, ...]) -> _Plans:
        if self.params is not params or self.roles != bound:
            specs = params.role_specs
            self.plan = plan = tuple(
                None if spec is None else (role, *spec, role == _RACK)
                for role, spec in ((r, specs.get(r)) for r in bound)
            )
            self.missing = tuple(sorted(_KNOWN_INPUTS - frozenset(bound)))
            self.plain = tuple((x[0], x[1], x[2]) for x in plan if x and not (x[4] or x[5]))
            self.rest = tuple(x for x in plan if x and (x[4] or x[5]))
            self.params, self.roles = params, bound
        return self


_plans = _Plans()


def validate(
    snapshot: Snapshot, state: ValidationState, params: ControlParams, now: float
) -> tuple[Inputs, ValidationState]:
    """Judge every point; combine redundant points of a role into their worst good value.

    The usual case - every point of a role good, a float, plausible, fresh and not frozen -
    is taken on a short path; anything else gets the full judgement of :meth:`_Judge.judge`.
    """
    vp = params.validation
    oldest = now - vp.stale_after_s
    newest = now + vp.future_tolerance_s
    frozen_after = vp.frozen_after_s or 0.0
    old = state.trackers
    values: dict[str, float] = {}
    trackers: dict[str, tuple[Tracker, ...]] = {}
    invalid: dict[str, str] = {}
    judge: _Judge | None = None
    signals = snapshot.signals
    sampled = type(signals) is SampledSignals
    found = _plans.get(params, tuple(signals.readings if sampled else signals))  # type: ignore[attr-defined]

    if sampled and oldest <= signals.now <= newest:  # type: ignore[attr-defined]
        # Plain readings with one fresh timestamp: a float reading is a good point.
        readings = signals.readings
        good = _all_sampled_good(found, readings, old, now, frozen_after,
                                 vp.rack_inlet_min_good)
        if good is not None:
            return _new_inputs(good[0], invalid, found.missing), _new_state(good[1])
        for plan, v in zip(found.plan, readings.values(), strict=True):
            if plan is None:
                continue
            role, lo, hi, _, track, rack = plan
            if type(v) is float:
                if lo <= v <= hi and not rack:
                    if not track:
                        values[role] = v
                        continue
                    if _track_one(role, v, old, trackers, now, frozen_after):
                        values[role] = v
                        continue
            elif (type(v) is tuple and v and _plausible(v, lo, hi)
                  and _take_all(plan, v, old, trackers, values, now, frozen_after,
                                vp.rack_inlet_min_good)):
                continue
            judge = judge or _Judge(now, oldest, newest, frozen_after, vp.rack_inlet_min_good,
                                    old, trackers, values, invalid)
            judge.judge(plan, signals[role])
    else:
        for plan, points in zip(found.plan, signals.values(), strict=True):
            if plan is None:
                continue  # not an input role (an output echoed back, or a typo the loader missed)
            role, lo, hi, _, track, rack = plan
            if len(points) == 1:
                sig = points[0]
                x = sig.value
                if (sig.good and type(x) is float and lo <= x <= hi and oldest <= sig.ts <= newest
                        and not rack):
                    if not track:
                        values[role] = x
                        continue
                    if _track_one(role, x, old, trackers, now, frozen_after):
                        values[role] = x
                        continue
            elif points:
                good = _all_good(points, lo, hi, oldest, newest)
                if good is not None and _take_all(plan, good, old, trackers, values, now,
                                                  frozen_after, vp.rack_inlet_min_good):
                    continue
            judge = judge or _Judge(now, oldest, newest, frozen_after, vp.rack_inlet_min_good,
                                    old, trackers, values, invalid)
            judge.judge(plan, points)

    return _new_inputs(values, invalid, found.missing), _new_state(trackers)


class _Judge:
    """The full judgement of a role's points, into one validation pass's results."""

    __slots__ = ("frozen_after", "invalid", "min_good", "newest", "now", "old", "oldest",
                 "trackers", "values")

    def __init__(self, now: float, oldest: float, newest: float, frozen_after: float,
                 min_good: int | None, old: Mapping[str, tuple[Tracker, ...]],
                 trackers: dict[str, tuple[Tracker, ...]], values: dict[str, float],
                 invalid: dict[str, str]) -> None:
        self.now, self.oldest, self.newest = now, oldest, newest
        self.frozen_after, self.min_good, self.old = frozen_after, min_good, old
        self.trackers, self.values, self.invalid = trackers, values, invalid

    def judge(self, plan: Plan, points: Sequence[Signal]) -> None:
        """Every point of a role on its own: bad, not a number, NaN, out of range, stale,
        from the future or frozen; the role's value is the worst of the good ones."""
        role, lo, hi, high, track, rack = plan
        now, oldest, newest, frozen_after = self.now, self.oldest, self.newest, self.frozen_after
        prev_tr = self.old.get(role, ()) if track else ()
        new_tr: list[Tracker] = []
        best: float | None = None
        n_good = 0
        reason: str | None = None
        i = -1
        for sig in points:
            i += 1
            x = sig.value
            why: str | None = None
            if not sig.good or x is None:
                why = sig.reason or "bad"
            else:
                if type(x) is not float:
                    try:
                        x = float(x)
                    except (TypeError, ValueError):
                        x, why = 0.0, "not a number"
                ts = sig.ts
                if why is not None:
                    pass
                elif not lo <= x <= hi:  # NaN fails this too
                    why = "nan" if x != x else "out of range"
                elif not ts >= oldest:  # a NaN timestamp is stale too
                    why = "stale"
                elif ts > newest:
                    why = "timestamp in the future"
            if track:
                last = prev_tr[i] if i < len(prev_tr) else None
                if why is None and (last is None or last[0] != x):
                    last = (x, now)
                elif why is None and now - last[1] >= frozen_after:  # type: ignore[index]
                    why = "frozen"
                new_tr.append(last if last is not None else (_NAN, now))
            if why is not None:
                reason = why if len(points) == 1 else f"point {i}: {why}"
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
        if rack and n_good < (self.min_good or len(points)):
            return
        self.values[role] = best


def _all_sampled_good(
    plans: _Plans, readings: Mapping[str, object], old: Mapping[str, tuple[Tracker, ...]],
    now: float, frozen_after: float, min_good: int | None,
) -> tuple[dict[str, float], dict[str, tuple[Tracker, ...]]] | None:
    """(values, trackers) when every input reading is good - the usual cycle - else None,
    and the caller judges every role in snapshot order as for any other snapshot."""
    values: dict[str, float] = {}
    for role, lo, hi in plans.plain:
        v = readings[role]
        if type(v) is not float or not lo <= v <= hi:  # type: ignore[operator]
            return None
        values[role] = v
    trackers: dict[str, tuple[Tracker, ...]] = {}
    for plan in plans.rest:
        role, lo, hi, high, track, rack = plan
        v = readings[role]
        if type(v) is float:
            if not lo <= v <= hi or rack:  # type: ignore[operator]
                return None
            if track:
                prev = old.get(role, ())
                last = prev[0] if prev else None
                if last is None or last[0] != v:
                    trackers[role] = ((v, now),)  # type: ignore[assignment]
                elif now - last[1] < frozen_after:
                    trackers[role] = prev if len(prev) == 1 else (last,)
                else:
                    return None  # frozen
            values[role] = v  # type: ignore[assignment]
            continue
        if type(v) is not tuple or not v:
            return None
        prev = old.get(role, ()) if track else ()
        n = len(prev)
        tracked: list[Tracker] = []
        i = 0
        for x in v:
            if type(x) is not float or not lo <= x <= hi:
                return None
            if track:
                last = prev[i] if i < n else None
                if last is None or last[0] != x:
                    last = (x, now)
                elif now - last[1] >= frozen_after:
                    return None  # frozen
                tracked.append(last)
                i += 1
        if track:
            trackers[role] = tuple(tracked)
        if not rack or len(v) >= (min_good or len(v)):
            values[role] = max(v) if high else min(v)  # type: ignore[assignment]
    return values, trackers


def _take_all(plan: Plan, good: Sequence[float], old: Mapping[str, tuple[Tracker, ...]],
              trackers: dict[str, tuple[Tracker, ...]], values: dict[str, float], now: float,
              frozen_after: float, min_good: int | None) -> bool:
    """Several good float points: their worst counts, unless one of them is frozen."""
    role, _, _, high, track, rack = plan
    if track:
        prev = old.get(role, ())
        n = len(prev)
        tracked: list[Tracker] = []
        for i, x in enumerate(good):
            last = prev[i] if i < n else None
            if last is None or last[0] != x:
                last = (x, now)
            elif now - last[1] >= frozen_after:
                return False
            tracked.append(last)
        trackers[role] = tuple(tracked)
    if not rack or len(good) >= (min_good or len(good)):
        values[role] = max(good) if high else min(good)
    return True


def _track_one(role: str, x: float, old: Mapping[str, tuple[Tracker, ...]],
               trackers: dict[str, tuple[Tracker, ...]], now: float, frozen_after: float) -> bool:
    """Track one good point; False (and nothing tracked) if it is frozen."""
    prev = old.get(role, ())
    last = prev[0] if prev else None
    if last is None or last[0] != x:
        trackers[role] = ((x, now),)
        return True
    if now - last[1] < frozen_after:
        trackers[role] = prev if len(prev) == 1 else (last,)
        return True
    return False


def _plausible(readings: tuple[object, ...], lo: float, hi: float) -> bool:
    """Every reading a float within the role's range (a loop: all() would build a generator
    per role per cycle)."""
    for x in readings:  # noqa: SIM110
        if type(x) is not float or not lo <= x <= hi:
            return False
    return True


def _all_good(
    points: Sequence[Signal], lo: float, hi: float, oldest: float, newest: float
) -> list[float] | None:
    """The values of ``points`` if every one is a good, plausible, fresh float, else None."""
    good: list[float] = []
    for sig in points:
        x = sig.value
        if not (sig.good and type(x) is float and lo <= x <= hi and oldest <= sig.ts <= newest):
            return None
        good.append(x)
    return good
