"""A lost coolant supply reading: estimated from the return, IT power and flow, and, where
the loop cannot say, the worst case with its fans floored by the return."""

from __future__ import annotations

import pytest

from heatd.control import roles as R
from heatd.control.bounds import device_bounds
from heatd.control.core import step
from heatd.control.envelope import EnvelopeState, envelope
from heatd.control.estimate import EstimateState, supply_estimate
from heatd.control.events import Cause
from heatd.control.params import ControlParams
from heatd.control.plain import plain_params
from heatd.control.signals import Snapshot
from heatd.control.state import initial_state
from heatd.control.validate import ValidationState, validate

P = ControlParams()
W = 25.0
"""The loop's heat capacity rate, kW/K: 100 kW of IT warm it by 4 K."""


def loop(now: float, supply: float | None = 35.0, it: float | None = 100.0,
         **over: object) -> Snapshot:
    """A loop in balance: the return is the supply plus IT / W, readings never sit still."""
    wobble = 0.05 * (now % 3)
    sup = 35.0 + wobble
    values: dict[str, object] = {
        R.COOLANT_SUPPLY_TEMP: None if supply is None else supply + wobble,
        R.COOLANT_RETURN_TEMP: sup + (100.0 if it is None else it) / W,
        R.COOLANT_FLOW: W / 4.18, R.IT_POWER: it,
        R.HP_RUNNING: 1.0, R.HP_FAULT: 0.0, R.HP_TRIP_CODE: 0.0,
        R.DH_DEMAND: 80.0, R.HP_HEAT: 60.0, R.HP_POWER: 17.0,
    }  # fmt: skip
    values.update({k.replace("__", "."): v for k, v in over.items()})
    return Snapshot.from_values(now, values)  # type: ignore[arg-type]


def drive(seconds: range, state=None, **over: object):
    state = state or initial_state(0.0)
    out = []
    for t in seconds:
        d = step(loop(float(t), **over), state, P, float(t))
        out.append(d)
        state = d.state
    return out, state


def test_a_lost_supply_runs_on_its_estimate_flagged_and_recovery_goes_on() -> None:
    learned, state = drive(range(0, 900))
    assert not learned[-1].estimated
    lost, state = drive(range(900, 1500), state, supply=None)
    for d in lost:
        est = d.estimated[R.COOLANT_SUPPLY_TEMP]
        # return - spread + the 1 K margin: on the warm side, never above the return
        assert 35.0 + 1.0 - 0.01 <= est <= 35.1 + 1.0 + 0.01
        assert not any(x.cause is Cause.INPUT_UNKNOWN for x in d.limits)
        assert d.bounds.hp_run and d.bounds.valve_max == 1.0
        assert d.cooling_margin == pytest.approx(P.envelope.supply_limit_c - est)
        assert d.summary()["estimated"] == {R.COOLANT_SUPPLY_TEMP: est}
    assert lost[-1].setpoints.hp_enable
    first = [e for e in lost[0].events if e.cause is Cause.SUPPLY_ESTIMATED]
    assert [(e.old, e.new) for e in first] == [("measured", "estimated")]
    # The IT load unknown as well: nothing to estimate from, the worst case.
    blind, state = drive(range(1500, 1502), state, supply=None, it=None)
    assert not blind[-1].estimated and not blind[-1].bounds.hp_run
    assert [(e.old, e.new) for e in blind[0].events
            if e.cause is Cause.SUPPLY_ESTIMATED] == [("estimated", "measured")]


def test_the_estimate_scales_with_the_load_and_errs_warm_on_a_load_step() -> None:
    """Twice the load, the return twice as far above the supply: the estimate follows,
    and right after a step up (the return not yet risen) it takes the old load."""
    p = plain_params.of(P).envelope
    state = EstimateState()
    for t in range(0, 600):
        inp, _ = validate(loop(float(t)), ValidationState(), P, float(t))
        _, state = supply_estimate(inp, state, p, float(t))
    inp, _ = validate(loop(600.0, supply=None, it=200.0), ValidationState(), P, 600.0)
    est, after = supply_estimate(inp, state, p, 600.0)
    ret = inp.values[R.COOLANT_RETURN_TEMP]
    assert est is not None and est == pytest.approx(ret - 100.0 / W + 1.0, abs=0.1)
    assert after.it is not None and after.it < 110.0
    # a return that tells only a spread under the margin: the estimate is the return
    inp, _ = validate(loop(601.0, supply=None, it=10.0), ValidationState(), P, 601.0)
    est, _ = supply_estimate(inp, after, p, 601.0)
    assert est is not None and est <= inp.values[R.COOLANT_RETURN_TEMP]
    # air as warm as the return: the dry cooler may add heat, no bound, no estimate
    hot = loop(602.0, supply=None, outdoor__temp=40.0)
    inp, _ = validate(hot, ValidationState(), P, 602.0)
    assert supply_estimate(inp, after, p, 602.0)[0] is None
    # an outdoor transmitter that is bound but not known could be as warm: no estimate
    for bad in (float("nan"), 999.0):
        inp, _ = validate(loop(603.0, supply=None, outdoor__temp=bad), ValidationState(),
                          P, 603.0)
        assert R.OUTDOOR_TEMP in inp.invalid
        assert supply_estimate(inp, after, p, 603.0)[0] is None
    # one that is not bound at all: the site said nothing of its air, the estimate stands
    inp, _ = validate(loop(603.0, supply=None), ValidationState(), P, 603.0)
    assert supply_estimate(inp, after, p, 603.0)[0] is not None


def test_a_stuck_supply_reading_teaches_the_estimate_nothing() -> None:
    p = plain_params.of(P).envelope
    state = EstimateState()
    for t in range(0, 600):
        inp, _ = validate(loop(float(t)), ValidationState(), P, float(t))
        _, state = supply_estimate(inp, state, p, float(t))
    ratio = state.ratio
    for t in range(600, 1200):  # the reading stands still while the loop warms by 3 K
        snap = loop(float(t), coolant__supply_temp=35.0,
                    coolant__return_temp=39.0 + 3.0 * (t - 600) / 600)
        inp, _ = validate(snap, ValidationState(), P, float(t))
        _, state = supply_estimate(inp, state, p, float(t))
    assert state.ratio == ratio


def test_unlearned_or_switched_off_the_estimate_is_not_used() -> None:
    short, _ = drive(range(0, 100))
    lost, _ = drive(range(100, 102), short[-1].state, supply=None)
    assert not lost[-1].estimated and not lost[-1].bounds.hp_run  # learned 100 s < 300 s
    off = ControlParams.model_validate({"envelope": {"supply_estimate": False}})
    state = initial_state(0.0)
    for t in range(0, 900):
        state = step(loop(float(t)), state, off, float(t)).state
    d = step(loop(900.0, supply=None), state, off, 900.0)
    assert not d.estimated and not d.bounds.hp_run


def _worst(ret: float | None):
    snap = loop(100.0, supply=None, it=None, coolant__return_temp=ret)
    inp, _ = validate(snap, ValidationState(), P, 100.0)
    prev = device_bounds().admit(0.5, 0.2, True, 0.6, False, True, 0.2)
    return envelope(inp, prev, EnvelopeState(), P, 100.0).bounds


def test_the_worst_case_for_a_lost_supply_has_its_fans_floored_by_the_return() -> None:
    """The return bounds the supply from above: at or below the coolant's low limit the
    fans may stop, from the margin band up they run full; recovery is out either way."""
    env = P.envelope
    band = env.supply_limit_c - env.supply_margin_k
    for ret, fan in ((env.supply_low_c - 5.0, 0.0), (env.supply_low_c, 0.0),
                     ((env.supply_low_c + band) / 2, 0.5), (band, 1.0), (band + 4.0, 1.0),
                     (None, 1.0)):
        b = _worst(ret)
        assert b.fan_min == pytest.approx(fan), ret
        assert (b.valve_max, b.cap_max, b.hp_start, b.hp_run) == (0.0, 0.0, False, False)


def test_the_low_limit_sits_below_the_band() -> None:
    with pytest.raises(ValueError, match="supply_low_c"):
        ControlParams.model_validate({"envelope": {"supply_low_c": 42.0}})


def test_one_dead_rack_transmitter_of_several_is_ridden_on_the_measured_supply() -> None:
    """All but one rack point known: the racks are known while the supply is measured;
    with the supply estimated too, the dead rack point is the worst case again."""
    dead = (20.0, None, 21.0)
    _, state = drive(range(0, 900), rack__inlet_temp=(20.0, 21.0, 21.5))
    one, state = drive(range(900, 902), state, rack__inlet_temp=dead)
    assert one[-1].invalid[R.RACK_INLET_TEMP] == "point 1: no value"
    assert one[-1].bounds.hp_run and one[-1].limits == ()
    both, _ = drive(range(902, 904), state, supply=None, rack__inlet_temp=dead)
    assert not both[-1].bounds.hp_run
    assert any(x.role == R.RACK_INLET_TEMP and x.cause is Cause.INPUT_UNKNOWN
               for x in both[-1].limits)


def test_a_supply_no_longer_in_the_snapshot_does_not_vouch_for_the_racks() -> None:
    """The supply role gone from the snapshot altogether (no point, not a bad one) is no
    more measured than a dead one: run on its estimate, the dead rack point is the worst
    case all the same."""
    dead = (20.0, None, 21.0)
    _, state = drive(range(0, 900), rack__inlet_temp=(20.0, 21.0, 21.5))
    for t in (900.0, 901.0):
        snap = loop(t, rack__inlet_temp=dead)
        gone = Snapshot(t, {r: s for r, s in snap.signals.items()
                            if r != R.COOLANT_SUPPLY_TEMP})
        decision = step(gone, state, P, t)
        state = decision.state
    assert R.COOLANT_SUPPLY_TEMP in decision.estimated
    assert not decision.bounds.hp_run
    assert decision.setpoints.fan == 1.0
    assert any(x.role == R.RACK_INLET_TEMP and x.cause is Cause.INPUT_UNKNOWN
               for x in decision.limits)


def _winter_night(control: dict[str, object] | None = None):
    """A January night in Chicago (-16 degC): the supply transmitter drops out for an hour."""
    from heatd.hil.cosim import simulate
    from heatd.hil.kpi import kpi_config
    from heatd.hil.scenario import scenario_from_dict
    from heatd.hil.score import make_controller, site_control

    sc = scenario_from_dict({
        "name": "winter_night_dropout", "weather": "chicago", "start_hour": 384,
        "duration_h": 6, "seed": 3,
        "faults": [{"kind": "sensor_dropout", "target": "coolant_supply_temp",
                    "start_s": 7200, "duration_s": 3600}],
    })  # fmt: skip
    params = site_control(sc.params)
    if control:
        data = params.model_dump()
        for section, values in control.items():
            data[section].update(values)  # type: ignore[call-overload]
        params = ControlParams.model_validate(data, strict=False)
    r = simulate(sc, make_controller("heatd", sc.params, params), kpi=kpi_config(sc.params),
                 trace_points=400)
    assert r.trace is not None
    return r.kpis, min(r.trace["supply_c"])


def test_a_winter_night_without_the_supply_reading_keeps_recovering() -> None:
    kpis, coldest = _winter_night()
    assert kpis.supply_over_limit_s == 0.0
    assert kpis.hp_off_h < 0.1 and kpis.hp_starts == 1  # the heat pump ran through
    assert coldest > 15.0


def test_without_an_estimate_the_worst_case_does_not_chill_the_loop_out_of_range() -> None:
    """The worst case's fans follow the return, so the loop stays inside its transmitters'
    range and the reading that comes back is believed: recovery starts again."""
    kpis, coldest = _winter_night({"envelope": {"supply_estimate": False}})
    lo = R.DEFAULT_RANGES[R.COOLANT_SUPPLY_TEMP][0]
    assert kpis.supply_over_limit_s == 0.0
    assert coldest > lo + 5.0
    assert kpis.hp_off_h < 1.5  # out for the hour without its reading, no longer
