"""Which plant quantity each point of a site serves, and which actuator each written point
drives, derived from the site's role bindings: the daemon and the simulator read the same
YAML, so a site is described once and the two cannot disagree on what a register means.

Rules:
- an input role serves the sensor of that role (`heatd.hil.sensors.SENSOR_ROLES`); the i-th point
  of `rack.inlet_temp` serves `rack_inlet_temp_<i+1>`; redundant points serve the same one;
  the points of a summed role (`it.power`, one meter per rack) each serve an equal share;
- a feedback role serves the actuator's actual position;
- an output role drives one field of `heatd.hil.plant.Actuators`;
- a point bound to no role but named like a sensor (e.g. `fan_power`) serves that sensor;
- anything else is served as a constant 0 (and listed by `unbound`).
Fractions (valve, fan, capacity) are 0..1 in the plant; a point whose unit is "%" carries
percent, so its values are scaled by 100 both ways.
"""

from __future__ import annotations

from dataclasses import dataclass

from heatd.config import SiteConfig
from heatd.control import roles as r
from heatd.hil.sensors import SENSOR_ROLES, device_of

ACTUATOR_OF_ROLE: dict[str, str] = {
    r.VALVE_RECOVERY: "valve_recovery",
    r.HP_ENABLE: "hp_enable",
    r.HP_CAPACITY: "hp_capacity",
    r.HP_RESET: "hp_reset",
    r.DRYCOOLER_FAN: "fan_speed",
    r.PLC_HEARTBEAT: "heartbeat",
}
"""Output role -> field of `heatd.hil.plant.Actuators`."""

SENSOR_OF_FEEDBACK: dict[str, str] = {
    r.VALVE_RECOVERY_ACTUAL: "valve_position",
    r.DRYCOOLER_FAN_ACTUAL: "fan_speed",
    r.HP_CAPACITY_ACTUAL: "hp_capacity_actual",
}

_SENSOR_OF_INPUT: dict[str, str] = {
    role: sensor for sensor, role in SENSOR_ROLES.items() if role in r.INPUT_ROLES
}
_FRACTION_ROLES = frozenset({r.VALVE_RECOVERY, r.DRYCOOLER_FAN, r.HP_CAPACITY, *SENSOR_OF_FEEDBACK})
BOOL_ACTUATORS = frozenset({"hp_enable", "hp_reset"})


@dataclass(frozen=True, slots=True)
class Binding:
    """One point of the site and what it means to the plant."""

    device: str
    point: str
    role: str | None = None
    sensor: str | None = None
    """Sensor name whose measured value the point serves (inputs and feedback)."""
    actuator: str | None = None
    """Actuators field a write to this point sets (outputs)."""
    factor: float = 1.0
    """Engineering units per plant unit: 100 for a fraction served in percent."""

    @property
    def ref(self) -> str:
        return f"{self.device}.{self.point}"

    def served(self, plant_value: float | None) -> float | None:
        """The engineering value to serve for a measured plant value (None stays None)."""
        return None if plant_value is None else plant_value * self.factor

    def actuator_value(self, engineering: float | bool | int) -> float | bool | int:
        """A written engineering value as the plant's actuator wants it."""
        if self.actuator in BOOL_ACTUATORS:
            return bool(engineering)
        if self.actuator == "heartbeat":
            return int(engineering)
        return float(engineering) / self.factor


def _role_of_points(site: SiteConfig) -> dict[str, tuple[str, int]]:
    """device.point -> (role, index in the role's list); the first binding wins."""
    found: dict[str, tuple[str, int]] = {}
    for role in site.roles:
        for index, ref in enumerate(site.role_points(role)):
            found.setdefault(ref, (role, index))
    return found


def rack_count(site: SiteConfig) -> int:
    """How many racks the site has inlet sensors for: the plant must model that many."""
    return len(site.role_points(r.RACK_INLET_TEMP))


def bind_site(site: SiteConfig, sensors: frozenset[str] | set[str]) -> dict[str, Binding]:
    """Every point of the site, by `device.point`. `sensors` are the sensor names the plant
    produces (`heatd.hil.sensors.sensor_names`), for binding points by name."""
    roles = _role_of_points(site)
    out: dict[str, Binding] = {}
    for device_name, device in site.devices.items():
        for name, point in device.points.items():
            ref = f"{device_name}.{name}"
            role, index = roles.get(ref, (None, 0))
            factor = 100.0 if role in _FRACTION_ROLES and point.unit == "%" else 1.0
            binding = Binding(device_name, name, role, factor=factor)
            if role in ACTUATOR_OF_ROLE:
                binding = Binding(device_name, name, role, actuator=ACTUATOR_OF_ROLE[role],
                                  factor=factor)
            elif role == r.RACK_INLET_TEMP:
                binding = Binding(device_name, name, role, sensor=f"rack_inlet_temp_{index + 1}")
            elif role in SENSOR_OF_FEEDBACK:
                binding = Binding(device_name, name, role, sensor=SENSOR_OF_FEEDBACK[role],
                                  factor=factor)
            elif role in _SENSOR_OF_INPUT:
                share = 1.0 / len(site.role_points(role)) if role in r.SUMMED_ROLES else 1.0
                binding = Binding(device_name, name, role, sensor=_SENSOR_OF_INPUT[role],
                                  factor=share)
            elif role is None and name in sensors:
                binding = Binding(device_name, name, sensor=name)
            out[ref] = binding
    return out


def unbound(bindings: dict[str, Binding]) -> list[str]:
    """Points that neither serve a plant value nor drive an actuator."""
    return [ref for ref, b in bindings.items() if b.sensor is None and b.actuator is None]


def site_devices_of(bindings: dict[str, Binding]) -> dict[str, set[str]]:
    """Sensor-layer device (pdu, cdu, ...) -> site devices serving any of its sensors, so a
    comms fault aimed at the plant's `heatpump` silences whichever site devices serve it."""
    groups: dict[str, set[str]] = {}
    for b in bindings.values():
        if b.sensor is not None:
            groups.setdefault(device_of(b.sensor), set()).add(b.device)
    return groups
