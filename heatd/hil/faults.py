"""Fault objects of a scenario's schedule, and which layer each kind acts on.

Three layers, so each consumer takes only what concerns it:
- PHYSICAL faults change the plant (the scenario folds them into `Disturbances`);
- SENSOR faults change what a controller reads (`heatd.hil.sensors.measure`), never the physics;
- COMMS faults take a whole device off the wire: `measure` returns None for all its
  sensors, and a protocol server stops answering (comms_loss: a Modbus unit goes silent)
  or restarts (server_restart: an OPC UA server drops its sessions and comes back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

PHYSICAL_KINDS = frozenset({"hp_trip", "dh_demand_collapse", "it_load_step", "storage_full",
                            "valve_stuck"})
SENSOR_KINDS = frozenset({"sensor_stuck", "sensor_drift", "sensor_nan", "sensor_dropout"})
COMMS_KINDS = frozenset({"comms_loss", "server_restart"})
ALL_KINDS = PHYSICAL_KINDS | SENSOR_KINDS | COMMS_KINDS

# Parameters each kind accepts, with their defaults.
KIND_PARAMS: dict[str, dict[str, float]] = {
    "hp_trip": {},
    "dh_demand_collapse": {"factor": 0.05},
    "it_load_step": {"step_kw": 100.0},
    "storage_full": {"return_temp_c": 70.0, "demand_factor": 0.1},
    "valve_stuck": {},
    "sensor_stuck": {},
    "sensor_drift": {"rate_per_h": 2.0},
    "sensor_nan": {},
    "sensor_dropout": {},
    "comms_loss": {},
    "server_restart": {},
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One scheduled fault, active on [start_s, end_s) of scenario time.

    `target` is a sensor name (sensor kinds), a device name (comms kinds) or empty
    (physical kinds). `fault_id` is its index in the schedule: a stable key, e.g. for the
    value a stuck sensor holds.
    """

    fault_id: int
    kind: str
    target: str
    start_s: float
    end_s: float
    params: Mapping[str, float] = field(default_factory=dict, hash=False)

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.end_s

    def param(self, name: str) -> float:
        return self.params.get(name, KIND_PARAMS[self.kind][name])
