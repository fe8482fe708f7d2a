"""KPIs on hand-made traces: every integral and counter against a figure worked out by hand."""

from __future__ import annotations

import math

import pytest

from heatd.hil.kpi import (
    Accumulator,
    IdealStores,
    KpiConfig,
    Prices,
    Sample,
    heat_available_kw,
    ideal_stores,
    kpi_config,
    reference_lift_factor,
    sample_between,
)
from heatd.hil.plant import (
    TRIP_EVAP_INLET_HIGH,
    TRIP_INTERNAL_FAULT,
    Actuators,
    Disturbances,
    cop_from_lift,
    initial_state,
    step,
)
from heatd.hil.plant_params import PlantParams, load_params

H = 3600.0


def sample(**kw: object) -> Sample:
    """A quiet hour: nothing over its limit, nothing running, all energies zero."""
    base: dict[str, object] = {
        "dt": H, "supply_c": 30.0, "rack_inlet_c": 26.0, "dh_supply_c": 70.0,
        "delivered_kwh": 0.0, "hp_heat_kwh": 0.0, "reused_kwh": 0.0, "hp_electricity_kwh": 0.0,
        "it_kwh": 0.0, "it_offered_kwh": 0.0, "fan_kwh": 0.0, "hp_available": True,
        "demand_kw": 0.0, "hp_running": False, "trip_code": 0, "plc_fallback": False,
        "plc_high_limit": False, "valve": 0.0, "fan": 0.0, "capacity": 0.0,
    }  # fmt: skip
    base.update(kw)
    return Sample(**base)  # type: ignore[arg-type]


def fold(samples: list[Sample], config: KpiConfig | None = None, **stores: float):
    acc = Accumulator(config or KpiConfig(lift_ref=2.0), IdealStores(**stores))
    for x in samples:
        acc.add(x)
    return acc.result()


def test_cooling_seconds_over_the_supply_limit_and_the_ashrae_rack_classes() -> None:
    cfg = KpiConfig(supply_limit_c=45.0, throttle_c=50.0)
    k = fold(
        [
            sample(dt=1800.0, supply_c=47.0),  # 2 K for half an hour: 1.0 K.h, 1800 s
            sample(dt=360.0, supply_c=51.0, rack_inlet_c=33.0),  # 6 K x 0.1 h; throttled
            sample(dt=600.0, supply_c=45.0, rack_inlet_c=27.0),  # at the limits: nothing
            sample(dt=60.0, rack_inlet_c=36.0, plc_fallback=True, plc_high_limit=True),
        ],
        cfg,
    )
    assert k.supply_over_limit_s == pytest.approx(2160.0)
    assert k.supply_violation_kh == pytest.approx(1.6)
    assert k.it_throttled_s == pytest.approx(360.0)
    assert k.rack_over_recommended_s == pytest.approx(420.0)
    assert k.rack_over_a1_s == pytest.approx(420.0)
    assert k.rack_over_a2_s == pytest.approx(60.0)
    assert k.plc_fallback_s == k.plc_high_limit_s == pytest.approx(60.0)
    assert k.max_supply_c == 51.0 and k.max_rack_inlet_c == 36.0
    assert k.duration_h == pytest.approx((1800 + 360 + 600 + 60) / H)


def test_energies_cop_erf_net_co2_and_money() -> None:
    cfg = KpiConfig(lift_ref=2.0, prices=Prices(0.2, 0.4, 50.0, 100.0))
    trace = [
        sample(delivered_kwh=300.0, hp_heat_kwh=280.0, reused_kwh=210.0,
               hp_electricity_kwh=70.0, it_kwh=200.0, fan_kwh=5.0, demand_kw=400.0),
        sample(delivered_kwh=100.0, hp_heat_kwh=120.0, reused_kwh=90.0,
               hp_electricity_kwh=30.0, it_kwh=200.0, fan_kwh=5.0, demand_kw=100.0),
    ]  # fmt: skip
    k = fold(trace, cfg)
    assert k.heat_delivered_mwh == pytest.approx(0.4)
    assert k.condenser_heat_mwh == pytest.approx(0.4)
    assert k.it_heat_reused_mwh == pytest.approx(0.3)
    assert k.hp_electricity_mwh == pytest.approx(0.1)
    assert k.seasonal_cop == pytest.approx(4.0)
    assert k.it_energy_mwh == pytest.approx(0.4) and k.fan_electricity_mwh == pytest.approx(0.01)
    assert k.demand_mwh == pytest.approx(0.5) and k.unmet_demand_mwh == pytest.approx(0.1)
    assert k.erf == pytest.approx(400.0 / (400.0 + 10.0 + 100.0))
    assert k.electricity_per_mwh_reused == pytest.approx(110.0 / 300.0)
    assert k.net_co2_t == pytest.approx((400.0 * 0.2 - 110.0 * 0.4) / 1000.0)
    assert k.net_money == pytest.approx(400.0 / 1000 * 50.0 - 110.0 / 1000 * 100.0)


def test_degree_hours_below_contract_count_only_while_the_network_wants_heat() -> None:
    cfg = KpiConfig(contract_supply_c=70.0)
    k = fold([sample(dt=1800.0, dh_supply_c=66.0, demand_kw=100.0),  # 4 K x 0.5 h
              sample(dh_supply_c=50.0, demand_kw=0.0),  # nobody wanted heat
              sample(dh_supply_c=72.0, demand_kw=100.0)], cfg)  # fmt: skip
    assert k.below_contract_kh == pytest.approx(2.0)


def test_nothing_run_gives_no_ratio_cop_or_erf_rather_than_a_division_by_zero() -> None:
    k = fold([sample()])
    assert k.reuse_ratio is None and k.seasonal_cop is None and k.erf is None
    assert k.electricity_per_mwh_reused is None
    assert k.hp_starts == k.short_cycles == k.hp_trips == 0 and k.trips_by_cause == {}


def test_ideal_is_the_evaporator_heat_the_pump_and_the_demand_could_take() -> None:
    """Lift 1.25: 1 kWh from the IT loop makes 1.25 kWh at the condenser."""
    cfg = KpiConfig(lift_ref=1.25)
    k = fold(
        [
            # 100 kWh of IT heat x 1.25 = 125 kWh, below the pump's 250 and the demand: 100
            sample(it_offered_kwh=100.0, demand_kw=300.0, reused_kwh=90.0),
            # 200 x 1.25 = 250 possible, but only 80 wanted: 64 from the evaporator
            sample(it_offered_kwh=200.0, demand_kw=80.0, reused_kwh=64.0),
            # plenty of everything, but the pump is capped at 250 kW: 200
            sample(it_offered_kwh=400.0, demand_kw=900.0, reused_kwh=200.0),
            # the heat pump is unavailable (internal fault): nothing
            sample(it_offered_kwh=200.0, demand_kw=300.0, hp_available=False),
        ],
        cfg,
        hp_max_kw=250.0,
    )
    assert k.ideal_reuse_mwh == pytest.approx((100 + 64 + 200) / 1000)
    assert k.reuse_ratio == pytest.approx(354.0 / 364.0)


def test_ideal_does_not_move_with_the_runs_own_temperatures_or_heat() -> None:
    """Two runs on the same disturbances share one ideal, whatever their loops did."""
    base = {"it_offered_kwh": 100.0, "demand_kw": 300.0}
    warm = fold([sample(**base, supply_c=40.0, reused_kwh=80.0)])
    cold = fold([sample(**base, supply_c=15.0, reused_kwh=95.0, hp_heat_kwh=300.0)])
    assert warm.ideal_reuse_mwh == cold.ideal_reuse_mwh


def test_ideal_loop_buffers_heat_the_pump_cannot_take_yet() -> None:
    trace = [
        sample(it_offered_kwh=150.0, demand_kw=1000.0),  # 100 made, 50 evaporator
        sample(it_offered_kwh=0.0, demand_kw=1000.0),  # the loop gives 50 back
    ]
    k = fold(trace, hp_max_kw=100.0, loop_capacity_kwh=50.0)
    assert k.ideal_reuse_mwh == pytest.approx(0.100)
    # without the buffer the surplus is lost to the dry cooler
    assert fold(trace, hp_max_kw=100.0).ideal_reuse_mwh == pytest.approx(0.050)
    # the loop can hold no more than its capacity, and what it held at the start counts
    k = fold(trace, hp_max_kw=100.0, loop_capacity_kwh=30.0, loop_start_kwh=999.0)
    assert k.ideal_reuse_mwh == pytest.approx(0.080)  # 50, then 30


def test_ideal_storage_takes_the_surplus_up_to_its_headroom_and_frees_it_by_serving() -> None:
    surplus = {"it_offered_kwh": 50.0, "demand_kw": 50.0}  # 100 could be made
    trace = [
        sample(**surplus),  # 50 to demand + 20 to fill the tank: 70 made, 35 evaporator
        sample(**surplus),  # tank full: 50 made
        sample(it_offered_kwh=0.0, demand_kw=30.0),  # the tank serves 20: empty
        sample(**surplus),  # 50 + 20 again
    ]
    k = fold(trace, tank_capacity_kwh=20.0)
    assert k.ideal_reuse_mwh == pytest.approx((70 + 50 + 0 + 70) / 2 / 1000)
    full = fold(trace, tank_capacity_kwh=20.0, tank_start_kwh=20.0)
    assert full.ideal_reuse_mwh == pytest.approx((50 + 50 + 0 + 70) / 2 / 1000)


def test_starts_short_cycles_and_trips_by_cause() -> None:
    cfg = KpiConfig(min_on_s=600.0, min_off_s=300.0)
    on, off = {"hp_running": True}, {"hp_running": False}
    trace = [
        sample(dt=100.0, **off),
        sample(dt=900.0, **on),  # start 1 at t=1000
        sample(dt=100.0, **off),  # stop at 1100 after 100 s on: short cycle
        sample(dt=100.0, **on),  # start 2 at 1200, 100 s after the stop: short cycle
        sample(dt=700.0, **on),
        sample(dt=100.0, **off, trip_code=TRIP_INTERNAL_FAULT),  # stop after 800 s; trip 1
        sample(dt=100.0, **off, trip_code=TRIP_INTERNAL_FAULT),  # the same trip, latched
        sample(dt=400.0, **off),
        sample(dt=100.0, **on),  # start 3 at 2600, 600 s after the stop: fine
        sample(dt=100.0, **off, trip_code=TRIP_EVAP_INLET_HIGH),  # trip 2, short cycle
    ]
    k = fold(trace, cfg)
    assert k.hp_starts == 3
    assert k.short_cycles == 3
    assert k.hp_trips == 2
    assert k.trips_by_cause == {"internal fault": 1, "evaporator inlet temperature high": 1}


def test_actuator_travel_sums_every_movement() -> None:
    trace = [
        sample(valve=0.0, fan=1.0, capacity=0.0),
        sample(valve=0.5, fan=0.2, capacity=0.2),
        sample(valve=0.25, fan=0.2, capacity=1.0),
        sample(valve=1.0, fan=0.0, capacity=0.0),
    ]
    k = fold(trace)
    assert k.valve_travel == pytest.approx(0.5 + 0.25 + 0.75)
    assert k.fan_travel == pytest.approx(0.8 + 0.0 + 0.2)
    assert k.capacity_travel == pytest.approx(0.2 + 0.8 + 1.0)


def test_maxima_pass_over_a_nan_reading_as_max_does() -> None:
    k = fold([sample(supply_c=40.0, rack_inlet_c=25.0),
              sample(supply_c=math.nan, rack_inlet_c=math.nan),
              sample(supply_c=39.0, rack_inlet_c=26.0)])  # fmt: skip
    assert k.max_supply_c == 40.0
    assert k.max_rack_inlet_c == 26.0


def test_ideal_takes_the_least_of_pump_source_and_sink_each_binding_in_turn() -> None:
    """Lift 2: the pump caps the first step, the source the second, the sink the third."""
    k = fold(
        [
            sample(it_offered_kwh=300.0, demand_kw=900.0),  # pump 100 < source 600, sink 900
            sample(it_offered_kwh=20.0, demand_kw=900.0),  # source 40 < pump 100, sink 900
            sample(it_offered_kwh=300.0, demand_kw=30.0),  # sink 30 < pump 100, source 600
        ],
        hp_max_kw=100.0,
    )
    assert k.ideal_reuse_mwh == pytest.approx((50.0 + 20.0 + 15.0) / 1000)


def test_a_sample_holds_the_step_energies_and_the_state_at_its_end() -> None:
    p = PlantParams()
    old = initial_state(p, it_power_kw=150.0)
    new = step(old, Actuators(0.5, True, 0.6, False, 0.5, 1), Disturbances(160.0, 5.0, 300.0),
               10.0, p)  # fmt: skip
    x = sample_between(old, new, 10.0, 300.0, 160.0, True, 2.0)
    assert type(x) is Sample
    assert x == Sample(
        10.0, new.supply_temp_c, new.air_temp_c + 2.0, new.tank_c[0],
        new.heat_delivered_to_dh_kwh - old.heat_delivered_to_dh_kwh,
        new.hp_heat_kwh - old.hp_heat_kwh, new.heat_recovered_kwh - old.heat_recovered_kwh,
        new.hp_electricity_kwh - old.hp_electricity_kwh, new.it_energy_kwh - old.it_energy_kwh,
        160.0 * 10.0 / 3600.0, new.fan_electricity_kwh - old.fan_electricity_kwh,
        True, 300.0, new.hp_running, new.hp_trip_code, new.plc_fallback, new.plc_overtemp,
        new.valve_position, new.fan_speed, new.hp_capacity,
    )  # fmt: skip
    assert x.it_kwh > 0.0 and x.fan_kwh > 0.0


def test_the_judge_comes_from_the_plant_spec() -> None:
    p = load_params(None, {"loop": {"supply_limit_c": 40.0}, "dh": {"supply_temp_c": 65.0},
                           "heat_pump": {"cop_factor": 0.9}})  # fmt: skip
    cfg = kpi_config(p)
    assert cfg.supply_limit_c == 40.0 and cfg.contract_supply_c == 65.0
    assert cfg.throttle_c == p.it.throttle_start_c
    cop = cop_from_lift(65.0 - 30.0, 65.0, p)  # from 10 K below the limit to the contract
    assert cfg.lift_ref == pytest.approx(cop / (cop - 1.0)) == reference_lift_factor(p)


def test_available_heat_is_the_it_heat_at_the_reference_lift_capped_by_the_pump() -> None:
    p = PlantParams()
    s = initial_state(p, it_power_kw=150.0)
    assert heat_available_kw(s, p, 1.3) == pytest.approx(195.0)
    big = initial_state(p, it_power_kw=280.0)
    assert heat_available_kw(big, p, 1.3) == p.heat_pump.heat_nominal_kw


def test_ideal_stores_count_the_tank_from_the_return_and_the_loop_from_the_hx_floor() -> None:
    p = PlantParams()
    s = initial_state(p, supply_temp_c=30.0, it_power_kw=150.0)  # tank 70, 60, 50, 40 degC
    st = ideal_stores(s, p)
    layer_kwh_per_k = 5000.0 * p.dh.cp_kj_kg_k / 3600.0
    assert st.hp_max_kw == p.heat_pump.heat_nominal_kw
    assert st.tank_start_kwh == pytest.approx(layer_kwh_per_k * (30 + 20 + 10 + 0))
    assert st.tank_capacity_kwh == pytest.approx(layer_kwh_per_k * 4 * (82 - 40))
    floor = p.recovery_hx.source_min_out_c
    loop = (
        p.it.air_capacity_kj_k * (s.air_temp_c - floor)
        + p.loop.rack_capacity_kj_k * (s.rack_temp_c - floor)
        + p.loop.supply_capacity_kj_k * (30.0 - floor)
    ) / 3600.0
    assert st.loop_start_kwh == pytest.approx(loop)
    assert st.loop_start_kwh < st.loop_capacity_kwh
