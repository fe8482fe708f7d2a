"""Unit tests of each control layer: validation, envelope, sequencer, optimiser, params."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
from pydantic import ValidationError

from heatd.control import roles as R
from heatd.control.bounds import SAFE_SETPOINTS, Bounds, Setpoints, device_bounds
from heatd.control.commands import reset_heat_pump
from heatd.control.core import step
from heatd.control.envelope import EnvelopeState, envelope
from heatd.control.events import Cause
from heatd.control.optimiser import RESET, cold_fade, propose, want_heat
from heatd.control.params import ControlParams
from heatd.control.sequencer import HpState
from heatd.control.signals import Signal, Snapshot
from heatd.control.state import initial_state
from heatd.control.validate import ValidationState, validate

P = ControlParams()
FAST = ControlParams.model_validate(
    {
        "sequencer": {
            "min_on_s": 60.0, "min_off_s": 30.0, "max_starts_per_hour": 2,
            "starts_window_s": 600.0, "reset_cooldown_s": 20.0, "max_resets_per_hour": 2,
            "resets_window_s": 600.0, "reset_pulse_s": 2.0, "start_timeout_s": 10.0,
        },
        "optimiser": {"start_delay_s": 0.0, "stop_delay_s": 0.0},
        "envelope": {"rise_window_s": 10.0},
    }
)  # fmt: skip


def healthy(now: float, **over: object) -> Snapshot:
    values: dict[str, object] = {
        R.COOLANT_SUPPLY_TEMP: 38.0 + 0.01 * (now % 3),  # real sensors never sit still
        R.HP_RUNNING: 0.0, R.HP_FAULT: 0.0, R.HP_TRIP_CODE: 0.0,
        R.IT_POWER: 100.0, R.DH_DEMAND: 80.0, R.HP_HEAT: 0.0, R.HP_POWER: 0.0,
    }  # fmt: skip
    values.update({k.replace("__", "."): v for k, v in over.items()})
    return Snapshot.from_values(now, values)  # type: ignore[arg-type]


def run(params: ControlParams, seconds: int, t0: float = 0.0, state=None, echo: bool = True,
        **over: object):
    """Drive the core once a second; the heat pump's running feedback follows its enable."""
    state = state or initial_state(t0)
    running = float(state.setpoints.hp_enable)
    decisions = []
    for k in range(1, seconds + 1):
        now = t0 + k
        extra = dict(over)
        extra.setdefault("hp__running", running)
        extra.setdefault("hp__heat", 60.0 * running)
        d = step(healthy(now, **extra), state, params, now)
        decisions.append(d)
        state = d.state
        if echo:
            running = float(d.setpoints.hp_enable)
    return decisions


# --- validation ---------------------------------------------------------------------------


def _v(signals: dict[str, tuple[Signal, ...]], now: float = 100.0, params=P, state=None):
    return validate(Snapshot(now, signals), state or ValidationState(), params, now)


def test_validation_rejects_stale_nan_range_future_and_bad_points() -> None:
    inp, _ = _v({
        R.COOLANT_SUPPLY_TEMP: (Signal(38.0, True, 100.0 - 11.0),),
        R.COOLANT_RETURN_TEMP: (Signal(math.nan, True, 100.0),),
        R.IT_POWER: (Signal(-5.0, True, 100.0),),
        R.DH_DEMAND: (Signal(10.0, True, 200.0),),
        R.HP_FAULT: (Signal.bad("timeout", 100.0),),
        R.OUTDOOR_TEMP: (Signal(3.0, True, 95.0),),
    })  # fmt: skip
    assert inp.values == {R.OUTDOOR_TEMP: 3.0}
    assert inp.invalid == {
        R.COOLANT_SUPPLY_TEMP: "stale", R.COOLANT_RETURN_TEMP: "nan",
        R.IT_POWER: "out of range", R.DH_DEMAND: "timestamp in the future",
        R.HP_FAULT: "timeout",
    }  # fmt: skip
    assert R.STORAGE_TOP_TEMP in inp.missing and R.OUTDOOR_TEMP not in inp.missing


def test_redundant_points_resolve_to_the_worst_case_for_cooling() -> None:
    inp, _ = _v({
        R.COOLANT_SUPPLY_TEMP: (Signal(38.0, True, 100.0), Signal(41.5, True, 100.0),
                                Signal.bad("timeout", 100.0)),
        R.COOLANT_FLOW: (Signal(20.0, True, 100.0), Signal(12.0, True, 100.0)),
    })  # fmt: skip
    assert inp.values[R.COOLANT_SUPPLY_TEMP] == 41.5  # hottest counts
    assert inp.values[R.COOLANT_FLOW] == 12.0  # lowest flow counts
    assert inp.invalid[R.COOLANT_SUPPLY_TEMP] == "point 2: timeout"


def test_rack_inlets_are_known_with_all_but_one_rack_watched_unless_configured() -> None:
    racks = {R.RACK_INLET_TEMP: (Signal(24.0, True, 100.0), Signal.bad("timeout", 100.0),
                                 Signal(25.0, True, 100.0))}
    inp, _ = _v(racks)
    assert inp.values[R.RACK_INLET_TEMP] == 25.0
    assert inp.invalid[R.RACK_INLET_TEMP] == "point 1: timeout"  # the envelope sees it
    two_dead = {R.RACK_INLET_TEMP: (*racks[R.RACK_INLET_TEMP][:2], Signal.bad("x", 100.0))}
    assert R.RACK_INLET_TEMP not in _v(two_dead)[0].values
    strict = ControlParams.model_validate({"validation": {"rack_inlet_min_good": 3}})
    assert R.RACK_INLET_TEMP not in _v(racks, params=strict)[0].values
    alone = {R.RACK_INLET_TEMP: (Signal.bad("timeout", 100.0),)}
    assert R.RACK_INLET_TEMP not in _v(alone)[0].values


def test_a_value_that_stops_changing_is_declared_frozen() -> None:
    params = ControlParams.model_validate({"validation": {"frozen_after_s": 30.0}})
    state = ValidationState()
    for t in range(0, 31):
        inp, state = _v({R.COOLANT_SUPPLY_TEMP: (Signal(38.0, True, float(t)),)}, float(t),
                        params, state)
        assert (R.COOLANT_SUPPLY_TEMP in inp.values) == (t < 30)
    assert inp.invalid[R.COOLANT_SUPPLY_TEMP] == "frozen"
    inp, state = _v({R.COOLANT_SUPPLY_TEMP: (Signal(38.1, True, 31.0),)}, 31.0, params, state)
    assert inp.values[R.COOLANT_SUPPLY_TEMP] == 38.1  # moving again: trusted again


WITNESSED = ControlParams.model_validate({"validation": {"frozen_after_s": 30.0}})


def _loop(t: float, supply: float, racks: tuple[float, ...], it_kw: float = 200.0
          ) -> dict[str, tuple[Signal, ...]]:
    """A loop with its witnesses measured: supply, return, IT power and the rack inlets."""
    return {R.COOLANT_SUPPLY_TEMP: (Signal(supply, True, t),),
            R.COOLANT_RETURN_TEMP: (Signal(supply + 5.0, True, t),),
            R.IT_POWER: (Signal(it_kw, True, t),),
            R.RACK_INLET_TEMP: tuple(Signal(x, True, t) for x in racks)}


def _frozen_from(readings, params=WITNESSED) -> dict[str, float]:
    """Drive validation once a second over ``readings(t)``: role -> first frozen instant."""
    state, first = ValidationState(), {}
    for t in range(0, 121):
        inp, state = _v(readings(float(t)), float(t), params, state)
        for role, why in inp.invalid.items():
            if "frozen" in why:
                first.setdefault(role, float(t))
    return first


def test_a_quiet_reading_on_a_steady_loop_is_not_frozen() -> None:
    """0.1 K transmitters on a loop held inside its deadband: the supply ticks by one
    resolution step, the return and the rack inlets read the same for hours."""
    def quiet(t: float):
        signals = _loop(t, 40.0 + 0.1 * (int(t) // 7 % 2), (41.2, 42.7))
        signals[R.COOLANT_RETURN_TEMP] = (Signal(45.0, True, t),)
        return signals
    assert _frozen_from(quiet) == {}
    state = ValidationState()
    for t in range(0, 121):
        inp, state = _v(quiet(float(t)), float(t), WITNESSED, state)
    assert inp.values[R.RACK_INLET_TEMP] == 42.7
    assert inp.values[R.COOLANT_RETURN_TEMP] == 45.0


def test_a_stuck_rack_point_is_frozen_when_the_supply_moved_as_soon_as_before() -> None:
    def drifting(t: float):  # the supply warms 1 K over the first 20 s; rack 1 is stuck
        supply = 40.0 + min(t, 20.0) * 0.05
        return _loop(t, supply, (supply + 1.2, 42.7))
    first = _frozen_from(drifting)
    old_rule = _frozen_from(drifting, ControlParams.model_validate(
        {"validation": {"frozen_after_s": 30.0, "frozen_witness_k": 1e9,
                        "frozen_witness_load_share": 1.0}}))  # no witness ever moves
    assert first[R.RACK_INLET_TEMP] == 30.0  # unchanged since t=0, the supply moved meanwhile
    assert R.RACK_INLET_TEMP not in old_rule  # ...which is what it took


def test_a_stuck_value_during_a_load_step_is_frozen_even_if_the_step_came_back() -> None:
    def burst(t: float):  # the IT load doubles for 10 s; nothing else moves
        return _loop(t, 40.0, (41.2, 42.7), 400.0 if 5 <= t < 15 else 200.0)
    first = _frozen_from(burst)
    assert first == {R.COOLANT_SUPPLY_TEMP: 30.0, R.COOLANT_RETURN_TEMP: 30.0,
                     R.RACK_INLET_TEMP: 30.0}


def test_a_stuck_supply_is_frozen_when_its_return_moves() -> None:
    def stuck_supply(t: float):
        signals = _loop(t, 40.0, (41.2, 42.7))
        signals[R.COOLANT_RETURN_TEMP] = (Signal(45.0 + 0.02 * t, True, t),)  # 0.6 K by 30 s
        return signals
    first = _frozen_from(stuck_supply)
    assert first[R.COOLANT_SUPPLY_TEMP] == 30.0
    assert R.RACK_INLET_TEMP not in first  # its witness, the supply, did not move


def test_a_frozen_value_without_measured_witnesses_is_judged_by_time_alone() -> None:
    def alone(t: float):
        return {R.COOLANT_RETURN_TEMP: (Signal(45.0, True, t),)}
    assert _frozen_from(alone) == {R.COOLANT_RETURN_TEMP: 30.0}


def test_frozen_witness_settings_are_validated() -> None:
    with pytest.raises(ValidationError):
        ControlParams.model_validate({"validation": {"frozen_witness_k": -0.1}})
    with pytest.raises(ValidationError):
        ControlParams.model_validate({"validation": {"frozen_witness_load_share": 1.5}})


# --- envelope ---------------------------------------------------------------------------


def _env(now: float, prev: Setpoints, state: EnvelopeState | None = None, **over: object):
    inp, _ = validate(healthy(now, **over), ValidationState(), P, now)
    return envelope(inp, prev, state or EnvelopeState((now - 60.0, 38.0), (now - 1, 38.0)),
                    P, now)


def _sp(valve: float, fan: float, cap: float) -> Setpoints:
    return device_bounds().admit(valve, fan, cap > 0, cap, False, True, 0.2)


def test_envelope_normal_leaves_the_whole_device_range() -> None:
    r = _env(100.0, _sp(0.5, 0.3, 0.6))
    b = r.bounds
    assert (b.fan_min, b.valve_max, b.cap_max, b.hp_start, b.hp_run) == (0, 1, 1, True, True)
    assert r.margin == pytest.approx(7.0, abs=0.05) and r.limits == ()


def test_envelope_unknown_supply_is_worst_case() -> None:
    r = _env(100.0, _sp(0.5, 0.3, 0.6), coolant__supply_temp=None)
    b = r.bounds
    assert (b.fan_min, b.valve_max, b.cap_max, b.hp_start, b.hp_run) == (1, 0, 0, False, False)
    assert r.margin is None
    assert {x.name for x in r.limits} == {"fan_min", "valve_max", "hp_capacity_max",
                                          "hp_start", "hp_run"}
    assert all(x.layer == "envelope" for x in r.limits)


def test_envelope_margin_band_drives_recovery_down_and_the_fans_up() -> None:
    """Across the band the dry cooler gets a growing flow share and fan speed, whatever the
    optimiser held before; the heat pump keeps running (it cools the loop too)."""
    prev = _sp(1.0, 0.1, 0.6)
    b = _env(100.0, prev, coolant__supply_temp=43.5).bounds  # half-way into the 3 K margin
    assert b.fan_min == pytest.approx(0.5) and b.valve_max == pytest.approx(0.5)
    assert (b.cap_max, b.hp_start, b.hp_run) == (1.0, True, True)
    b = _env(100.0, _sp(0.3, 0.1, 0.6), coolant__supply_temp=43.5).bounds
    assert b.valve_max == pytest.approx(0.3)  # never back toward recovery inside the band
    b = _env(100.0, prev, coolant__supply_temp=45.0).bounds  # no recovery flow left
    assert (b.fan_min, b.valve_max, b.cap_max) == (1.0, 0.0, P.sequencer.capacity_min)
    assert b.hp_run and not b.hp_start


def test_envelope_rising_fast_holds_recovery() -> None:
    prev = _sp(0.4, 0.2, 0.5)
    state = EnvelopeState((40.0, 36.0), (90.0, 38.0))  # 3 K in 60 s = 3 K/min
    r = _env(100.0, prev, state, coolant__supply_temp=39.0)
    assert r.rise == pytest.approx(0.05)
    assert (r.bounds.valve_max, r.bounds.cap_max, r.bounds.fan_min) == (0.4, 1.0, 0.2)
    assert any(x.cause is Cause.RISING_FAST for x in r.limits)


def test_envelope_rack_inlet_and_fault_bits() -> None:
    prev = _sp(0.4, 0.2, 0.5)
    assert _env(100.0, prev, rack__inlet_temp=[22.0, 27.5]).bounds.fan_min == 1.0
    b = _env(100.0, prev, hp__fault=1.0).bounds  # the supply is known and fine: fans free
    assert (b.valve_max, b.fan_min, b.hp_run) == (0.0, 0.0, False)
    assert _env(100.0, prev, hp__trip_code=12.0).bounds.valve_max == 0.0
    assert _env(100.0, prev, plc__fallback=1.0).bounds.fan_min == 1.0
    b = _env(100.0, prev, hp__lockout=1.0).bounds
    assert (b.valve_max, b.hp_run, b.fan_min) == (0.0, False, 0.0)
    # A known trip code or lockout closes recovery even while the fault bit is unknown.
    for flag in ("hp__trip_code", "hp__lockout"):
        b = _env(100.0, prev, hp__fault=None, **{flag: 1.0}).bounds
        assert (b.valve_max, b.hp_run) == (0.0, False), flag


def test_envelope_declares_a_valve_that_does_not_follow() -> None:
    prev = _sp(0.6, 0.2, 0.5)
    r = _env(100.0, prev, valve__recovery__actual=0.1)
    assert r.bounds.valve_max == 1.0 and r.state.valve_off_since == 100.0
    grace = P.envelope.valve_mismatch_s
    r = _env(100.0 + grace - 1.0, prev, r.state, valve__recovery__actual=0.1)
    assert r.bounds.valve_max == 1.0  # a slow valve (300 s stroke) may still be on its way
    r = _env(100.0 + grace + 1.0, prev, r.state, valve__recovery__actual=0.1)
    assert r.bounds.valve_max == 0.0
    assert any(x.cause is Cause.VALVE_NOT_FOLLOWING for x in r.limits)


def test_a_fan_or_compressor_that_does_not_follow_raises_an_alarm_and_degrades_its_path() -> None:
    prev = _sp(0.6, 0.5, 0.7)
    r = _env(100.0, prev, drycooler__fan__actual=0.0)
    assert r.alarms == () and r.bounds.fan_min == 0.0  # a minute's grace to spin up
    r = _env(161.0, prev, r.state, drycooler__fan__actual=0.0)
    assert r.alarms == (R.DRYCOOLER_FAN,) and r.bounds.fan_min == 1.0
    r = _env(100.0, prev, hp__running=1.0, hp__capacity__actual=0.2)
    r = _env(401.0, prev, r.state, hp__running=1.0, hp__capacity__actual=0.2)
    assert r.alarms == (R.HP_CAPACITY,)
    assert r.bounds.valve_max == prev.valve and not r.bounds.hp_start  # no more flow to it
    r = _env(402.0, prev, r.state, hp__running=1.0, hp__capacity__actual=0.7)
    assert r.alarms == () and r.bounds.valve_max == 1.0


def test_actuator_alarms_are_events_when_they_start_and_clear() -> None:
    ds = run(FAST, 30, drycooler__fan__actual=0.0)  # the fan does not turn
    ds += run(FAST, 100, t0=30.0, state=ds[-1].state, drycooler__fan__actual=0.0)
    raised = [e for d in ds for e in d.events if e.kind == "actuator"]
    assert [(e.subject, e.new) for e in raised] == [(R.DRYCOOLER_FAN, "not following")]
    stuck = ds[-1]
    assert stuck.setpoints.fan == 1.0  # the envelope asks everything of a lame dry cooler
    ds = run(FAST, 5, t0=130.0, state=stuck.state, drycooler__fan__actual=1.0)
    cleared = [e for d in ds for e in d.events if e.kind == "actuator"]
    assert [(e.subject, e.new) for e in cleared] == [(R.DRYCOOLER_FAN, "following")]


def test_losing_contact_with_a_running_heat_pump_does_not_stop_it() -> None:
    """Its own protection still guards it; heatd keeps it running, gives it no more flow
    than it had and does not start a stopped one."""
    ds = run(FAST, 120)
    assert ds[-1].hp_state == HpState.RUNNING
    lost = run(FAST, 60, t0=120.0, state=ds[-1].state, hp__fault=None, hp__running=None,
               hp__trip_code=None, hp__heat=None)
    assert all(d.setpoints.hp_enable for d in lost)
    assert all(d.setpoints.valve <= ds[-1].setpoints.valve + 1e-9 for d in lost)
    assert any(x.name == "hp_start" and x.cause is Cause.HP_OUT_OF_CONTACT
               for x in lost[-1].limits)
    cold = run(FAST, 20, hp__fault=None, hp__running=None, hp__trip_code=None, hp__heat=None)
    assert not any(d.setpoints.hp_enable for d in cold)  # never started blind


def test_bounds_cannot_be_forged_or_widened_and_setpoints_only_come_from_admit() -> None:
    with pytest.raises(TypeError):
        Bounds(object(), 0.0, 1.0, 1.0, True, True)
    with pytest.raises(TypeError):
        Setpoints(object(), 1.0, 0.0, True, 1.0, False)
    b = _env(100.0, _sp(0.5, 0.3, 0.6), coolant__supply_temp=None).bounds
    looser = b.tighten(fan_min=0.0, valve_max=1.0, cap_max=1.0, hp_start=True, hp_run=True)
    assert (looser.fan_min, looser.valve_max, looser.hp_run) == (1.0, 0.0, False)
    with pytest.raises(AttributeError):
        b.valve_max = 1.0  # type: ignore[misc]
    sp = b.admit(1.0, 0.0, True, 1.0, False, True, 0.2)
    assert (sp.valve, sp.fan, sp.hp_enable, sp.hp_capacity) == (0.0, 1.0, False, 0.0)
    sp = device_bounds().admit(math.nan, math.nan, True, math.nan, False, True, 0.2)
    assert (sp.valve, sp.fan, sp.hp_capacity) == (0.0, 1.0, 0.2)  # NaN falls to the safe side


# --- sequencer (through the core, heat pump feedback echoing the enable) ------------------


def test_a_heat_pump_found_stopped_starts_at_once_then_respects_min_off() -> None:
    """How long a machine found stopped has been off is unknown and its own anti-cycling
    timer guards it; after heatd's own stop, the minimum off time is heatd's to keep."""
    ds = run(FAST, 40)
    first_on = next(d for d in ds if d.setpoints.hp_enable)
    assert first_on.state.last_now == 1.0
    assert ds[-1].hp_state == HpState.RUNNING
    assert ds[-1].setpoints.hp_capacity >= FAST.sequencer.capacity_min
    ds = run(FAST, 25, t0=40.0, state=ds[-1].state, dh__demand=0.0)  # off at the min on time
    stopped = next(d for d in ds if not d.setpoints.hp_enable).state.last_now
    ds = run(FAST, 60, t0=65.0, state=ds[-1].state)
    restart = next(d for d in ds if d.setpoints.hp_enable).state.last_now
    assert restart - stopped >= FAST.sequencer.min_off_s
    assert any(x.cause is Cause.MIN_OFF_TIME for x in ds[0].limits)


def test_a_heat_pump_found_running_is_taken_over_bumplessly() -> None:
    """First cycle with the machine running and the valve and fan reported: no stop, no
    restart, and the outputs continue from where the site has them."""
    d = step(healthy(1.0, hp__running=1.0, hp__heat=60.0, valve__recovery__actual=0.8,
                     drycooler__fan__actual=0.3, hp__capacity__actual=0.6), initial_state(0.0),
             FAST, 1.0)
    assert d.hp_state == HpState.RUNNING and d.setpoints.hp_enable
    assert d.setpoints.valve == pytest.approx(0.8, abs=0.06)
    assert d.setpoints.fan == pytest.approx(0.3, abs=0.06)
    assert not any(e.kind == "hp_state" for e in d.events)


def test_sequencer_holds_min_on_time_when_heat_is_no_longer_wanted() -> None:
    ds = run(FAST, 35)
    state = ds[-1].state
    ds = run(FAST, 80, t0=35.0, state=state, dh__demand=0.0)
    stop = next(i for i, d in enumerate(ds) if not d.setpoints.hp_enable)
    assert 35.0 + stop + 1 - 1.0 >= FAST.sequencer.min_on_s
    assert any(x.name == "hp_stop" and x.cause is Cause.MIN_ON_TIME for x in ds[0].limits)


def test_sequencer_limits_starts_per_window() -> None:
    state, t = initial_state(0.0), 0.0
    starts = 0
    for _ in range(4):  # demand toggles: on long enough to start, off long enough to stop
        for demand, secs in ((80.0, 100), (0.0, 40)):
            ds = run(FAST, secs, t0=t, state=state, dh__demand=demand)
            seq = [state.setpoints, *(d.setpoints for d in ds)]
            starts += sum(b.hp_enable and not a.hp_enable for a, b in itertools.pairwise(seq))
            state, t = ds[-1].state, t + secs
    assert starts == FAST.sequencer.max_starts_per_hour  # 560 s < the 600 s window
    assert any(x.cause is Cause.STARTS_USED for x in ds[-1].limits) or not ds[-1].limits


def test_trip_sends_heat_to_dry_cooler_in_the_same_step_then_resets_then_locks_out() -> None:
    ds = run(FAST, 60)
    assert ds[-1].setpoints.hp_enable and ds[-1].setpoints.valve > 0
    trip = run(FAST, 1, t0=60.0, state=ds[-1].state, hp__fault=1.0, hp__trip_code=7.0)[0]
    sp = trip.setpoints  # all coolant to the dry cooler; its fans stay with the supply loop
    assert (sp.valve, sp.hp_enable) == (0.0, False) and sp.fan < 1.0
    assert trip.hp_state == HpState.TRIPPED
    assert any(e.kind == "hp_state" and e.new == "tripped" for e in trip.events)

    # fault persists: two automatic reset pulses after each cool-down, then lock-out
    ds = run(FAST, 80, t0=61.0, state=trip.state, hp__fault=1.0)
    pulses = [b.state.last_now for a, b in itertools.pairwise(ds)
              if b.setpoints.hp_reset and not a.setpoints.hp_reset]  # fmt: skip
    assert len(pulses) == FAST.sequencer.max_resets_per_hour
    assert ds[-1].hp_state == HpState.LOCKED_OUT
    assert not any(d.setpoints.hp_enable for d in ds)

    # fault cleared: still locked out until an operator resets
    ds = run(FAST, 30, t0=141.0, state=ds[-1].state)
    assert ds[-1].hp_state == HpState.LOCKED_OUT
    state = reset_heat_pump(ds[-1].state, 171.0)
    ds = run(FAST, 5, t0=171.0, state=state)
    assert ds[0].setpoints.hp_reset
    assert ds[-1].hp_state in (HpState.OFF, HpState.STARTING, HpState.RUNNING)


def test_trip_that_clears_after_one_reset_returns_to_off() -> None:
    ds = run(FAST, 60)
    ds = run(FAST, 10, t0=60.0, state=ds[-1].state, hp__fault=1.0)
    ds = run(FAST, 30, t0=70.0, state=ds[-1].state, dh__demand=0.0)
    assert any(d.setpoints.hp_reset for d in ds)
    assert ds[-1].hp_state == HpState.OFF


# --- optimiser --------------------------------------------------------------------------


def test_fan_loop_has_no_windup_after_long_saturation() -> None:
    """Hot for 10 minutes (fan pinned at 1), then cold: the fan must start falling at once."""
    hot = run(P, 600, coolant__supply_temp=41.5, dh__demand=0.0)
    assert hot[-1].setpoints.fan == 1.0
    cold = run(P, 5, t0=600.0, state=hot[-1].state, coolant__supply_temp=37.0, dh__demand=0.0)
    assert cold[0].setpoints.fan < 1.0
    assert cold[-1].setpoints.fan < cold[0].setpoints.fan


def test_capacity_settles_on_the_heat_target_and_nothing_leaks_to_the_dry_cooler() -> None:
    """Heat pump whose delivered heat is proportional to capacity: the PI settles on the
    heat target, and with the loop below its setpoint the valve sits fully on recovery."""
    state, t, d = initial_state(0.0), 0.0, None
    heat = 0.0
    for _ in range(1500):
        t += 1.0
        sp = state.setpoints
        snap = healthy(t, dh__demand=70.0, storage__top_temp=90.0, hp__running=float(sp.hp_enable),
                       hp__heat=heat, hp__power=heat / FAST.optimiser.hp_cop)
        d = step(snap, state, FAST, t)
        state = d.state
        heat = 100.0 * d.setpoints.extraction
    assert d is not None and d.hp_state == HpState.RUNNING
    band = FAST.optimiser.heat_deadband
    target = d.state.opt.target_kw / 100.0
    assert 0.3 < target <= 0.7  # the demand, faded a little on a loop 2 K below setpoint
    assert target - band - 0.01 <= d.setpoints.hp_capacity <= target + band + 0.01
    assert d.setpoints.valve == 1.0 and d.setpoints.fan == 0.0


def test_outputs_are_rate_limited() -> None:
    ds = run(FAST, 120)
    for a, b in itertools.pairwise(ds):
        assert b.setpoints.valve - a.setpoints.valve <= FAST.optimiser.valve_up_per_s + 1e-9
        assert a.setpoints.fan - b.setpoints.fan <= FAST.optimiser.fan_down_per_s + 1e-9


def test_demand_near_threshold_does_not_cycle_the_heat_pump() -> None:
    """Demand wobbling around the start threshold inside the hysteresis band: one start."""
    state, t, starts, prev = initial_state(0.0), 0.0, 0, False
    for k in range(600):
        t += 1.0
        demand = 24.0 + 8.0 * math.sin(k / 15.0)  # 16..32 kW: crosses 30 but never < 15
        d = step(healthy(t, dh__demand=demand, hp__running=float(prev), hp__heat=20.0,
                         coolant__supply_temp=40.0), state, FAST, t)
        starts += d.setpoints.hp_enable and not prev
        prev, state = d.setpoints.hp_enable, d.state
    assert starts == 1


# --- params -----------------------------------------------------------------------------


def test_params_are_strict_and_scaled_consistently() -> None:
    with pytest.raises(ValidationError):
        ControlParams.model_validate({"envelope": {"supply_limit": 45}})
    with pytest.raises(ValidationError):
        ControlParams.model_validate({"envelope": {"supply_limit_c": "45"}})
    with pytest.raises(ValidationError):
        ControlParams.model_validate({"validation": {"ranges": {"no.role": {"lo": 0, "hi": 1}}}})
    with pytest.raises(ValidationError):
        ControlParams.model_validate({"optimiser": {"supply_setpoint_c": 43.0}})
    fast = P.time_scaled(60.0)
    assert fast.sequencer.min_on_s == 10.0 and fast.optimiser.fan_up_per_s == pytest.approx(3.0)
    assert fast.sequencer.max_starts_per_hour == 3 and fast.optimiser.cool_kp == P.optimiser.cool_kp
    assert fast.validation.stale_after_s == P.validation.stale_after_s  # polling keeps its pace
    custom = P.model_copy(update={"validation": P.validation.model_copy(
        update={"ranges": {}, "frozen_after_s": None})})  # fmt: skip
    assert custom.role_specs[R.COOLANT_SUPPLY_TEMP][3] is False


def test_roles_are_one_consistent_table() -> None:
    assert set(R.INPUT_ROLES) >= R.REQUIRED_INPUTS
    assert R.REQUIRED_OUTPUTS <= R.OUTPUT_ROLES
    assert set(R.FEEDBACK_ROLES.values()) <= R.OUTPUT_ROLES
    assert set(R.DEFAULT_RANGES) == set(R.INPUT_ROLES) | set(R.FEEDBACK_ROLES)
    assert SAFE_SETPOINTS.as_roles()[R.DRYCOOLER_FAN] == 1.0


# --- optimiser: heat worth taking, from a loop of any temperature ---------------------------


def test_a_cold_loop_unloads_a_running_heat_pump_but_never_keeps_it_off() -> None:
    op = P.optimiser
    values = {R.DH_DEMAND: op.hp_nominal_heat_kw, R.COOLANT_SUPPLY_TEMP: op.source_min_c - 2.0}
    st = want_heat(values, RESET, op, 0.0)
    st = want_heat(values, st, op, op.start_delay_s + 1.0)
    assert st.want  # heat the dry cooler would pass on is lost: start anyway
    assert cold_fade(values, op) == pytest.approx(0.5)
    assert st.target_kw == pytest.approx(0.5 * op.hp_nominal_heat_kw)  # but unload
    warm = {**values, R.COOLANT_SUPPLY_TEMP: op.supply_setpoint_c}
    assert cold_fade(warm, op) == 1.0 and cold_fade({R.DH_DEMAND: 1.0}, op) == 1.0


def test_the_cooling_loop_keeps_the_evaporator_inlet_under_the_heat_pumps_trip() -> None:
    op = P.optimiser
    cool = {R.COOLANT_SUPPLY_TEMP: op.supply_setpoint_c - 2.0,
            R.COOLANT_RETURN_TEMP: op.evaporator_inlet_max_c - op.evaporator_margin_k - 1.0}
    hot = {**cool, R.COOLANT_RETURN_TEMP: op.evaporator_inlet_max_c}

    def fan_after(values: dict[str, float], running: bool) -> float:
        prop, st = propose(values, running, running, 0.0, 0.5, 0.0, 1.0, RESET, op, 0.2, 1.0)
        for _ in range(30):
            prop, st = propose(values, running, running, prop.fan, prop.capacity, 0.0, 1.0,
                               st, op, 0.2, 1.0)
        return prop.fan

    assert fan_after(cool, True) == 0.0
    assert fan_after(hot, True) > 0.0  # the return, not the supply, asks for the fans
    assert fan_after(hot, False) == 0.0  # a stopped heat pump has no evaporator to guard


def test_sensor_noise_below_the_setpoint_leaks_nothing_to_the_dry_cooler() -> None:
    """A supply 7 K under its setpoint read with +-2 K noise: clamped at zero, the cooling
    loop must not keep the upward spikes, or the valve would leak recovery flow."""
    op = P.optimiser
    spikes = (0.0, 2.0, -2.0, 1.5, -1.0, 2.0, 0.0, -2.0)
    prop, st = propose({R.COOLANT_SUPPLY_TEMP: op.supply_setpoint_c - 7.0}, True, True, 0.0,
                       0.5, 0.0, 1.0, RESET, op, 0.2, 10.0)
    for k in range(200):
        supply = op.supply_setpoint_c - 7.0 + spikes[k % len(spikes)]
        prop, st = propose({R.COOLANT_SUPPLY_TEMP: supply}, True, True, prop.fan,
                           prop.capacity, 0.0, 1.0, st, op, 0.2, 10.0)
        assert prop.valve == 1.0 and prop.fan == 0.0
    # Above the setpoint the same loop still acts.
    for _ in range(5):
        prop, st = propose({R.COOLANT_SUPPLY_TEMP: op.supply_setpoint_c + 2.0}, True, True,
                           prop.fan, prop.capacity, 0.0, 1.0, st, op, 0.2, 10.0)
    assert prop.fan > 0.0 and prop.valve < 1.0


def test_the_whole_machine_is_reached_when_the_whole_machine_is_wanted() -> None:
    """Demand far above the heat pump's size and delivered heat a hair under nominal
    (inside the heat deadband): capacity must still climb to its maximum."""
    op = P.optimiser
    nominal = op.hp_nominal_heat_kw
    values = {R.COOLANT_SUPPLY_TEMP: op.supply_setpoint_c - 1.0, R.DH_DEMAND: 4.0 * nominal,
              R.IT_POWER: 2.0 * nominal, R.HP_HEAT: 0.99 * nominal}
    st = replace(want_heat(values, RESET, op, 0.0), cap_u=0.98, cap_e=0.0)  # settled
    assert st.target_kw == nominal
    prop, st = propose(values, True, True, 0.0, 0.98, 0.0, 1.0, st, op, 0.2, 10.0)
    for _ in range(60):
        prop, st = propose(values, True, True, prop.fan, prop.capacity, 0.0, 1.0, st, op,
                           0.2, 10.0)
    assert prop.capacity == 1.0
    # Delivering more than a (mis)configured nominal never pushes capacity up.
    over = {**values, R.HP_HEAT: 1.5 * nominal}
    prop, st = propose(over, True, True, 0.0, 0.98, 0.0, 1.0, st, op, 0.2, 10.0)
    assert prop.capacity < 1.0


RIDE = ControlParams.model_validate({"envelope": {"blind_rise_k_per_s": 0.01,
                                                  "blind_hold_max_s": 600.0}})


def _ride(now: float, state: EnvelopeState, prev: Setpoints, **over: object):
    inp, _ = validate(healthy(now, **over), ValidationState(), RIDE, now)
    return envelope(inp, prev, state, RIDE, now)


def test_a_lost_supply_reading_is_ridden_through_only_inside_its_bounds() -> None:
    """Commissioned with the loop's fastest rise, a lost supply reading holds the cooling
    as it was while the last reading plus that rise stays under the band, the IT load
    does not grow and the hold is not too long; past any bound it is the worst case."""
    prev = _sp(0.8, 0.2, 0.6)
    seen = _ride(100.0, EnvelopeState(), prev, coolant__supply_temp=30.0).state
    assert seen.supply_seen == (100.0, 30.0) and seen.it_seen == 100.0

    held = _ride(200.0, seen, prev, coolant__supply_temp=None).bounds
    assert (held.fan_min, held.valve_max, held.hp_start, held.hp_run) == (0.2, 0.8, False, True)
    # 30 degC + 0.01 K/s x 1,100 s reaches the 42 degC band: worst case.
    late = _ride(1200.0, seen, prev, coolant__supply_temp=None).bounds
    assert (late.fan_min, late.valve_max, late.hp_run) == (1.0, 0.0, False)
    # Bounded in time even far below the band.
    cold = _ride(100.0, EnvelopeState(), prev, coolant__supply_temp=10.0).state
    assert _ride(701.0, cold, prev, coolant__supply_temp=None).bounds.hp_run is False
    assert _ride(699.0, cold, prev, coolant__supply_temp=None).bounds.hp_run is True
    # The IT load grew: the balance the hold relied on is gone.
    grown = _ride(200.0, seen, prev, coolant__supply_temp=None, it__power=115.0).bounds
    assert grown.hp_run is False and grown.fan_min == 1.0
    # Not commissioned (the default): the worst case at once.
    assert _env(200.0, prev, seen, coolant__supply_temp=None).bounds.hp_run is False


def test_a_lost_rack_inlet_reading_is_ridden_through_against_its_own_band() -> None:
    prev = _sp(0.8, 0.2, 0.6)
    band = RIDE.envelope.rack_inlet_limit_c - RIDE.envelope.rack_inlet_margin_k
    seen = _ride(100.0, EnvelopeState(), prev, rack__inlet_temp=band - 3.0).state
    assert _ride(250.0, seen, prev, rack__inlet_temp=None).bounds.hp_run is True
    assert _ride(400.0, seen, prev, rack__inlet_temp=None).bounds.hp_run is False
