"""Frozen verdicts against the plant: a quiet transmitter on a steady loop is trusted and
costs no compressor start; a stuck one is still caught as soon as before."""

from __future__ import annotations

from typing import Any

from heatd.control.core import Decision, step
from heatd.control.signals import Snapshot
from heatd.control.state import State, initial_state
from heatd.hil.cosim import Controller, simulate
from heatd.hil.family import draw
from heatd.hil.kpi import Kpis
from heatd.hil.scenario import Scenario, load_scenario, scenario_from_dict
from heatd.hil.score import baseline_controller, baseline_params, site_control


def _run(name: str | Scenario) -> tuple[Kpis, dict[str, float], Kpis]:
    """heatd on the scenario, with the first instant each role was declared frozen, and
    the rule-based baseline on the same plant."""
    sc = load_scenario(name) if isinstance(name, str) else name
    frozen: dict[str, float] = {}

    def watched(snapshot: Snapshot, state: State, params: Any, now: float) -> Decision[State]:
        d = step(snapshot, state, params, now)
        for role, why in d.invalid.items():
            if "frozen" in why:
                frozen.setdefault(role, now)
        return d

    heatd = simulate(sc, Controller("heatd", watched, site_control(sc.params), initial_state))
    base = simulate(sc, baseline_controller(baseline_params(sc.params)))
    return heatd.kpis, frozen, base.kpis


def test_quiet_healthy_transmitters_are_not_frozen_and_cost_no_starts() -> None:
    heatd, frozen, base = _run("quiet_sensors")
    assert frozen == {}
    assert heatd.hp_starts <= base.hp_starts
    assert heatd.supply_over_limit_s == 0.0
    assert heatd.it_heat_reused_mwh >= base.it_heat_reused_mwh


def test_a_stuck_supply_transmitter_is_still_caught_after_frozen_after_s() -> None:
    sc = load_scenario("sensor_stuck")
    fault = sc.faults[0]
    _, frozen, _ = _run("sensor_stuck")
    after = site_control(sc.params).validation.frozen_after_s
    assert after is not None
    assert fault.start_s <= frozen["coolant.supply_temp"] <= fault.start_s + after


def test_one_stuck_rack_point_of_two_is_caught_and_costs_no_start() -> None:
    """Stuck for 12 h on the quiet loop: declared once the loop moves, and the racks stay
    known from the other point while the supply is measured."""
    spec = load_scenario("quiet_sensors").spec.model_dump()
    spec["faults"] = [{"kind": "sensor_stuck", "target": "rack_inlet_temp_2",
                       "start_s": 21600.0, "duration_s": 43200.0}]
    heatd, frozen, base = _run(scenario_from_dict(spec))
    assert set(frozen) == {"rack.inlet_temp"}
    assert 21600.0 < frozen["rack.inlet_temp"] < 64800.0
    assert heatd.hp_starts <= base.hp_starts


def test_the_family_keeps_the_quiet_scenarios_own_transmitters() -> None:
    """Drawn noise (0-1 K) would make quiet_sensors another scenario; other scenarios get
    the member's draw."""
    quiet, drawn = load_scenario("quiet_sensors"), load_scenario("winter_week")
    for index in range(5):
        member = draw(7, index)
        assert member.scenario(quiet).params.sensors == quiet.params.sensors
        noise = member.scenario(drawn).params.sensors.noise_std_k
        assert noise == member.draws["sensor_noise_k"]
