"""A family of plants: every scenario on randomised sites, so no result holds on one only.

A member is drawn from a seed and an index, so ``(seed, index)`` always gives the same
plant, whatever else runs. The ranges (:data:`RANGES`) are those of real edge sites:

- heat pump: condenser capacity 0.5-1.5 x the IT peak; COP 0.8-1.2 x the model's curve;
- loop thermal mass (room air, racks, supply header) x 0.5-2 (log-uniform);
- dry cooler UA x 0.6-1.4; coolant flow x 0.7-1.3; coil air 5 K cooler to 10 K warmer
  than the weather station;
- recovery valve diverting or mixing, stroke 30-300 s, actuator lag 0-30 s;
- temperature sensors: noise 0-1 K (standard deviation), resolution exact or 0.1 K,
  except on a scenario that sets its own (quiet_sensors);
- the plant found at start: heat pump running, stopped or tripped; loop warm (38 degC)
  or cold (15 degC).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from heatd.hil.cosim import PlantStart
from heatd.hil.plant_params import PlantParams, deep_merge, params_from_dict
from heatd.hil.scenario import Scenario

RANGES: dict[str, tuple[float, float]] = {
    "hp_capacity_x_it_peak": (0.5, 1.5),
    "cop_factor": (0.8, 1.2),
    "thermal_mass_x": (0.5, 2.0),
    "drycooler_ua_x": (0.6, 1.4),
    "flow_x": (0.7, 1.3),
    "air_offset_k": (-5.0, 10.0),
    "valve_stroke_s": (30.0, 300.0),
    "valve_lag_s": (0.0, 30.0),
    "sensor_noise_k": (0.0, 1.0),
}
"""Documented ranges of the family (uniform unless the module docstring says otherwise)."""

HP_STARTS = ("running", "stopped", "tripped")
LOOP_STARTS = {"warm": 38.0, "cold": 15.0}


@dataclass(frozen=True, slots=True)
class Member:
    """One plant of the family: what it changes on a scenario's plant, and its start."""

    seed: int
    index: int
    draws: dict[str, Any]
    start: PlantStart

    @property
    def label(self) -> str:
        return f"plant {self.index}"

    def describe(self) -> str:
        d = self.draws
        return (
            f"{self.label}: hp {d['hp_capacity_x_it_peak']:.2f}x peak, cop x{d['cop_factor']:.2f}, "
            f"mass x{d['thermal_mass_x']:.2f}, dry cooler x{d['drycooler_ua_x']:.2f}, "
            f"flow x{d['flow_x']:.2f}, air {d['air_offset_k']:+.1f} K, {d['valve_kind']} valve "
            f"{d['valve_stroke_s']:.0f} s lag {d['valve_lag_s']:.0f} s, noise "
            f"{d['sensor_noise_k']:.2f} K q {d['sensor_quantum_k']:g}, start {d['hp_start']} "
            f"{d['loop_start']}"
        )

    def plant(self, base: PlantParams, own_sensors: bool = False) -> PlantParams:
        """``base`` (a scenario's plant) changed as this member draws it; its sensors kept
        if ``own_sensors`` (a scenario about its transmitters)."""
        d = self.draws
        mass = d["thermal_mass_x"]
        over: dict[str, Any] = {
            "heat_pump": {
                "heat_nominal_kw": d["hp_capacity_x_it_peak"] * base.it.peak_kw,
                "cop_factor": base.heat_pump.cop_factor * d["cop_factor"],
            },
            "it": {"air_capacity_kj_k": base.it.air_capacity_kj_k * mass},
            "loop": {
                "rack_capacity_kj_k": base.loop.rack_capacity_kj_k * mass,
                "supply_capacity_kj_k": base.loop.supply_capacity_kj_k * mass,
                "flow_kg_s": base.loop.flow_kg_s * d["flow_x"],
            },
            "drycooler": {
                "ua_nominal_kw_k": base.drycooler.ua_nominal_kw_k * d["drycooler_ua_x"],
                "air_offset_k": base.drycooler.air_offset_k + d["air_offset_k"],
            },
            "valve": {
                "kind": d["valve_kind"],
                "stroke_s": d["valve_stroke_s"],
                "lag_s": d["valve_lag_s"],
            },
            "sensors": {
                "noise_std_k": d["sensor_noise_k"],
                "quantum_k": d["sensor_quantum_k"],
            },
        }
        if own_sensors:
            del over["sensors"]
        return params_from_dict(deep_merge(base.model_dump(), over), self.label)

    def scenario(self, scenario: Scenario) -> Scenario:
        """The scenario on this member's plant (same weather, load, demand and faults). A
        scenario that sets its own sensors (``site_overrides.sensors``, e.g. quiet_sensors'
        0.1 K transmitters) keeps them: drawn noise would make it another scenario."""
        own = "sensors" in scenario.spec.site_overrides
        return Scenario(scenario.spec, self.plant(scenario.params, own), scenario.seed)


def draw(seed: int, index: int, corners: bool = False) -> Member:
    """Member ``index`` of the family of ``seed``: the same pair, the same plant.

    ``corners`` draws from the edges of the ranges instead (each figure at its low or
    high end, one in five anywhere between): where a falsification search looks first.
    """
    rng = random.Random(f"{'corners' if corners else 'family'}/{seed}/{index}")
    d: dict[str, Any] = {}
    for name, (lo, hi) in RANGES.items():
        if corners and rng.random() < 0.8:
            d[name] = rng.choice((lo, hi))
        elif name == "thermal_mass_x":
            d[name] = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        else:
            d[name] = rng.uniform(lo, hi)
    d["valve_kind"] = rng.choice(("diverting", "mixing"))
    d["sensor_quantum_k"] = rng.choice((0.0, 0.1))
    d["hp_start"] = rng.choice(HP_STARTS)
    d["loop_start"] = rng.choice(tuple(LOOP_STARTS))
    running = d["hp_start"] == "running"
    start = PlantStart(
        supply_temp_c=LOOP_STARTS[d["loop_start"]],
        hp_running=running,
        hp_capacity=0.6 if running else 0.0,
        hp_tripped=d["hp_start"] == "tripped",
        valve=1.0 if running else 0.0,
        fan=0.0 if running else 1.0,
    )
    return Member(seed, index, d, start)


def members(seed: int, count: int) -> list[Member]:
    return [draw(seed, i) for i in range(count)]
