"""Co-simulation: heatd keeps every server cool on every scenario of the library.

The normal suite runs each scenario over a window that holds all its faults (one hour
before the first to one hour after the last; fault-free scenarios: twelve hours around
their hottest hour) at the daemon-like 10 s step. The full-length runs and the scoring
goals are behind ``-m slow``.
"""

from __future__ import annotations

import math

import pytest

from heatd.control import roles as R
from heatd.hil.cosim import NO_CONTROLLER, Run, SnapshotBuilder, simulate
from heatd.hil.kpi import kpi_config
from heatd.hil.scenario import Scenario, list_scenarios, load_scenario
from heatd.hil.score import baseline_params, make_controller, site_control
from heatd.hil.sensors import sensor_names, true_readings

MARGIN_S = 3600.0


def fault_window(sc: Scenario) -> tuple[float, float]:
    """(start, duration) holding every fault of the scenario, or its hottest 12 hours."""
    if sc.faults:
        start = max(0.0, min(f.start_s for f in sc.faults) - MARGIN_S)
        end = max(min(f.end_s, sc.duration_s) for f in sc.faults) + MARGIN_S
        return start, min(end, sc.duration_s) - start
    hours = int(sc.duration_s // 3600)
    hottest = max(range(hours), key=lambda h: sc.disturbances(h * 3600.0).outdoor_temp_c)
    start = min(max(0.0, (hottest - 6) * 3600.0), sc.duration_s - 12 * 3600.0)
    return start, 12 * 3600.0


def run(name: str, controller: str, window: bool = True) -> Run:
    sc = load_scenario(name)
    control = site_control(sc.params)
    start, duration = fault_window(sc) if window else (0.0, None)
    return simulate(
        sc,
        make_controller(controller, sc.params, control),
        start_s=start,
        duration_s=duration,
        kpi=kpi_config(sc.params),
    )


@pytest.mark.parametrize("name", list_scenarios())
def test_heatd_keeps_cooling_on_every_scenario_window(name: str) -> None:
    r = run(name, "heatd")
    k = r.kpis
    assert k.duration_h >= 2.0
    assert k.supply_over_limit_s == 0.0, f"supply peaked at {k.max_supply_c:.2f} degC"
    assert k.plc_high_limit_s == 0.0  # the PLC never had to step in
    assert k.plc_fallback_s == 0.0  # the heartbeat kept the PLC out of local fallback
    assert k.it_heat_reused_mwh > 0.0  # recovery really ran: the guarantee was not free
    assert k.reuse_ratio is not None and k.reuse_ratio <= 1.01  # the ideal is a bound


def test_heatd_resets_the_heat_pump_after_a_trip_and_runs_again() -> None:
    r = run("hp_trip", "heatd")
    assert r.kpis.hp_trips == 1
    assert r.kpis.hp_starts >= 2  # restarted once the fault cleared
    assert r.final.hp_running and r.final.hp_trip_code == 0


def test_a_valve_seized_on_recovery_is_cooled_through_the_heat_pump() -> None:
    """The valve seizes mostly on the recovery side and the afternoon then needs more dry
    cooling than it leaves: the heat pump, kept running, is the cooling of that flow."""
    k = run("valve_stuck", "heatd").kpis
    assert k.supply_over_limit_s == 0.0 and k.plc_high_limit_s == 0.0
    assert k.hp_starts == 1 and k.hp_trips == 0


def test_no_controller_writes_nothing_and_the_plc_falls_back() -> None:
    sc = load_scenario("winter_week")
    r = simulate(sc, NO_CONTROLLER, duration_s=3 * 3600.0)
    assert r.final.plc_fallback
    assert r.kpis.plc_fallback_s >= 3 * 3600.0 - 60.0
    assert r.kpis.it_heat_reused_mwh == 0.0 and r.kpis.hp_starts == 0
    assert r.kpis.supply_over_limit_s == 0.0  # in winter the dry cooler alone suffices
    assert r.events == 0


def test_kpi_energies_are_the_plant_meters() -> None:
    sc = load_scenario("shoulder_season")
    control = site_control(sc.params)
    r = simulate(sc, make_controller("heatd", sc.params, control), duration_s=6 * 3600.0)
    k = r.kpis
    assert k.heat_delivered_mwh * 1000 == pytest.approx(r.final.heat_delivered_to_dh_kwh, rel=1e-9)
    assert k.hp_electricity_mwh * 1000 == pytest.approx(r.final.hp_electricity_kwh, rel=1e-9)
    assert k.condenser_heat_mwh * 1000 == pytest.approx(r.final.hp_heat_kwh, rel=1e-9)
    assert k.it_heat_reused_mwh * 1000 == pytest.approx(r.final.heat_recovered_kwh, rel=1e-9)
    assert k.it_energy_mwh * 1000 == pytest.approx(r.final.it_energy_kwh, rel=1e-9)
    assert k.duration_h == pytest.approx(6.0)
    assert r.final.t == pytest.approx(6 * 3600.0)


def test_same_seed_same_figures() -> None:
    a = run("sensor_nan", "heatd").kpis
    b = run("sensor_nan", "heatd").kpis
    assert a == b


def test_a_window_starts_mid_scenario_in_plant_time() -> None:
    sc = load_scenario("comms_loss")
    r = simulate(
        sc,
        make_controller("baseline", sc.params, site_control(sc.params)),
        start_s=7200.0,
        duration_s=600.0,
        dt=10.0,
    )
    assert r.start_s == 7200.0 and r.final.t == pytest.approx(7800.0)
    assert r.kpis.duration_h == pytest.approx(600.0 / 3600.0)
    with pytest.raises(ValueError, match="dt"):
        simulate(sc, NO_CONTROLLER, dt=0.0)


def test_snapshot_binds_every_sensor_with_a_role() -> None:
    sc = load_scenario("winter_week")
    build = SnapshotBuilder(sensor_names(sc.params))
    readings = true_readings(sc.initial_state(), sc.params)
    readings["coolant_supply_temp"] = None  # dropout / comms loss
    readings["outdoor_temp"] = math.nan  # a NaN is a value: the controller must catch it
    snap = build(readings, 123.0)
    sig = snap.signals
    assert snap.now == 123.0
    (supply,) = sig[R.COOLANT_SUPPLY_TEMP]
    assert not supply.good and supply.value is None and supply.reason
    (outdoor,) = sig[R.OUTDOOR_TEMP]
    assert outdoor.good and math.isnan(outdoor.value)  # type: ignore[arg-type]
    racks = sig[R.RACK_INLET_TEMP]
    assert [s.value for s in racks] == [
        readings[f"rack_inlet_temp_{i + 1}"] for i in range(sc.params.it.rack_count)
    ]
    # what actuators report back arrives on the feedback roles, never on the output roles
    assert sig[R.VALVE_RECOVERY_ACTUAL][0].value == readings["valve_position"]
    assert sig[R.DRYCOOLER_FAN_ACTUAL][0].value == readings["fan_speed"]
    assert sig[R.HP_CAPACITY_ACTUAL][0].value == readings["hp_capacity_actual"]
    assert all(s.ts == 123.0 for points in sig.values() for s in points)
    # the plant instruments every input and feedback role but the heat pump's own
    # anti-short-cycle timer, which it does not model; nothing else is bound
    assert set(sig) == (set(R.INPUT_ROLES) | set(R.FEEDBACK_ROLES)) - {R.HP_MIN_OFF_ACTIVE}


def test_baseline_is_sized_for_the_same_plant() -> None:
    sc = load_scenario("winter_week")
    b = baseline_params(sc.params)
    c = site_control(sc.params)
    assert b.hp_nominal_heat_kw == c.optimiser.hp_nominal_heat_kw == 300.0
    assert b.supply_limit_c == c.envelope.supply_limit_c == sc.params.loop.supply_limit_c


def test_physical_trip_leaves_nothing_available() -> None:
    sc = load_scenario("hp_trip")
    (trip,) = sc.faults
    r = simulate(
        sc,
        NO_CONTROLLER,
        start_s=trip.start_s,
        duration_s=trip.end_s - trip.start_s,
        trace_points=10,
    )
    assert r.trace is not None and max(r.trace["available_kw"]) == 0.0
    assert r.kpis.ideal_reuse_mwh == 0.0 and r.kpis.reuse_ratio is None


# --- full-length runs and the scoring goals -------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", list_scenarios())
def test_heatd_keeps_cooling_over_the_whole_scenario(name: str) -> None:
    k = run(name, "heatd", window=False).kpis
    assert k.supply_over_limit_s == 0.0 and k.plc_high_limit_s == 0.0
    assert k.plc_fallback_s == 0.0
