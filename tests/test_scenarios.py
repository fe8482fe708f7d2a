"""Scenario library, bundled data series, fault schedule and the measurement layer."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest

from heatd.hil import series
from heatd.hil.faults import ALL_KINDS, COMMS_KINDS, PHYSICAL_KINDS, SENSOR_KINDS
from heatd.hil.plant import Actuators, Disturbances, PlantState, step, stored_heat_kwh
from heatd.hil.scenario import (
    Scenario,
    ScenarioError,
    list_scenarios,
    load_scenario,
    scenario_from_dict,
)
from heatd.hil.sensors import DEVICES, device_of, measure, role_of, sensor_names, true_readings

REQUIRED = {
    "winter_week", "summer_week", "shoulder_season", "hp_trip", "sensor_stuck",
    "sensor_drift", "sensor_nan", "sensor_dropout", "comms_loss", "opcua_restart",
    "dh_demand_collapse", "ai_burst", "storage_full", "combined",
}  # fmt: skip


def controller(state: PlantState, k: int) -> Actuators:
    fan = min(max((state.supply_temp_c - 28.0) / 6.0, 0.0), 1.0)
    valve = 0.8 if state.hp_running else 0.0
    capacity = 1.0 if state.tank_c[0] < 72.0 else 0.3
    return Actuators(valve, True, capacity, k % 180 == 0, fan, k)


def run(sc: Scenario, dt: float, until: float | None = None) -> list[PlantState]:
    state = sc.initial_state()
    trace = [state]
    end = sc.duration_s if until is None else until
    k = 0
    while state.t < end - 1e-9:
        state = step(state, controller(state, k), sc.disturbances(state.t), dt, sc.params)
        trace.append(state)
        k += 1
    return trace


def test_library_has_the_required_scenarios() -> None:
    assert set(list_scenarios()) >= REQUIRED
    kinds = {f.kind for name in list_scenarios() for f in load_scenario(name).faults}
    assert kinds == ALL_KINDS  # every fault kind appears somewhere


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_scenario_loads_and_runs(name: str) -> None:
    sc = load_scenario(name)
    trace = run(sc, dt=20.0)
    first, last = trace[0], trace[-1]
    assert last.t == pytest.approx(sc.duration_s)
    for s in trace[:: max(1, len(trace) // 50)]:
        assert all(math.isfinite(x) for x in (s.supply_temp_c, s.rack_temp_c, *s.tank_c))
        values = sc.measure(s, s.t)
        assert set(values) == set(sensor_names(sc.params))
    heat_in = last.it_energy_kwh + last.hp_electricity_kwh
    heat_out = last.heat_delivered_to_dh_kwh + last.heat_rejected_drycooler_kwh
    stored = stored_heat_kwh(last, sc.params) - stored_heat_kwh(first, sc.params)
    assert abs(heat_in - heat_out - stored) < 0.005 * last.it_energy_kwh
    assert last.it_energy_kwh == pytest.approx(
        sum(s.it_power_kw for s in trace[1:]) * 20.0 / 3600.0, rel=1e-9
    )


def test_same_seed_same_trace_other_seed_other_trace() -> None:
    a = run(load_scenario("combined", seed=7), dt=10.0, until=6 * 3600.0)
    b = run(load_scenario("combined", seed=7), dt=10.0, until=6 * 3600.0)
    c = run(load_scenario("combined", seed=8), dt=10.0, until=6 * 3600.0)
    assert a == b
    assert a != c
    sa, sc_ = load_scenario("combined", seed=7), load_scenario("combined", seed=8)
    assert [f.start_s for f in sa.faults] != [f.start_s for f in sc_.faults]  # seeded jitter


def test_file_seed_is_the_default() -> None:
    sc = load_scenario("winter_week")
    assert sc.seed == 1
    same = load_scenario("winter_week", seed=1)
    assert [sc.disturbances(t) for t in range(0, 86400, 600)] == [
        same.disturbances(t) for t in range(0, 86400, 600)
    ]


def test_it_load_follows_the_cpu_trace_scaled_to_the_site() -> None:
    sc = load_scenario("winter_week")
    it = sc.params.it
    cpu = series.cpu_load()
    for hour in range(0, 168, 7):
        base = it.idle_kw + (it.peak_kw - it.idle_kw) * cpu[sc.start_hour + hour]
        minute = [sc.disturbances(hour * 3600.0 + m * 60.0).it_power_kw for m in range(-5, 6)]
        assert all(it.idle_kw * 0.8 <= kw <= it.peak_kw for kw in minute)
        assert sum(minute) / len(minute) == pytest.approx(base, rel=0.15)  # noisy around it
    values = [sc.disturbances(t * 60.0).it_power_kw for t in range(0, 7 * 1440)]
    mean_base = (
        sum(it.idle_kw + (it.peak_kw - it.idle_kw) * cpu[sc.start_hour + h] for h in range(168))
        / 168
    )
    assert sum(values) / len(values) == pytest.approx(mean_base, rel=0.05)
    assert len({round(v, 6) for v in values[:60]}) > 30  # sub-hourly variation


def test_disturbances_interpolate_the_hours_and_hold_the_ends_outside_the_window() -> None:
    sc = load_scenario("winter_week")
    temps = series.outdoor_temp(sc.spec.weather)
    h = sc.start_hour + 10
    d = sc.disturbances(10 * 3600.0 + 900.0)  # a quarter of the way to the next hour
    assert type(d) is Disturbances
    assert d.outdoor_temp_c == temps[h] + 0.25 * (temps[h + 1] - temps[h])
    assert sc.disturbances(-60.0) == sc.disturbances(0.0)
    assert sc.disturbances(sc.duration_s + 60.0) == sc.disturbances(sc.duration_s)


def test_weather_and_demand_come_from_the_data() -> None:
    sc = load_scenario("summer_week")
    temps = series.outdoor_temp("chicago")
    assert sc.disturbances(3 * 3600.0).outdoor_temp_c == pytest.approx(temps[sc.start_hour + 3])
    demand = series.dh_demand("chicago", sc.params.dh.annual_demand_mwh, "MFH")
    assert sc.disturbances(5 * 3600.0 + 1800.0).dh_demand_kw == pytest.approx(
        demand[sc.start_hour + 5]
    )


@pytest.mark.parametrize("building", ["MFH", "COM"])
def test_bdew_demand_sums_to_the_annual_demand_and_peaks_in_winter(building: str) -> None:
    demand = series.dh_demand("copenhagen", 4000.0, building)
    assert len(demand) == series.HOURS_PER_YEAR
    assert sum(demand) / 1000.0 == pytest.approx(4000.0)
    january = sum(demand[: 31 * 24])
    july = sum(demand[181 * 24 : 212 * 24])
    assert january > 3 * july > 0
    assert series.bdew_daily_factor(-10.0) > series.bdew_daily_factor(10.0)


def _scenario(*faults: dict[str, Any], **extra: Any) -> Scenario:
    data = {"name": "t", "weather": "copenhagen", "start_hour": 100, "duration_h": 4.0}
    data.update(extra)
    return scenario_from_dict({**data, "faults": list(faults)}, seed=3)


def test_sensor_faults_change_only_what_is_read() -> None:
    sc = _scenario(
        {"kind": "sensor_stuck", "target": "coolant_supply_temp", "start_s": 600,
         "duration_s": 1800},
        {"kind": "sensor_drift", "target": "coolant_return_temp", "start_s": 600,
         "params": {"rate_per_h": 3.0}},
        {"kind": "sensor_nan", "target": "rack_inlet_temp_2", "start_s": 600, "duration_s": 600},
        {"kind": "sensor_dropout", "target": "storage_top_temp", "start_s": 600, "duration_s": 600},
        site_overrides={"sensors": {"noise_std_k": 0.0}},  # exact readings: faults alone
    )  # fmt: skip
    trace = run(sc, dt=10.0, until=3600.0)
    by_t = {round(s.t): s for s in trace}
    layer = sc.sensor_layer()
    for t in range(0, 3601, 10):
        state = by_t[t]
        read = layer.read(state, sc.active_faults(t), t)
        true = true_readings(state, sc.params)
        if t < 600:
            assert read == true
            continue
        if t < 2400:
            assert (
                read["coolant_supply_temp"]
                == true_readings(by_t[600], sc.params)["coolant_supply_temp"]
            )
        else:
            assert read["coolant_supply_temp"] == true["coolant_supply_temp"]
        assert read["coolant_return_temp"] == pytest.approx(
            true["coolant_return_temp"] + 3.0 * (t - 600) / 3600.0
        )
        if t < 1200:
            assert math.isnan(read["rack_inlet_temp_2"])  # type: ignore[arg-type]
            assert read["storage_top_temp"] is None
        else:
            assert read["rack_inlet_temp_2"] == true["rack_inlet_temp_2"]
            assert read["storage_top_temp"] == true["storage_top_temp"]
        assert read["rack_inlet_temp_1"] == true["rack_inlet_temp_1"]
    stuck_true = [true_readings(by_t[t], sc.params)["coolant_supply_temp"] for t in (600, 2390)]
    assert stuck_true[0] != stuck_true[1]  # the truth moved while the reading did not
    # the physics never saw the sensor faults
    clean = run(_scenario(), dt=10.0, until=3600.0)
    assert [s.supply_temp_c for s in clean] == [s.supply_temp_c for s in trace]


def test_pure_measure_uses_held_or_given_stuck_values() -> None:
    sc = _scenario(
        {"kind": "sensor_stuck", "target": "outdoor_temp", "start_s": 0,
         "params": {"value": -40.0}},
        {"kind": "sensor_stuck", "target": "it_power", "start_s": 0},
    )  # fmt: skip
    state = sc.initial_state()
    read = measure(state, sc.active_faults(10.0), 10.0, sc.params, held={1: 123.0})
    assert read["outdoor_temp"] == -40.0
    assert read["it_power"] == 123.0
    assert measure(state, sc.active_faults(10.0), 10.0, sc.params) == sc.measure(state, 10.0)


def test_comms_faults_silence_a_whole_device_and_are_queryable() -> None:
    sc = _scenario(
        {"kind": "comms_loss", "target": "cdu", "start_s": 300, "duration_s": 600},
        {"kind": "server_restart", "target": "heatpump", "start_s": 1200, "duration_s": 45},
    )
    state = sc.initial_state()
    during = sc.measure(state, 400.0)
    for name, value in during.items():
        assert (value is None) == (device_of(name) == "cdu"), name
    restart = sc.active_faults(1210.0)
    assert [(f.kind, f.target) for f in restart] == [("server_restart", "heatpump")]
    assert all(v is None for k, v in sc.measure(state, 1210.0).items() if k.startswith("hp_"))
    assert sc.active_faults(1245.0) == []
    assert None not in sc.measure(state, 1300.0).values()


def test_physical_faults_act_through_the_disturbances() -> None:
    sc = _scenario(
        {"kind": "hp_trip", "start_s": 600, "duration_s": 300},
        {"kind": "it_load_step", "start_s": 1200, "duration_s": 600, "params": {"step_kw": 90.0}},
        {"kind": "dh_demand_collapse", "start_s": 3600, "duration_s": 3600},
        {"kind": "storage_full", "start_s": 7200, "duration_s": 3600},
    )
    clean = _scenario()
    assert sc.disturbances(700.0).hp_fault and not sc.disturbances(900.0).hp_fault
    assert sc.disturbances(1500.0).it_power_kw == pytest.approx(
        clean.disturbances(1500.0).it_power_kw + 90.0
    )
    assert sc.disturbances(4000.0).dh_demand_kw == pytest.approx(
        0.05 * clean.disturbances(4000.0).dh_demand_kw
    )
    full = sc.disturbances(8000.0)
    assert full.dh_return_temp_c == 70.0
    assert full.dh_demand_kw == pytest.approx(0.1 * clean.disturbances(8000.0).dh_demand_kw)
    assert sc.disturbances(11000.0) == clean.disturbances(11000.0)
    # the trip reaches the plant: heat pump tripped, waiting for a reset
    tripped = run(sc, dt=10.0, until=1000.0)[-1]
    assert tripped.hp_trip_code != 0


def test_fault_kinds_partition_into_layers() -> None:
    assert PHYSICAL_KINDS | SENSOR_KINDS | COMMS_KINDS == ALL_KINDS
    assert not (PHYSICAL_KINDS & SENSOR_KINDS or SENSOR_KINDS & COMMS_KINDS)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"kind": "sensor_nan", "target": "coolant_temp", "start_s": 0}, "unknown sensor"),
        ({"kind": "comms_loss", "target": "boiler", "start_s": 0}, "unknown device"),
        ({"kind": "meteor", "start_s": 0}, "kind"),
        ({"kind": "hp_trip", "target": "cdu", "start_s": 0}, "no target"),
        ({"kind": "sensor_nan", "start_s": 0}, "needs a target"),
        ({"kind": "sensor_drift", "target": "it_power", "start_s": 0, "params": {"rate": 1}},
         "unknown params"),
        ({"kind": "hp_trip", "start_s": 0, "when": 3}, "when"),
    ],
)  # fmt: skip
def test_bad_faults_are_rejected(fault: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        _scenario(fault)


def test_bad_scenario_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nweather: copenhagen\nstart_hour: 0\nduration_h: 1\nlenght: 3\n")
    with pytest.raises(ScenarioError, match=r"(?s)broken\.yaml.*lenght"):
        load_scenario(path)
    path.write_text("name: x\nstart_hour: 0\nduration_h: 1\nsite: missing.yaml\n")
    with pytest.raises(ScenarioError, match=r"missing\.yaml"):
        load_scenario(path)


def test_scenario_can_override_site_parameters(tmp_path: Path) -> None:
    sc = _scenario(site_overrides={"storage": {"enabled": False}, "it": {"rack_count": 2}})
    names = sensor_names(sc.params)
    assert "storage_top_temp" not in names and "rack_inlet_temp_2" in names
    assert "rack_inlet_temp_3" not in names
    site = tmp_path / "small.yaml"
    site.write_text("it:\n  peak_kw: 120.0\n  idle_kw: 40.0\n")
    scen = tmp_path / "s.yaml"
    scen.write_text("name: s\nstart_hour: 0\nduration_h: 2\nsite: small.yaml\n")
    assert load_scenario(scen).params.it.peak_kw == 120.0


def test_sensor_names_map_to_roles_and_devices() -> None:
    sc = load_scenario("winter_week")
    for name in sensor_names(sc.params):
        assert device_of(name) in DEVICES
    assert role_of("coolant_supply_temp") == "coolant.supply_temp"
    assert role_of("rack_inlet_temp_1") == "rack.inlet_temp[0]"
    assert role_of("plc_fallback") == "plc.fallback"


def test_bundled_data_is_listed_with_its_licence() -> None:
    data = Path(series.DATA_DIR)
    readme = (data / "README.md").read_text()
    for path in sorted(data.rglob("*.csv")):
        assert path.name in readme or path.name.split("_")[0] in readme, path
        with path.open() as fh:
            assert next(csv.reader(fh))  # a header row
    assert readme.count("MIT") >= 3 and "BSD-3" in readme
