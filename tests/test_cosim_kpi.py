"""KPIs on hand-made traces: every integral and counter against a figure worked out by hand."""

from __future__ import annotations

import pytest

from hil.kpi import (
    Accumulator,
    IdealStores,
    KpiConfig,
    Sample,
    heat_available_kw,
    ideal_stores,
    lift_factor,
)
from hil.params import PlantParams, compile_params
from hil.plant import cop_from_lift, initial_state

H = 3600.0


def sample(**kw: object) -> Sample:
    """A quiet hour: nothing over its limit, nothing running, all energies zero."""
    base: dict[str, object] = {
        "dt": H, "supply_c": 30.0, "rack_inlet_c": 33.0, "delivered_kwh": 0.0,
        "hp_heat_kwh": 0.0, "hp_electricity_kwh": 0.0, "it_kwh": 0.0, "fan_kwh": 0.0,
        "lift_factor": 0.0, "demand_kw": 0.0, "hp_running": False, "hp_tripped": False,
        "plc_fallback": False, "valve": 0.0, "fan": 0.0, "capacity": 0.0,
    }  # fmt: skip
    base.update(kw)
    return Sample(**base)  # type: ignore[arg-type]


def fold(samples: list[Sample], config: KpiConfig | None = None, **stores: float):
    acc = Accumulator(config or KpiConfig(), IdealStores(**stores))
    for x in samples:
        acc.add(x)
    return acc.result()


def test_cooling_violation_integrates_kelvin_hours_and_seconds_over_the_limits() -> None:
    cfg = KpiConfig(supply_limit_c=45.0, rack_inlet_limit_c=40.0)
    k = fold(
        [
            sample(dt=1800.0, supply_c=47.0),  # 2 K for half an hour: 1.0 K.h
            sample(dt=360.0, supply_c=45.5, rack_inlet_c=41.0),  # 0.5 K x 0.1 h, 360 s
            sample(dt=600.0, supply_c=45.0, rack_inlet_c=40.0),  # at the limits: nothing
            sample(dt=60.0, rack_inlet_c=52.0, plc_fallback=True),
        ],
        cfg,
    )
    assert k.supply_violation_kh == pytest.approx(1.05)
    assert k.rack_inlet_violation_s == pytest.approx(420.0)
    assert k.plc_fallback_s == pytest.approx(60.0)
    assert k.max_supply_c == 47.0 and k.max_rack_inlet_c == 52.0
    assert k.duration_h == pytest.approx((1800 + 360 + 600 + 60) / H)


def test_energies_cop_erf_and_co2() -> None:
    cfg = KpiConfig(gas_kg_per_kwh=0.2, grid_kg_per_kwh=0.4)
    trace = [
        sample(delivered_kwh=300.0, hp_heat_kwh=280.0, hp_electricity_kwh=70.0, it_kwh=200.0,
               fan_kwh=5.0, demand_kw=400.0),
        sample(delivered_kwh=100.0, hp_heat_kwh=120.0, hp_electricity_kwh=30.0, it_kwh=200.0,
               fan_kwh=5.0, demand_kw=100.0),
    ]  # fmt: skip
    k = fold(trace, cfg)
    assert k.heat_delivered_mwh == pytest.approx(0.4)
    assert k.heat_recovered_mwh == pytest.approx(0.4)
    assert k.hp_electricity_mwh == pytest.approx(0.1)
    assert k.seasonal_cop == pytest.approx(4.0)
    assert k.it_energy_mwh == pytest.approx(0.4) and k.fan_electricity_mwh == pytest.approx(0.01)
    assert k.demand_mwh == pytest.approx(0.5)
    assert k.erf == pytest.approx(400.0 / (400.0 + 10.0 + 100.0))
    assert k.co2_avoided_t == pytest.approx((400.0 * 0.2 - 100.0 * 0.4) / 1000.0)


def test_default_emission_factors() -> None:
    k = fold([sample(delivered_kwh=1000.0, hp_electricity_kwh=250.0)])
    assert k.co2_avoided_t == pytest.approx((1000 * 0.202 - 250 * 0.380) / 1000)


def test_nothing_run_gives_no_ratio_cop_or_erf_rather_than_a_division_by_zero() -> None:
    k = fold([sample()])
    assert k.recovery_ratio is None and k.seasonal_cop is None and k.erf is None
    assert k.hp_starts == k.short_cycles == k.hp_trips == 0


def test_ideal_is_limited_by_the_it_heat_lifted_the_heat_pump_and_the_demand() -> None:
    k = fold(
        [
            # 100 kWh of IT heat x 1.25 = 125 kWh, below the pump's 250 and the demand
            sample(it_kwh=100.0, lift_factor=1.25, demand_kw=300.0, hp_heat_kwh=120.0),
            # 200 x 1.25 = 250 possible, but only 80 wanted (no tank, no loop buffer)
            sample(it_kwh=200.0, lift_factor=1.25, demand_kw=80.0, hp_heat_kwh=80.0),
            # half an hour: 24 x 1.25 = 30, the pump could make 125, 50 wanted
            sample(dt=1800.0, it_kwh=24.0, lift_factor=1.25, demand_kw=100.0, hp_heat_kwh=20.0),
            # plenty of everything, but the pump is capped at 250 kW
            sample(it_kwh=400.0, lift_factor=1.25, demand_kw=900.0, hp_heat_kwh=250.0),
            # the heat pump is unavailable (internal fault): nothing
            sample(it_kwh=200.0, lift_factor=0.0, demand_kw=300.0),
        ],
        hp_max_kw=250.0,
    )
    assert k.ideal_heat_mwh == pytest.approx((125 + 80 + 30 + 250) / 1000)
    assert k.recovery_ratio == pytest.approx(470.0 / 485.0)


def test_ideal_loop_buffers_heat_the_pump_cannot_take_yet() -> None:
    trace = [
        sample(it_kwh=150.0, lift_factor=2.0, demand_kw=1000.0),  # 100 made, 50 evaporator
        sample(it_kwh=0.0, lift_factor=2.0, demand_kw=1000.0),  # the loop gives 50 back
    ]
    k = fold(trace, hp_max_kw=100.0, loop_capacity_kwh=50.0)
    assert k.ideal_heat_mwh == pytest.approx(0.200)
    # without the buffer the surplus is lost to the dry cooler
    assert fold(trace, hp_max_kw=100.0).ideal_heat_mwh == pytest.approx(0.100)
    # the loop can hold no more than its capacity, and what it held at the start counts
    k = fold(trace, hp_max_kw=100.0, loop_capacity_kwh=30.0, loop_start_kwh=999.0)
    assert k.ideal_heat_mwh == pytest.approx(0.160)  # 100, then 30 x 2


def test_ideal_storage_takes_the_surplus_up_to_its_headroom_and_frees_it_by_serving() -> None:
    surplus = {"it_kwh": 50.0, "lift_factor": 2.0, "demand_kw": 50.0}  # 100 could be made
    trace = [
        sample(**surplus),  # 50 to demand + 20 to fill the tank
        sample(**surplus),  # tank full: 50
        sample(it_kwh=0.0, lift_factor=2.0, demand_kw=30.0),  # the tank serves 20: empty
        sample(**surplus),  # 50 + 20 again
    ]
    k = fold(trace, tank_capacity_kwh=20.0)
    assert k.ideal_heat_mwh == pytest.approx((70 + 50 + 0 + 70) / 1000)
    # a tank that starts full has no headroom for the first surplus
    full = fold(trace, tank_capacity_kwh=20.0, tank_start_kwh=20.0)
    assert full.ideal_heat_mwh == pytest.approx((50 + 50 + 0 + 70) / 1000)
    # a start above the capacity is clamped, not a negative headroom
    over = fold(trace[:1], tank_capacity_kwh=20.0, tank_start_kwh=50.0)
    assert over.ideal_heat_mwh == pytest.approx(0.050)


def test_starts_short_cycles_and_trips() -> None:
    cfg = KpiConfig(min_on_s=600.0, min_off_s=300.0)
    on, off = {"hp_running": True}, {"hp_running": False}
    trace = [
        sample(dt=100.0, **off),
        sample(dt=900.0, **on),  # start 1 at t=1000
        sample(dt=100.0, **off),  # stop at 1100 after 100 s on: short cycle
        sample(dt=100.0, **on),  # start 2 at 1200, 100 s after the stop: short cycle
        sample(dt=700.0, **on),
        sample(dt=100.0, **off, hp_tripped=True),  # stop at 2000 after 800 s: fine; trip 1
        sample(dt=100.0, **off, hp_tripped=True),  # the same trip, still latched
        sample(dt=400.0, **off),
        sample(dt=100.0, **on),  # start 3 at 2600, 600 s after the stop: fine
        sample(dt=100.0, **off, hp_tripped=True),  # trip 2; stop after 100 s: short cycle
    ]
    k = fold(trace, cfg)
    assert k.hp_starts == 3
    assert k.short_cycles == 3
    assert k.hp_trips == 2


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


def test_as_dict_has_every_field_in_order() -> None:
    d = fold([sample()]).as_dict()
    assert list(d)[:3] == ["duration_h", "supply_violation_kh", "rack_inlet_violation_s"]
    assert "recovery_ratio" in d and "erf" in d and "co2_avoided_t" in d


def test_lift_is_the_plant_cop_at_full_output_and_available_heat_is_capped() -> None:
    p = PlantParams()
    c = compile_params(p)
    s = initial_state(p, it_power_kw=150.0)
    # tank bottom at 40: the condenser makes 300 kW at the flow that lands on 70 degC
    evap = s.rack_temp_c - p.recovery_hx.approach_k
    cop = cop_from_lift(70.0 - evap, 70.0, p)
    assert lift_factor(s, p) == pytest.approx(cop / (cop - 1.0))
    assert lift_factor(s, c) == lift_factor(s, p)
    assert heat_available_kw(s, p) == pytest.approx(150.0 * cop / (cop - 1.0))
    big = initial_state(p, it_power_kw=280.0)
    assert heat_available_kw(big, p) == p.heat_pump.heat_nominal_kw
    # a hot tank bottom pushes the condenser outlet up: a lower COP, more heat per IT kW
    hot = s._replace(tank_c=(70.0, 70.0, 70.0, 65.0))
    assert lift_factor(hot, p) > lift_factor(s, p)


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
    cold = ideal_stores(s._replace(tank_c=(30.0,) * 4, supply_temp_c=5.0, rack_temp_c=5.0,
                                   air_temp_c=5.0), p)  # fmt: skip
    assert cold.tank_start_kwh == 0.0 and cold.loop_start_kwh == 0.0
