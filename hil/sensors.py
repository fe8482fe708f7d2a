"""Measurement layer: true plant state + active faults -> what a controller would read.

Sensor names (units; bools and codes are floats 0/1 and 0..4):
  pdu:       it_power (kW), it_energy (kWh)
  cdu:       coolant_supply_temp, coolant_return_temp (degC), coolant_flow (kg/s),
             valve_position (0..1 share to the recovery HX), rack_inlet_temp_1..N (degC)
  heatpump:  hp_running, hp_fault, hp_lockout (trip latched, needs reset), hp_trip_code
             (see hil.plant.TRIP_NAMES), hp_power (kW electric), hp_heat (kW),
             hp_heat_energy (kWh), hp_capacity_actual (0..1), hp_evap_inlet_temp,
             hp_cond_outlet_temp (degC)
  dh:        dh_supply_temp, dh_return_temp (degC), dh_demand, dh_heat (kW),
             storage_top_temp, storage_bottom_temp (degC; only if the site has storage)
  drycooler: fan_speed (0..1), fan_power (kW), outdoor_temp (degC)
  plc:       plc_fallback (0/1)
`SENSOR_ROLES` maps each name to the controller's role name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hil.faults import COMMS_KINDS, Fault
from hil.params import PlantParams
from hil.plant import PlantState

Readings = dict[str, float | None]

_DEVICE_OF_FIXED = {
    "it_power": "pdu",
    "it_energy": "pdu",
    "coolant_supply_temp": "cdu",
    "coolant_return_temp": "cdu",
    "coolant_flow": "cdu",
    "valve_position": "cdu",
    "hp_running": "heatpump",
    "hp_fault": "heatpump",
    "hp_lockout": "heatpump",
    "hp_trip_code": "heatpump",
    "hp_power": "heatpump",
    "hp_heat": "heatpump",
    "hp_heat_energy": "heatpump",
    "hp_capacity_actual": "heatpump",
    "hp_evap_inlet_temp": "heatpump",
    "hp_cond_outlet_temp": "heatpump",
    "dh_supply_temp": "dh",
    "dh_return_temp": "dh",
    "dh_demand": "dh",
    "dh_heat": "dh",
    "storage_top_temp": "dh",
    "storage_bottom_temp": "dh",
    "fan_speed": "drycooler",
    "fan_power": "drycooler",
    "outdoor_temp": "drycooler",
    "plc_fallback": "plc",
}
DEVICES = frozenset(_DEVICE_OF_FIXED.values())

SENSOR_ROLES = {
    "it_power": "it.power",
    "it_energy": "it.energy",
    "coolant_supply_temp": "coolant.supply_temp",
    "coolant_return_temp": "coolant.return_temp",
    "coolant_flow": "coolant.flow",
    "valve_position": "valve.recovery",
    "hp_running": "hp.running",
    "hp_fault": "hp.fault",
    "hp_lockout": "hp.lockout",
    "hp_trip_code": "hp.trip_code",
    "hp_power": "hp.power",
    "hp_heat": "hp.heat",
    "hp_heat_energy": "hp.heat_energy",
    "hp_capacity_actual": "hp.capacity",
    "dh_supply_temp": "dh.supply_temp",
    "dh_return_temp": "dh.return_temp",
    "dh_demand": "dh.demand",
    "storage_top_temp": "storage.top_temp",
    "storage_bottom_temp": "storage.bottom_temp",
    "fan_speed": "drycooler.fan",
    "outdoor_temp": "outdoor.temp",
    "plc_fallback": "plc.fallback",
}  # rack_inlet_temp_<i> -> rack.inlet_temp[<i-1>]; feedback points keep output role names


def rack_offsets(params: PlantParams) -> list[float]:
    """Per-rack inlet offsets above the room-air node, spread evenly (hot spots differ)."""
    n = params.it.rack_count
    spread = params.it.rack_inlet_spread_k
    return [spread * i / (n - 1) if n > 1 else 0.0 for i in range(n)]


def sensor_names(params: PlantParams) -> list[str]:
    names = [k for k in _DEVICE_OF_FIXED if params.storage.enabled or "storage" not in k]
    return names + [f"rack_inlet_temp_{i + 1}" for i in range(params.it.rack_count)]


def device_of(sensor: str) -> str:
    return "cdu" if sensor.startswith("rack_inlet_temp_") else _DEVICE_OF_FIXED[sensor]


def role_of(sensor: str) -> str:
    if sensor.startswith("rack_inlet_temp_"):
        return f"rack.inlet_temp[{int(sensor.rsplit('_', 1)[1]) - 1}]"
    return SENSOR_ROLES.get(sensor, sensor)


_FIXED: dict[int, tuple[PlantParams, float, bool, tuple[tuple[str, float], ...]]] = {}


def _fixed(params: PlantParams) -> tuple[float, bool, tuple[tuple[str, float], ...]]:
    """What `true_readings` takes from the params, resolved once per params object (kept
    alive by the cache, so its id stays unique): coolant flow, storage, (rack sensor, offset)."""
    hit = _FIXED.get(id(params))
    if hit is None or hit[0] is not params:
        racks = tuple(
            (f"rack_inlet_temp_{i + 1}", offset) for i, offset in enumerate(rack_offsets(params))
        )
        hit = (params, params.loop.flow_kg_s, params.storage.enabled, racks)
        _FIXED[id(params)] = hit
    return hit[1:]


def true_readings(state: PlantState, params: PlantParams) -> dict[str, float]:
    """Fault-free values straight from the plant state."""
    flow, storage, racks = _fixed(params)
    tripped = 1.0 if state.hp_trip_code else 0.0
    out = {
        "it_power": state.it_power_kw,
        "it_energy": state.it_energy_kwh,
        "coolant_supply_temp": state.supply_temp_c,
        "coolant_return_temp": state.rack_temp_c,
        "coolant_flow": flow,
        "valve_position": state.valve_position,
        "hp_running": 1.0 if state.hp_running else 0.0,
        "hp_fault": tripped,
        "hp_lockout": tripped,
        "hp_trip_code": float(state.hp_trip_code),
        "hp_power": state.hp_power_kw,
        "hp_heat": state.hp_heat_kw,
        "hp_heat_energy": state.hp_heat_kwh,
        "hp_capacity_actual": state.hp_capacity,
        "hp_evap_inlet_temp": state.hp_evap_inlet_c,
        "hp_cond_outlet_temp": state.hp_cond_outlet_c,
        "dh_supply_temp": state.dh_supply_temp_c,
        "dh_return_temp": state.dh_return_temp_c,
        "dh_demand": state.dh_demand_kw,
        "dh_heat": state.dh_delivered_kw,
        "fan_speed": state.fan_speed,
        "fan_power": state.fan_power_kw,
        "outdoor_temp": state.outdoor_temp_c,
        "plc_fallback": 1.0 if state.plc_fallback else 0.0,
    }
    if storage:
        out["storage_top_temp"] = state.tank_c[0]
        out["storage_bottom_temp"] = state.tank_c[-1]
    air = state.air_temp_c
    for name, offset in racks:
        out[name] = air + offset
    return out


def apply_faults(
    values: Mapping[str, float],
    faults: Iterable[Fault],
    t: float,
    held: Mapping[int, float] | None = None,
) -> Readings:
    """Corrupt true values by the active sensor and comms faults (pure).

    stuck: the value held for that fault (`held[fault_id]`, else params["value"], else the
    current true value: the first reading taken while the fault is active); drift: plus
    rate_per_h * hours since the fault started; nan: NaN; dropout: None; comms loss /
    server restart: None for every sensor of the target device.
    """
    out: Readings = dict(values)
    dead: set[str] = set()
    for f in faults:
        if not f.active(t):
            continue
        if f.kind in COMMS_KINDS:
            dead.add(f.target)
            continue
        if f.target not in out:
            continue
        if f.kind == "sensor_stuck":
            if held is not None and f.fault_id in held:
                out[f.target] = held[f.fault_id]
            elif "value" in f.params:
                out[f.target] = f.params["value"]
        elif f.kind == "sensor_drift":
            base = out[f.target]
            if base is not None:
                out[f.target] = base + f.param("rate_per_h") * (t - f.start_s) / 3600.0
        elif f.kind == "sensor_nan":
            out[f.target] = float("nan")
        elif f.kind == "sensor_dropout":
            out[f.target] = None
    if dead:
        for name in out:
            if device_of(name) in dead:
                out[name] = None
    return out


def measure(
    state: PlantState,
    faults: Iterable[Fault],
    t: float,
    params: PlantParams,
    held: Mapping[int, float] | None = None,
) -> Readings:
    """Measured sensor values by name (pure): `true_readings` then `apply_faults`."""
    return apply_faults(true_readings(state, params), faults, t, held)


class SensorLayer:
    """`measure` plus the memory a stuck sensor needs: the value when its fault began.

    One per consumer (server, co-simulation), since each samples at its own instants.
    """

    def __init__(self, params: PlantParams) -> None:
        self.params = params
        self._held: dict[int, float] = {}

    def read(self, state: PlantState, faults: Iterable[Fault], t: float) -> Readings:
        faults = list(faults)
        true = true_readings(state, self.params)
        for f in faults:
            stuck = f.kind == "sensor_stuck" and f.active(t)
            if stuck and f.fault_id not in self._held and f.target in true:
                self._held[f.fault_id] = f.params.get("value", true[f.target])
        return apply_faults(true, faults, t, self._held)
