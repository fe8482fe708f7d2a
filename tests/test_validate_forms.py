"""Property test: validation judges the daemon's and the co-simulator's snapshots alike.

The daemon freezes Signals (value, quality, timestamp per point); the co-simulator samples
plain readings at one instant (:class:`SampledSignals`, also built by ``from_values`` and
``heatd.hil.cosim.SnapshotBuilder``). Both must go through the same rule, so the same readings in
either form give the same ``Inputs`` and ``ValidationState`` cycle after cycle: good, out
of range, NaN, infinite, missing and non-float readings, single and redundant points, the
rack inlet role, stale and future samples, and values held until they are frozen.
"""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from heatd.control import roles as R
from heatd.control.params import ControlParams
from heatd.control.signals import NO_VALUE, SampledSignals, Signal, Snapshot
from heatd.control.validate import Inputs, ValidationState, validate

FROZEN_AFTER_S = 4.0
STALE_AFTER_S = 10.0
FUTURE_S = 5.0

ROLES = (
    R.COOLANT_SUPPLY_TEMP,  # frozen-checked, worst is high
    R.COOLANT_RETURN_TEMP,  # frozen-checked
    R.COOLANT_FLOW,
    R.IT_POWER,
    R.HP_RUNNING,
    R.OUTDOOR_TEMP,
    R.DRYCOOLER_FAN_ACTUAL,  # a feedback role
    R.RACK_INLET_TEMP,  # several points, each watching a rack
    R.VALVE_RECOVERY,  # an output role: not judged at all
)

reading = st.one_of(
    st.floats(min_value=-5.0, max_value=60.0),  # plausible for every role above but flow
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(allow_nan=True, allow_infinity=True),  # out of range, NaN, inf
    st.sampled_from([-1e6, 1e9, 100.0, 70.0, 0.0, -0.05, 1.05]),  # on and past the bounds
    st.none(),  # a dead point
    st.integers(min_value=-2, max_value=2),  # not a float: judged, converted
)
hold = st.booleans()  # keep last cycle's reading: held long enough, it is frozen
point = st.tuples(hold, reading)
role_reading = st.one_of(point, st.lists(point, min_size=1, max_size=4).map(tuple))
lag = st.one_of(
    st.just(0.0),
    st.floats(min_value=-FUTURE_S - 3.0, max_value=STALE_AFTER_S + 3.0),  # stale or future
)
cycle = st.tuples(
    st.floats(min_value=0.25, max_value=3.0),  # time step
    lag,  # now - sample instant
    st.dictionaries(st.sampled_from(ROLES), role_reading, min_size=1),
)


def _params(min_good: int | None) -> ControlParams:
    return ControlParams.model_validate(
        {
            "validation": {
                "stale_after_s": STALE_AFTER_S,
                "future_tolerance_s": FUTURE_S,
                "frozen_after_s": FROZEN_AFTER_S,
                "rack_inlet_min_good": min_good,
            }
        }
    )


def _resolve(drawn: object, last: object) -> object:
    """A drawn (hold, reading) point, or a tuple of them, against last cycle's reading."""
    if type(drawn) is tuple and drawn and type(drawn[0]) is tuple:
        prev = last if type(last) is tuple else ()
        return tuple(
            _resolve(p, prev[i] if i < len(prev) else None) for i, p in enumerate(drawn)
        )
    held, value = drawn  # type: ignore[misc]
    return last if held and last is not None and type(last) is not tuple else value


def _signals(readings: Mapping[str, object], ts: float) -> dict[str, tuple[Signal, ...]]:
    """The daemon's form of the same readings: one Signal per point, stamped ``ts``."""
    def sig(x: object) -> Signal:
        return Signal(None, False, ts, NO_VALUE) if x is None else Signal(x, True, ts)  # type: ignore[arg-type]

    return {
        role: tuple(sig(x) for x in v) if type(v) is tuple else (sig(v),)
        for role, v in readings.items()
    }


def _canon(inputs: Inputs, state: ValidationState) -> str:
    """Both results as one text, key order aside (a NaN tracker equals itself in text)."""
    return repr((sorted(inputs.values.items()), sorted(inputs.invalid.items()),
                 inputs.missing, sorted(state.trackers.items())))


@settings(max_examples=400, deadline=None)
@given(st.lists(cycle, min_size=1, max_size=12), st.sampled_from([None, 1, 2, 3]))
def test_every_snapshot_form_validates_alike(
    cycles: list[tuple[float, float, dict[str, object]]], min_good: int | None
) -> None:
    params = _params(min_good)
    now = 1_000.0
    last: dict[str, object] = {}
    states: list[ValidationState] = [ValidationState()] * 3
    for dt, behind, drawn in cycles:
        now += dt
        at = now - behind
        readings = {role: _resolve(v, last.get(role)) for role, v in drawn.items()}
        last.update(readings)
        forms = (
            Snapshot(now, _signals(readings, at)),
            Snapshot(now, SampledSignals(at, readings)),
            Snapshot.from_values(at, readings),  # type: ignore[arg-type]
        )
        results: list[tuple[Inputs, ValidationState]] = [
            validate(snap, state, params, now)
            for snap, state in zip(forms, states, strict=True)
        ]
        first = _canon(*results[0])
        for other in results[1:]:
            assert _canon(*other) == first
        states = [state for _, state in results]
