"""Property test: the step hands the optimiser's heat request to ``propose`` instead of
keeping it in a state first, and gets the very proposal and state the two-call form
(``want_heat``, then ``propose``) gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from heatd.control import roles as R
from heatd.control.optimiser import OptState, propose, request_heat, want_heat
from heatd.control.params import ControlParams

OP = ControlParams().optimiser
maybe = st.one_of(st.none(), st.floats(min_value=-0.5, max_value=1.5))

values = st.fixed_dictionaries({}, optional={
    R.COOLANT_SUPPLY_TEMP: st.floats(min_value=0.0, max_value=50.0),
    R.COOLANT_RETURN_TEMP: st.floats(min_value=0.0, max_value=50.0),
    R.DH_DEMAND: st.floats(min_value=0.0, max_value=150.0),
    R.STORAGE_TOP_TEMP: st.floats(min_value=40.0, max_value=90.0),
    R.IT_POWER: st.floats(min_value=0.0, max_value=120.0),
    R.HP_HEAT: st.floats(min_value=0.0, max_value=120.0),
    R.HP_POWER: st.floats(min_value=0.0, max_value=40.0),
})
states = st.builds(OptState, st.booleans(), st.one_of(st.none(), st.floats(0.0, 500.0)),
                   maybe, maybe, maybe, maybe, st.floats(min_value=0.0, max_value=150.0))


@given(values, states, st.booleans(), st.booleans(), st.floats(0.0, 1.0), st.floats(0.0, 1.0),
       st.floats(0.0, 10.0), st.floats(0.0, 1000.0))
def test_a_request_handed_over_proposes_as_a_request_kept(
        vals: dict[str, float], opt: OptState, enabled: bool, running: bool, prev_fan: float,
        prev_cap: float, dt: float, now: float) -> None:
    kept = want_heat(vals, opt, OP, now)
    two_calls = propose(vals, enabled, running, prev_fan, prev_cap, 0.1, 0.9, kept, OP, 0.2, dt)
    handed = propose(vals, enabled, running, prev_fan, prev_cap, 0.1, 0.9, opt, OP, 0.2, dt,
                     request_heat(vals, opt, OP, now))
    assert handed == two_calls
    assert handed[1].target_kw == kept.target_kw and handed[1].want is kept.want
