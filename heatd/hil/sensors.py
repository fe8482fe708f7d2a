"""Measurement layer: true plant state + active faults -> what a controller would read.

Sensor names (units; bools and codes are floats 0/1 and 0..4):
  pdu:       it_power (kW), it_energy (kWh)
  cdu:       coolant_supply_temp, coolant_return_temp (degC), coolant_flow (kg/s),
             valve_position (0..1 share to the recovery HX), rack_inlet_temp_1..N (degC)
  heatpump:  hp_running, hp_fault, hp_lockout (trip latched, needs reset), hp_trip_code
             (see heatd.hil.plant.TRIP_NAMES), hp_power (kW electric), hp_heat (kW),
             hp_heat_energy (kWh), hp_capacity_actual (0..1), hp_evap_inlet_temp,
             hp_cond_outlet_temp (degC)
  dh:        dh_supply_temp, dh_return_temp (degC), dh_demand, dh_heat (kW),
             storage_top_temp, storage_bottom_temp (degC; only if the site has storage)
  drycooler: fan_speed (0..1), fan_power (kW), outdoor_temp (degC)
  plc:       plc_fallback (0/1)
`SENSOR_ROLES` maps each name to the controller's role name.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence

from heatd.hil.faults import COMMS_KINDS, Fault
from heatd.hil.plant import PlantState
from heatd.hil.plant_params import PlantParams

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


_TRUE_NAMES = (
    "it_power", "it_energy", "coolant_supply_temp", "coolant_return_temp", "coolant_flow",
    "valve_position", "hp_running", "hp_fault", "hp_lockout", "hp_trip_code", "hp_power",
    "hp_heat", "hp_heat_energy", "hp_capacity_actual", "hp_evap_inlet_temp",
    "hp_cond_outlet_temp", "dh_supply_temp", "dh_return_temp", "dh_demand", "dh_heat",
    "fan_speed", "fan_power", "outdoor_temp", "plc_fallback",
)  # fmt: skip
"""The sensors every plant has, in the order `true_values` lists them."""

_Fixed = tuple[float, bool, tuple[float, ...], tuple[str, ...]]
_FIXED: dict[int, tuple[PlantParams, _Fixed]] = {}


def _fixed(params: PlantParams) -> _Fixed:
    """What `true_values` takes from the params, resolved once per params object (kept
    alive by the cache, so its id stays unique): coolant flow, storage, rack offsets, and
    the sensor names in the order of the values."""
    hit = _FIXED.get(id(params))
    if hit is None or hit[0] is not params:
        storage = params.storage.enabled
        offsets = tuple(rack_offsets(params))
        names = (
            *_TRUE_NAMES,
            *(("storage_top_temp", "storage_bottom_temp") if storage else ()),
            *(f"rack_inlet_temp_{i + 1}" for i in range(len(offsets))),
        )
        hit = (params, (params.loop.flow_kg_s, storage, offsets, names))
        _FIXED[id(params)] = hit
    return hit[1]


def true_value_names(params: PlantParams) -> tuple[str, ...]:
    """The sensor names of `true_values`, in its order."""
    return _fixed(params)[3]


def true_values(state: PlantState, params: PlantParams) -> list[float]:
    """Fault-free values straight from the plant state, in `true_value_names` order: what a
    co-simulator picks from without building the dict of `true_readings`."""
    flow, storage, offsets, _ = _fixed(params)
    tripped = 1.0 if state.hp_trip_code else 0.0
    out = [
        state.it_power_kw,
        state.it_energy_kwh,
        state.supply_temp_c,
        state.rack_temp_c,
        flow,
        state.valve_position,
        1.0 if state.hp_running else 0.0,
        tripped,
        tripped,
        float(state.hp_trip_code),
        state.hp_power_kw,
        state.hp_heat_kw,
        state.hp_heat_kwh,
        state.hp_capacity,
        state.hp_evap_inlet_c,
        state.hp_cond_outlet_c,
        state.dh_supply_temp_c,
        state.dh_return_temp_c,
        state.dh_demand_kw,
        state.dh_delivered_kw,
        state.fan_speed,
        state.fan_power_kw,
        state.outdoor_temp_c,
        1.0 if state.plc_fallback else 0.0,
    ]
    if storage:
        tank = state.tank_c
        out.append(tank[0])
        out.append(tank[-1])
    air = state.air_temp_c
    for offset in offsets:  # a loop, not a comprehension: no frame for four racks a step
        out.append(air + offset)
    return out


def true_readings(state: PlantState, params: PlantParams) -> dict[str, float]:
    """Fault-free values straight from the plant state."""
    return dict(zip(true_value_names(params), true_values(state, params), strict=True))


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
        if f.target in out:
            _corrupt(out, f, t, held)
    if dead:
        for name in out:
            if device_of(name) in dead:
                out[name] = None
    return out


def _corrupt(out: Readings, f: Fault, t: float, held: Mapping[int, float] | None) -> None:
    """One active sensor fault on its target's reading, in place."""
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


def measure(
    state: PlantState,
    faults: Iterable[Fault],
    t: float,
    params: PlantParams,
    held: Mapping[int, float] | None = None,
) -> Readings:
    """Measured sensor values by name (pure): `true_readings` then `apply_faults`."""
    return apply_faults(true_readings(state, params), faults, t, held)


def is_temperature(sensor: str) -> bool:
    return "_temp" in sensor


_NORMALS_PER_BATCH = 512


class SensorNoise:
    """Gaussian noise and a finite resolution on every temperature reading, seeded, so a
    controller is judged on what real sensors give. Bad readings (None, NaN) stay bad.

    The normal draws are Box-Muller pairs on the seeded uniform stream, the pairs
    :func:`random.gauss` makes, made a batch at a time: a simulated year takes some forty
    million, and ``random()`` is the part of :mod:`random` whose sequence Python keeps
    across versions.
    """

    def __init__(self, params: PlantParams, seed: int, names: Sequence[str]) -> None:
        p = params.sensors
        self.std, self.quantum = p.noise_std_k, p.quantum_k
        self.active = self.std > 0.0 or self.quantum > 0.0
        self._uniform = random.Random(f"{seed}/sensor-noise").random
        self._normals: list[float] = []
        """Standard normal draws still to use, the next one last."""
        self._positions = tuple(i for i, name in enumerate(names) if is_temperature(name))

    def _refill(self) -> list[float]:
        """The next batch of standard normal draws, the first of them last (for ``pop``)."""
        uniform = self._uniform
        out: list[float] = []
        for _ in range(_NORMALS_PER_BATCH // 2):
            angle = uniform() * math.tau
            radius = math.sqrt(-2.0 * math.log(1.0 - uniform()))
            out.append(math.cos(angle) * radius)
            out.append(math.sin(angle) * radius)
        out.reverse()
        self._normals = out
        return out

    def _one(self, x: float) -> float:
        if self.std > 0.0:
            x += (self._normals or self._refill()).pop() * self.std
        if self.quantum > 0.0:
            x = round(x / self.quantum) * self.quantum
        return x

    def apply(self, values: list[float]) -> None:
        """Noise on the temperature readings of ``values``, listed in the order of ``names``.

        Some thirteen readings a step, millions of steps a simulated year: the usual case,
        noise without a resolution, takes one draw per reading with nothing else called.
        The draws and their order are those of :meth:`_one`."""
        if self.quantum > 0.0 or self.std <= 0.0:
            for i in self._positions:
                x = values[i]
                if not math.isnan(x):
                    values[i] = self._one(x)
            return
        std, isnan, normals = self.std, math.isnan, self._normals
        for i in self._positions:
            x = values[i]
            if not isnan(x):
                if not normals:
                    normals = self._refill()
                values[i] = x + normals.pop() * std


class SensorLayer:
    """`measure` plus the memory a stuck sensor needs (the value when its fault began) and
    the site's sensor noise.

    One per consumer (server, co-simulation), since each samples at its own instants.
    """

    def __init__(self, params: PlantParams, seed: int = 0) -> None:
        self.params = params
        self._held: dict[int, float] = {}
        self.noise = SensorNoise(params, seed, true_value_names(params))

    def read(self, state: PlantState, faults: Iterable[Fault], t: float) -> Readings:
        faults = list(faults)
        values = true_values(state, self.params)
        if self.noise.active:
            self.noise.apply(values)
        true = dict(zip(true_value_names(self.params), values, strict=True))
        for f in faults:
            stuck = f.kind == "sensor_stuck" and f.active(t)
            if stuck and f.fault_id not in self._held and f.target in true:
                self._held[f.fault_id] = f.params.get("value", true[f.target])
        return apply_faults(true, faults, t, self._held)
