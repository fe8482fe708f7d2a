"""Plant model: energy balance, physical sanity, site PLC, heat-pump protection, params."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from heatd.hil.plant import (
    TRIP_COND_OVERTEMP,
    TRIP_EVAP_INLET_HIGH,
    TRIP_INTERNAL_FAULT,
    TRIP_NONE,
    TRIP_STARTS_PER_HOUR,
    Actuators,
    Disturbances,
    PlantState,
    cop_from_lift,
    initial_state,
    step,
    stored_heat_kwh,
)
from heatd.hil.plant_params import ParamsError, PlantParams, compile_params, load_params
from heatd.hil.scenario import load_scenario, scenario_from_dict

DEFAULTS = PlantParams()


def run(
    state: PlantState,
    seconds: float,
    dist: Disturbances,
    params: PlantParams = DEFAULTS,
    dt: float = 10.0,
    **act: object,
) -> PlantState:
    """Hold the actuators for `seconds`, bumping the heartbeat every step."""
    base = Actuators(**act)  # type: ignore[arg-type]
    hb = state.plc_heartbeat_last
    for _ in range(round(seconds / dt)):
        hb += 1
        state = step(state, base._replace(heartbeat=hb), dist, dt, params)
    return state


def balance_error_kwh(start: PlantState, end: PlantState, params: PlantParams) -> float:
    heat_in = end.it_energy_kwh - start.it_energy_kwh + end.hp_electricity_kwh
    heat_in -= start.hp_electricity_kwh
    heat_out = end.heat_delivered_to_dh_kwh - start.heat_delivered_to_dh_kwh
    heat_out += end.heat_rejected_drycooler_kwh - start.heat_rejected_drycooler_kwh
    stored = stored_heat_kwh(end, params) - stored_heat_kwh(start, params)
    return heat_in - heat_out - stored


def recovery_controller(state: PlantState, k: int) -> Actuators:
    """Crude but busy: runs the heat pump, moves valve and fans, so every flux is exercised."""
    fan = min(max((state.supply_temp_c - 28.0) / 6.0, 0.0), 1.0)
    valve = 0.8 if state.hp_running else 0.0
    capacity = 1.0 if state.tank_c[0] < 72.0 else 0.3
    return Actuators(valve, True, capacity, k % 180 == 0, fan, k)


@pytest.mark.parametrize(
    ("overrides", "dt"),
    [
        ({}, 10.0),
        ({"storage": {"enabled": False}}, 10.0),
        ({"heat_pump": {"cop_model": "carnot"}, "storage": {"nodes": 2}}, 25.0),
    ],
)
def test_energy_balance_closes_over_a_scenario(overrides: dict, dt: float) -> None:
    sc = load_scenario("shoulder_season")
    params = load_params(None, overrides)
    state = start = initial_state(params, it_power_kw=sc.disturbances(0).it_power_kw)
    k = 0
    while state.t < 86400.0:
        state = step(state, recovery_controller(state, k), sc.disturbances(state.t), dt, params)
        k += 1
    assert state.hp_heat_kwh > 0.1 * state.it_energy_kwh  # the heat pump really ran
    assert state.heat_rejected_drycooler_kwh > 0.0  # and so did the dry cooler
    assert state.heat_delivered_to_dh_kwh > 0.0
    assert abs(balance_error_kwh(start, state, params)) < 0.005 * state.it_energy_kwh
    # the loop side alone: IT heat = recovered + rejected + change in loop storage
    loop_change = stored_heat_kwh(state, params) - stored_heat_kwh(start, params)
    c = compile_params(params)
    tank_change = c.node_cap * (sum(state.tank_c) - sum(start.tank_c)) / 3600.0
    loop_out = state.heat_recovered_kwh + state.heat_rejected_drycooler_kwh
    assert state.it_energy_kwh == pytest.approx(loop_out + loop_change - tank_change, rel=1e-6)


def test_design_load_at_design_ambient_stays_below_supply_limit() -> None:
    p = DEFAULTS
    dist = Disturbances(p.it.peak_kw, p.drycooler.design_ambient_c, 0.0)
    state = initial_state(p, it_power_kw=p.it.peak_kw, supply_temp_c=p.drycooler.design_ambient_c)
    state = run(state, 6 * 3600, dist, valve_recovery=0.0, fan_speed=1.0)
    settled = run(state, 3600, dist, valve_recovery=0.0, fan_speed=1.0)
    assert settled.supply_temp_c < p.loop.supply_limit_c
    assert abs(settled.supply_temp_c - state.supply_temp_c) < 0.05  # it has settled
    assert not settled.plc_overtemp
    assert settled.drycooler_kw == pytest.approx(p.it.peak_kw, rel=0.01)
    assert settled.fan_power_kw == pytest.approx(p.drycooler.fan_power_nominal_kw)


def test_without_heat_rejection_temperature_rises_at_the_thermal_mass_rate() -> None:
    p = load_params(None, {"drycooler": {"natural_share": 0.0}})
    c = compile_params(p)
    it_kw = 100.0
    dist = Disturbances(it_kw, 10.0, 0.0)
    state = initial_state(p, it_power_kw=it_kw, supply_temp_c=15.0)
    state = run(state, 600, dist, p, valve_recovery=0.0, fan_speed=0.0)  # settle the lags
    later = run(state, 1200, dist, p, valve_recovery=0.0, fan_speed=0.0)
    predicted = it_kw / (c.air_cap + c.rack_cap + c.sup_cap)  # K/s
    for name in ("supply_temp_c", "rack_temp_c", "air_temp_c"):
        rate = (getattr(later, name) - getattr(state, name)) / 1200.0
        assert rate == pytest.approx(predicted, rel=0.02), name
    assert later.heat_rejected_drycooler_kwh == 0.0


def test_rack_lag_supply_responds_later_than_return() -> None:
    state = initial_state(DEFAULTS, it_power_kw=100.0)
    after = run(state, 30, Disturbances(250.0, 10.0, 0.0), valve_recovery=0.0, fan_speed=1.0)
    assert after.rack_temp_c - state.rack_temp_c > 2 * (after.supply_temp_c - state.supply_temp_c)


def test_long_steps_agree_with_short_steps() -> None:
    dist = Disturbances(200.0, 5.0, 300.0)
    start = initial_state(DEFAULTS, it_power_kw=150.0)
    act = {"valve_recovery": 0.6, "hp_enable": True, "hp_capacity": 0.7, "fan_speed": 0.4}
    fine = run(start, 3600, dist, dt=5.0, **act)
    coarse = run(start, 3600, dist, dt=20.0, **act)
    assert coarse.supply_temp_c == pytest.approx(fine.supply_temp_c, abs=0.2)
    assert coarse.tank_c[0] == pytest.approx(fine.tank_c[0], abs=0.3)


def test_valve_moves_at_its_stroke_rate() -> None:
    state = initial_state(DEFAULTS)
    half = run(state, DEFAULTS.valve.stroke_s / 2, Disturbances(100.0, 10.0, 0.0), dt=1.0,
               valve_recovery=1.0)  # fmt: skip
    assert half.valve_position == pytest.approx(0.5, abs=0.02)
    full = run(half, DEFAULTS.valve.stroke_s, Disturbances(100.0, 10.0, 0.0), valve_recovery=1.0)
    assert full.valve_position == 1.0


def test_a_seized_valve_stays_where_it_is_whatever_it_is_told() -> None:
    state = initial_state(DEFAULTS, it_power_kw=100.0, valve_position=0.9)
    stuck = Disturbances(100.0, 10.0, 0.0, valve_stuck=True)
    after = run(state, 600, stuck, valve_recovery=0.0, fan_speed=1.0)
    assert after.valve_position == 0.9
    freed = run(after, DEFAULTS.valve.stroke_s, Disturbances(100.0, 10.0, 0.0),
                valve_recovery=0.0, fan_speed=1.0)
    assert freed.valve_position == 0.0


def test_plc_falls_back_on_heartbeat_loss_and_releases_when_it_returns() -> None:
    p = DEFAULTS
    dist = Disturbances(200.0, 5.0, 400.0)
    state = initial_state(p, it_power_kw=200.0)
    act = {"valve_recovery": 1.0, "hp_enable": True, "hp_capacity": 1.0, "fan_speed": 0.2}
    state = run(state, 600, dist, **act)
    assert state.hp_running and state.valve_position == 1.0 and not state.plc_fallback
    frozen = Actuators(**act, heartbeat=state.plc_heartbeat_last)  # type: ignore[arg-type]
    timeout = p.plc.heartbeat_timeout_s
    state = step(state, frozen, dist, timeout - 10.0, p)
    assert not state.plc_fallback  # not yet
    for _ in range(12):
        state = step(state, frozen, dist, 10.0, p)
    assert state.plc_fallback
    assert not state.hp_running
    assert state.fan_speed == 1.0
    assert state.valve_position < 0.1  # travelling to the dry cooler despite the command
    released = run(state, 30, dist, **act)
    assert not released.plc_fallback
    assert released.valve_position > state.valve_position
    assert released.fan_speed == pytest.approx(0.2)


def test_plc_hard_limit_forces_fans_above_supply_limit() -> None:
    p = DEFAULTS
    hot = initial_state(p, it_power_kw=250.0, supply_temp_c=p.loop.supply_limit_c + 1.0)
    state = run(hot, 20, Disturbances(250.0, 30.0, 0.0), fan_speed=0.0)
    assert state.plc_overtemp and state.fan_speed == 1.0
    cool = run(initial_state(p, supply_temp_c=30.0), 20, Disturbances(100.0, 5.0, 0.0),
               fan_speed=0.0)  # fmt: skip
    assert not cool.plc_overtemp and cool.fan_speed == 0.0


def test_plc_high_limit_also_sends_the_coolant_to_the_dry_cooler_and_releases_below() -> None:
    p = DEFAULTS
    hot = initial_state(p, it_power_kw=250.0, supply_temp_c=p.loop.supply_limit_c + 1.0,
                        valve_position=1.0)
    state = run(hot, 30, Disturbances(250.0, 0.0, 0.0), valve_recovery=1.0, fan_speed=0.0)
    assert state.plc_overtemp and state.valve_position < 1.0
    # latched until 1 K below the limit, then the controller's commands count again
    while state.supply_temp_c > p.loop.supply_limit_c - p.plc.high_limit_release_k - 0.5:
        state = run(state, 10, Disturbances(250.0, 0.0, 0.0), valve_recovery=1.0, fan_speed=0.0)
    state = run(state, 10, Disturbances(250.0, 0.0, 0.0), valve_recovery=1.0, fan_speed=0.0)
    assert not state.plc_overtemp and state.fan_speed < 1.0


def test_servers_throttle_above_fifty_degrees_and_bound_the_loop() -> None:
    """With every cooling path off, the loop stops rising where the servers shut down."""
    p = load_params(None, {"plc": {"high_limit_c": 100.0}, "drycooler": {"ua_nominal_kw_k": 0.0}})
    state = initial_state(p, it_power_kw=250.0, supply_temp_c=48.0)
    state = run(state, 6 * 3600, Disturbances(250.0, 30.0, 0.0), p, fan_speed=0.0)
    assert p.it.throttle_start_c < state.supply_temp_c <= p.it.shutdown_c
    assert state.it_power_kw < 0.5 * 250.0


def test_mixing_valve_leaves_the_dry_cooler_the_whole_flow() -> None:
    mixing = load_params(None, {"valve": {"kind": "mixing"}})
    dist = Disturbances(200.0, 5.0, 0.0)
    a = run(initial_state(DEFAULTS, it_power_kw=200.0), 300, dist, valve_recovery=1.0,
            fan_speed=1.0)  # fmt: skip
    b = run(initial_state(mixing, it_power_kw=200.0), 300, dist, mixing, valve_recovery=1.0,
            fan_speed=1.0)  # fmt: skip
    assert a.drycooler_kw == pytest.approx(0.0, abs=1e-9)  # diverting: no flow, no cooling
    assert b.drycooler_kw > 100.0


def test_valve_actuator_lag_delays_the_stroke() -> None:
    lagged = load_params(None, {"valve": {"lag_s": 300.0}})
    dist = Disturbances(100.0, 10.0, 0.0)
    fast = run(initial_state(DEFAULTS), 30, dist, valve_recovery=1.0)
    slow = run(initial_state(lagged), 30, dist, lagged, valve_recovery=1.0)
    assert slow.valve_position < 0.5 * fast.valve_position


def test_cop_factor_and_dry_cooler_air_offset_act() -> None:
    worse = load_params(None, {"heat_pump": {"cop_factor": 0.8}})
    nominal = cop_from_lift(30.0, 70.0, DEFAULTS)
    assert cop_from_lift(30.0, 70.0, worse) == pytest.approx(0.8 * nominal)
    hot_roof = load_params(None, {"drycooler": {"air_offset_k": 10.0}})
    dist = Disturbances(200.0, 20.0, 0.0)
    a = run(initial_state(DEFAULTS, it_power_kw=200.0), 60, dist, fan_speed=1.0)
    b = run(initial_state(hot_roof, it_power_kw=200.0), 60, dist, hot_roof, fan_speed=1.0)
    assert b.drycooler_kw < a.drycooler_kw


def test_plant_can_start_as_a_previous_controller_left_it() -> None:
    running = initial_state(DEFAULTS, it_power_kw=200.0, hp_running=True, hp_capacity=0.6,
                            valve_position=1.0, fan_speed=0.0)  # fmt: skip
    state = _hp_on(running, 10, Disturbances(200.0, 5.0, 500.0), hp_capacity=0.6)
    assert state.hp_running and state.hp_starts == ()  # no new start
    tripped = initial_state(DEFAULTS, hp_trip_code=TRIP_INTERNAL_FAULT)
    assert not _hp_on(tripped, 10, Disturbances(100.0, 5.0, 500.0)).hp_running


def _hp_on(state: PlantState, seconds: float, dist: Disturbances, **extra: object) -> PlantState:
    act = {"valve_recovery": 1.0, "hp_enable": True, "hp_capacity": 1.0, "fan_speed": 0.5}
    act.update(extra)
    return run(state, seconds, dist, **act)


def test_heat_pump_ramps_and_converts_heat_with_the_regression_cop() -> None:
    dist = Disturbances(200.0, 5.0, 500.0)
    state = initial_state(DEFAULTS, it_power_kw=200.0)
    early = _hp_on(state, 30, dist)
    assert 0.0 < early.hp_capacity < 0.5  # start-up ramp
    state = _hp_on(state, 600, dist)
    assert state.hp_capacity == 1.0
    assert state.hp_heat_kw == pytest.approx(DEFAULTS.heat_pump.heat_nominal_kw)
    lift = state.hp_cond_outlet_c - state.hp_evap_inlet_c
    expected = 1.448e12 * (lift + 177.46) ** -4.946
    assert state.hp_cop == pytest.approx(expected)
    assert state.hp_power_kw == pytest.approx(state.hp_heat_kw / expected)
    assert state.recovered_kw == pytest.approx(state.hp_heat_kw - state.hp_power_kw)
    low = _hp_on(state, 300, dist, hp_capacity=0.05)
    assert low.hp_capacity == DEFAULTS.heat_pump.min_capacity  # modulation floor


def test_cop_models() -> None:
    cops = [cop_from_lift(lift, 70.0, DEFAULTS) for lift in (10.0, 30.0, 50.0, 78.0)]
    assert cops == sorted(cops, reverse=True)
    assert 3.0 < cops[1] < 7.0
    carnot = load_params(None, {"heat_pump": {"cop_model": "carnot"}})
    assert cop_from_lift(40.0, 70.0, carnot) == pytest.approx(0.5 * 343.15 / 40.0)


def test_trip_latches_and_needs_a_reset_rising_edge() -> None:
    calm = Disturbances(200.0, 5.0, 500.0)
    faulty = calm._replace(hp_fault=True)
    state = _hp_on(initial_state(DEFAULTS, it_power_kw=200.0), 300, calm)
    assert state.hp_running
    state = _hp_on(state, 60, faulty, hp_reset=True)  # reset held during the fault: no effect
    assert state.hp_trip_code == TRIP_INTERNAL_FAULT and not state.hp_running
    state = _hp_on(state, 600, calm, hp_reset=True)  # fault gone, reset still held: no edge
    assert state.hp_trip_code == TRIP_INTERNAL_FAULT and not state.hp_running
    state = _hp_on(state, 10, calm, hp_reset=False)
    state = _hp_on(state, 10, calm, hp_reset=True)  # the rising edge
    assert state.hp_trip_code == TRIP_NONE
    assert _hp_on(state, 60, calm).hp_running


def test_too_many_starts_per_hour_trips() -> None:
    dist = Disturbances(100.0, 5.0, 500.0)

    def hp(state: PlantState, seconds: float, **extra: object) -> PlantState:
        return _hp_on(state, seconds, dist, valve_recovery=0.3, fan_speed=1.0, **extra)

    state = initial_state(DEFAULTS, it_power_kw=100.0)
    for _ in range(DEFAULTS.heat_pump.max_starts_per_hour):
        state = hp(state, 120)
        assert state.hp_running
        state = hp(state, 120, hp_enable=False)
    state = hp(state, 60)
    assert state.hp_trip_code == TRIP_STARTS_PER_HOUR and not state.hp_running
    state = hp(state, 10, hp_enable=False, hp_reset=True)  # reset clears the trip,
    assert state.hp_trip_code == TRIP_NONE
    state = hp(state, 3600, hp_enable=False)  # the hour passes,
    assert hp(state, 60).hp_running  # and it may start again


def test_evaporator_inlet_too_hot_trips() -> None:
    hot = initial_state(DEFAULTS, it_power_kw=250.0, supply_temp_c=50.0)
    state = _hp_on(hot, 60, Disturbances(250.0, 30.0, 500.0))
    assert state.hp_trip_code == TRIP_EVAP_INLET_HIGH and not state.hp_running


def test_heat_pump_unloads_on_a_hot_condenser_return() -> None:
    full = initial_state(DEFAULTS, it_power_kw=200.0, storage_top_c=75.0, storage_bottom_c=75.0)
    state = _hp_on(full, 600, Disturbances(200.0, 15.0, 0.0, dh_return_temp_c=75.0))
    hp = DEFAULTS.heat_pump
    assert state.hp_running and state.hp_trip_code == 0
    assert state.hp_cond_outlet_c <= hp.cond_outlet_max_c - hp.cond_unload_k + 1e-9
    assert 0.0 < state.hp_heat_kw < 0.9 * hp.heat_nominal_kw


def test_condenser_over_temperature_trips_when_storage_is_full() -> None:
    full = initial_state(DEFAULTS, it_power_kw=200.0, storage_top_c=83.0, storage_bottom_c=83.0)
    state = _hp_on(full, 600, Disturbances(200.0, 15.0, 0.0, dh_return_temp_c=83.0))
    assert state.hp_trip_code == TRIP_COND_OVERTEMP and not state.hp_running


def test_storage_stratifies_when_charged() -> None:
    state = initial_state(DEFAULTS, it_power_kw=200.0, storage_top_c=40.0, storage_bottom_c=40.0)
    state = _hp_on(state, 3600, Disturbances(200.0, 5.0, 50.0))
    tank = state.tank_c
    assert list(tank) == sorted(tank, reverse=True)
    assert tank[0] > 60.0 and tank[-1] < 45.0


def test_dh_delivers_the_demand_from_a_hot_tank() -> None:
    hot = initial_state(DEFAULTS, storage_top_c=74.0, storage_bottom_c=74.0)
    state = run(hot, 60, Disturbances(100.0, 0.0, 800.0))
    assert state.dh_delivered_kw == pytest.approx(800.0)
    assert state.dh_supply_temp_c == pytest.approx(DEFAULTS.dh.supply_temp_c)


def test_network_takes_no_heat_below_its_contracted_temperature() -> None:
    band = DEFAULTS.dh.accept_band_k
    cold = DEFAULTS.dh.supply_temp_c - band - 1.0
    lukewarm = initial_state(DEFAULTS, storage_top_c=cold, storage_bottom_c=cold)
    state = run(lukewarm, 60, Disturbances(100.0, 0.0, 800.0))
    assert state.dh_delivered_kw == 0.0
    assert state.heat_delivered_to_dh_kwh == 0.0


def test_default_site_file_spells_out_the_built_in_defaults() -> None:
    assert load_params("default") == PlantParams()


def test_params_reject_unknown_keys_and_wrong_types(tmp_path: Path) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text("loop:\n  flow_kg_s: 7.0\n  flwo: 3\n")
    with pytest.raises(ParamsError, match=r"(?s)site\.yaml.*flwo"):
        load_params(bad)
    bad.write_text("loop:\n  flow_kg_s: fast\n")
    with pytest.raises(ParamsError, match="flow_kg_s"):
        load_params(bad)
    with pytest.raises(ParamsError, match="idle_kw"):
        load_params(None, {"it": {"idle_kw": 300.0, "peak_kw": 250.0}})


def test_substeps_keep_every_node_inside_its_time_constant() -> None:
    c = compile_params(DEFAULTS)
    assert c.substeps(10.0) == 1  # a year at 10 s runs one substep per step
    assert c.substeps(10 * c.max_dt) == 10
    assert math.isfinite(c.max_dt) and c.max_dt > 0


@pytest.mark.slow
def test_a_whole_year_at_ten_second_steps_stays_finite_and_balanced() -> None:
    sc = scenario_from_dict(
        {"name": "year", "weather": "copenhagen", "start_hour": 0, "duration_h": 8760}
    )
    state = start = sc.initial_state()
    k = 0
    while state.t < sc.duration_s:
        state = step(state, recovery_controller(state, k), sc.disturbances(state.t), 10.0,
                     sc.params)  # fmt: skip
        k += 1
    assert k == 3_153_600
    assert math.isfinite(state.supply_temp_c)
    assert abs(balance_error_kwh(start, state, sc.params)) < 0.005 * state.it_energy_kwh
