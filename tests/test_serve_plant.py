"""The live plant behind the servers, without sockets: commands, reset pulses shorter than
a step, substeps, scenario and injected faults."""

from __future__ import annotations

import math

import pytest

from heatd.hil.liveplant import LivePlant, scenario_for_site
from heatd.hil.plant import TRIP_INTERNAL_FAULT, TRIP_NONE
from heatd.hil.scenario import Scenario, scenario_from_dict


def scenario(*faults: dict[str, object]) -> Scenario:
    return scenario_from_dict({"name": "t", "weather": "copenhagen", "start_hour": 336,
                               "duration_h": 2, "faults": list(faults)})


def test_advance_steps_plant_time_in_substeps() -> None:
    plant = LivePlant(scenario())
    plant.advance(10.5)
    assert plant.t == pytest.approx(10.5)
    plant.advance(0.0)
    assert plant.t == pytest.approx(10.5)


def test_a_reset_pulse_between_two_steps_clears_a_latched_trip() -> None:
    plant = LivePlant(scenario({"kind": "hp_trip", "start_s": 0, "duration_s": 30}))
    plant.command_write("hp_enable", True)

    def run(seconds: float) -> None:  # with the heartbeat fed, so the PLC stays out of it
        for _ in range(int(seconds / 5)):
            plant.command_write("heartbeat", plant.command.heartbeat + 1)
            plant.advance(5.0)

    run(60.0)
    assert plant.state.hp_trip_code == TRIP_INTERNAL_FAULT  # latched after the fault ended
    assert not plant.state.hp_running
    plant.command_write("hp_reset", True)
    plant.command_write("hp_reset", False)  # released before the plant stepped
    run(5.0)
    assert plant.state.hp_trip_code == TRIP_NONE
    assert plant.state.hp_running


def test_heartbeat_commands_feed_the_plc_watchdog() -> None:
    plant = LivePlant(scenario())
    for beat in range(1, 10):
        plant.command_write("heartbeat", beat)
        plant.advance(20.0)
    assert not plant.state.plc_fallback
    plant.advance(40.0)
    assert plant.state.plc_fallback


def test_scenario_and_injected_faults_reach_the_readings() -> None:
    plant = LivePlant(scenario({"kind": "sensor_nan", "target": "rack_inlet_temp_2",
                                "start_s": 0, "duration_s": 100}))
    plant.advance(1.0)
    injected = plant.inject("sensor_dropout", "coolant_flow", duration_s=50.0)
    readings = plant.readings(plant.active_faults())
    assert math.isnan(readings["rack_inlet_temp_2"])  # type: ignore[arg-type]
    assert readings["coolant_flow"] is None
    assert readings["rack_inlet_temp_1"] is not None
    plant.advance(60.0)
    assert injected not in plant.active_faults()
    assert plant.readings(plant.active_faults())["coolant_flow"] == pytest.approx(7.2)


def test_comms_faults_are_left_to_the_protocol_layer() -> None:
    plant = LivePlant(scenario())
    plant.inject("comms_loss", "cdu", duration_s=10.0)
    readings = plant.readings(plant.active_faults())
    assert readings["coolant_supply_temp"] is not None  # a silent unit keeps its registers
    with pytest.raises(ValueError, match="physical"):
        plant.inject("hp_trip", "", 10.0)


def test_the_plant_gets_as_many_racks_as_the_site_has_sensors() -> None:
    base = scenario()
    twelve = scenario_for_site(base, 12)
    assert twelve.params.it.rack_count == 12 and base.params.it.rack_count == 4
    assert scenario_for_site(base, 0) is base
    readings = LivePlant(twelve).readings([])
    assert readings["rack_inlet_temp_12"] > readings["rack_inlet_temp_1"]  # type: ignore[operator]
