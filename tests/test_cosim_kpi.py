"""KPIs on hand-made traces: every integral and counter against a figure worked out by hand."""

from __future__ import annotations

import pytest

from hil.kpi import Accumulator, KpiConfig, Sample, heat_available_kw, storage_kwh
from hil.params import PlantParams, compile_params
from hil.plant import cop_from_lift, initial_state

H = 3600.0


def sample(**kw: object) -> Sample:
    """A quiet hour: nothing over its limit, nothing running, all energies zero."""
    base: dict[str, object] = {
        "dt": H, "supply_c": 30.0, "rack_inlet_c": 33.0, "delivered_kwh": 0.0,
        "hp_heat_kwh": 0.0, "hp_electricity_kwh": 0.0, "it_kwh": 0.0, "fan_kwh": 0.0,
        "available_kw": 0.0, "demand_kw": 0.0, "hp_running": False, "hp_tripped": False,
        "plc_fallback": False, "valve": 0.0, "fan": 0.0, "capacity": 0.0,
    }  # fmt: skip
    base.update(kw)
    return Sample(**base)  # type: ignore[arg-type]


def fold(samples: list[Sample], config: KpiConfig | None = None, **storage: float):
    acc = Accumulator(config or KpiConfig(), **storage)
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


def test_ideal_is_limited_by_what_is_available_and_by_demand() -> None:
    k = fold(
        [
            sample(available_kw=100.0, demand_kw=300.0, hp_heat_kwh=90.0),  # 100 available
            sample(available_kw=250.0, demand_kw=80.0, hp_heat_kwh=80.0),  # 80 wanted
            sample(dt=1800.0, available_kw=60.0, demand_kw=100.0, hp_heat_kwh=30.0),  # 30
        ]
    )
    assert k.ideal_heat_mwh == pytest.approx(0.210)
    assert k.recovery_ratio == pytest.approx(200.0 / 210.0)


def test_ideal_storage_takes_the_surplus_up_to_its_headroom_and_frees_it_by_serving() -> None:
    trace = [
        sample(available_kw=100.0, demand_kw=50.0),  # 50 to demand + 20 to fill the tank
        sample(available_kw=100.0, demand_kw=50.0),  # tank full: 50
        sample(available_kw=0.0, demand_kw=30.0),  # tank serves 20 of the 30: empty again
        sample(available_kw=100.0, demand_kw=50.0),  # 50 + 20 again
    ]
    k = fold(trace, storage_capacity_kwh=20.0, storage_start_kwh=0.0)
    assert k.ideal_heat_mwh == pytest.approx((70 + 50 + 0 + 70) / 1000)
    # a tank that starts full has no headroom for the first surplus
    full = fold(trace, storage_capacity_kwh=20.0, storage_start_kwh=20.0)
    assert full.ideal_heat_mwh == pytest.approx((50 + 50 + 0 + 70) / 1000)
    # a start above the capacity is clamped, not a negative headroom
    over = fold(trace[:1], storage_capacity_kwh=20.0, storage_start_kwh=50.0)
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


def test_heat_available_is_the_it_heat_lifted_at_full_output_capped_by_the_heat_pump() -> None:
    p = PlantParams()
    c = compile_params(p)
    s = initial_state(p, it_power_kw=150.0)
    # tank bottom at 40: the condenser makes 300 kW at the flow that lands on 70 degC
    evap = s.rack_temp_c - p.recovery_hx.approach_k
    cop = cop_from_lift(70.0 - evap, 70.0, p)
    assert heat_available_kw(s, p) == pytest.approx(150.0 * cop / (cop - 1.0))
    assert heat_available_kw(s, c) == heat_available_kw(s, p)
    big = initial_state(p, it_power_kw=280.0)
    assert heat_available_kw(big, p) == p.heat_pump.heat_nominal_kw
    # a hot tank bottom pushes the condenser outlet up: a lower COP, more heat per IT kW
    hot = s._replace(tank_c=(70.0, 70.0, 70.0, 65.0))
    assert heat_available_kw(hot, p) > heat_available_kw(s, p)


def test_storage_content_counts_from_the_nominal_return_temperature() -> None:
    p = PlantParams()
    s = initial_state(p)  # 70, 60, 50, 40 degC in 4 layers of 5 m3
    layer_kwh_per_k = 5000.0 * p.dh.cp_kj_kg_k / 3600.0
    assert storage_kwh(s, p) == pytest.approx(layer_kwh_per_k * (30 + 20 + 10 + 0))
    assert storage_kwh(s, p, capacity=True) == pytest.approx(layer_kwh_per_k * 4 * (82 - 40))
    cold = s._replace(tank_c=(30.0, 30.0, 30.0, 30.0))
    assert storage_kwh(cold, p) == 0.0
