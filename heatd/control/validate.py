"""Input validation: turn raw signals into known values or an explicit "unknown".

A bad, stale, implausible, NaN or frozen signal is never a number here; it is absent from
``Inputs.values`` and its reason is kept, so the envelope can treat it as worst case and
the daemon can say why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from heatd.control import roles
from heatd.control.frozen import maker
from heatd.control.params import ControlParams
from heatd.control.signals import Signal, Snapshot

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

_missing_cache: dict[frozenset[str], tuple[str, ...]] = {}
_missing_last = [(frozenset[str](), tuple(sorted(_KNOWN_INPUTS)))]
"""The last answer, checked first: a site's snapshots bind the same roles every cycle."""


def _missing(signals: Mapping[str, object]) -> tuple[str, ...]:
    """Input roles the site does not bind (memoised: a site's bindings rarely change)."""
    bound, found = _missing_last[0]
    if signals.keys() == bound:
        return found
    bound = frozenset(signals)
    cached = _missing_cache.get(bound)
    if cached is None:
        cached = tuple(sorted(_KNOWN_INPUTS - bound))
        if len(_missing_cache) < 64:
            _missing_cache[bound] = cached
    _missing_last[0] = (bound, cached)
    return cached


def validate(
    snapshot: Snapshot, state: ValidationState, params: ControlParams, now: float
) -> tuple[Inputs, ValidationState]:
    """Judge every point; combine redundant points of a role into their worst good value."""
    vp = params.validation
    oldest = now - vp.stale_after_s
    newest = now + vp.future_tolerance_s
    frozen_after = vp.frozen_after_s or 0.0
    specs = params.role_specs
    old_trackers = state.trackers
    trackers: dict[str, tuple[Tracker, ...]] = {}
    values: dict[str, float] = {}
    invalid: dict[str, str] = {}
    signals = snapshot.signals

    for role, points in signals.items():
        spec = specs.get(role)
        if spec is None:
            continue  # not an input role (an output echoed back, or a typo the loader missed)
        lo, hi, high, track = spec
        if len(points) == 1 and role != _RACK:
            # One point, the common case: a good reading is the role's value. Anything
            # else (bad, not a float, out of range, stale, frozen) takes the full path.
            sig = points[0]
            x = sig.value
            if sig.good and type(x) is float and lo <= x <= hi and oldest <= sig.ts <= newest:
                if not track:
                    values[role] = x
                    continue
                prev_tr = old_trackers.get(role, ())
                last = prev_tr[0] if prev_tr else None
                if last is None or last[0] != x:
                    trackers[role] = ((x, now),)
                    values[role] = x
                    continue
                if now - last[1] < frozen_after:
                    trackers[role] = prev_tr if len(prev_tr) == 1 else (last,)
                    values[role] = x
                    continue
        elif points:
            # Several points, all good (the usual case): the worst of them counts.
            good = _all_good(points, lo, hi, oldest, newest)
            if good is not None:
                prev_tr = old_trackers.get(role, ()) if track else ()
                tracked = _track_all(good, prev_tr, now, frozen_after) if track else ()
                if tracked is not None:
                    if track:
                        trackers[role] = tracked
                    if role != _RACK or len(good) >= (vp.rack_inlet_min_good or len(good)):
                        values[role] = max(good) if high else min(good)
                    continue
        prev_tr = old_trackers.get(role, ()) if track else ()
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
            trackers[role] = tuple(new_tr)
        if reason is not None:
            invalid[role] = reason
        if best is None:
            if not points:
                invalid[role] = "no points"
            continue
        if role == _RACK and n_good < (vp.rack_inlet_min_good or len(points)):
            continue
        values[role] = best

    return _new_inputs(values, invalid, _missing(signals)), ValidationState(trackers)


def _all_good(
    points: tuple[Signal, ...], lo: float, hi: float, oldest: float, newest: float
) -> list[float] | None:
    """The values of ``points`` if every one is a good, plausible, fresh float, else None."""
    good: list[float] = []
    for sig in points:
        x = sig.value
        if not (sig.good and type(x) is float and lo <= x <= hi and oldest <= sig.ts <= newest):
            return None
        good.append(x)
    return good


def _track_all(
    good: list[float], prev: tuple[Tracker, ...], now: float, frozen_after: float
) -> tuple[Tracker, ...] | None:
    """New change trackers for all-good points, or None if one of them is frozen."""
    n = len(prev)
    out: list[Tracker] = []
    for i, x in enumerate(good):
        last = prev[i] if i < n else None
        if last is None or last[0] != x:
            last = (x, now)
        elif now - last[1] >= frozen_after:
            return None
        out.append(last)
    return tuple(out)
