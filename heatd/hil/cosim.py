"""Lockstep co-simulation: any controller against the plant model, without sockets.

Each step, in plant time t:
1. the sensor layer measures the plant with the scenario's faults active at t
   (a None reading - dropout, comms loss - becomes a bad Signal; NaN stays a value, so
   the controller's own validation has to catch it);
2. the readings become a control Snapshot (role -> Signals), as the daemon would freeze;
3. the controller steps and its setpoints become the plant's Actuators, with the
   heartbeat bumped every step as the daemon does, so the site PLC does not fall back;
4. the plant steps by dt with the scenario's disturbances at t.
The "none" controller writes nothing at all: the plant runs on its defaults and its PLC
(no heartbeat, so the PLC falls back to local cooling), the floor every controller is
scored against.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from heatd.control import baseline
from heatd.control import roles as R
from heatd.control.core import Decision, step
from heatd.control.params import ControlParams
from heatd.control.signals import SampledSignals, Snapshot
from heatd.control.state import initial_state as heatd_initial_state
from heatd.hil.faults import Fault
from heatd.hil.kpi import (
    Accumulator,
    KpiConfig,
    Kpis,
    Sample,
    heat_available_kw,
    ideal_stores,
    sample_between,
)
from heatd.hil.kpi import kpi_config as plant_kpi_config
from heatd.hil.plant import TRIP_INTERNAL_FAULT, TRIP_NONE, Actuators, PlantState
from heatd.hil.plant import initial_state as plant_initial_state
from heatd.hil.plant import step as plant_step
from heatd.hil.plant_params import PlantParams, compile_params
from heatd.hil.scenario import Scenario
from heatd.hil.sensors import (
    Readings,
    SensorNoise,
    rack_offsets,
    role_of,
    sensor_names,
    true_value_names,
    true_values,
)

CONTROLLERS = ("heatd", "baseline", "none")


class StepError(ValueError):
    """A co-simulation step the plant's PLC would not take from a controller."""


def longest_step(params: PlantParams) -> float:
    """The longest step a controller can be co-simulated at on this plant. The controller
    bumps the heartbeat once a step, and the site PLC, watching it at every substep of the
    plant, falls back to local cooling (valve to the dry cooler, heat pump off) once it has
    not changed for ``plc.heartbeat_timeout_s``: a longer step would run a plant that never
    recovers any heat, whatever the controller decides."""
    return params.plc.heartbeat_timeout_s


def check_step(dt: float, params: PlantParams) -> None:
    """Refuse, in one line naming the largest step that works, a step a controller cannot
    be co-simulated at on ``params`` (see :func:`longest_step`)."""
    limit = longest_step(params)
    if dt > limit:
        raise StepError(
            f"--dt {dt:g}: longer than the plant's PLC heartbeat timeout "
            f"(plc.heartbeat_timeout_s {limit:g} s), after which the PLC runs the plant on "
            f"local cooling with the heat pump off; --dt must be at most {limit:g} s")

_FEEDBACK_OF_OUTPUT = {out: fb for fb, out in R.FEEDBACK_ROLES.items()}
_RACK_PREFIX = R.RACK_INLET_TEMP + "["


@dataclass(frozen=True, slots=True)
class Controller:
    """A controller as the co-simulator drives it: a step function, its params and its
    initial state. ``step`` None means a controller that never writes."""

    name: str
    step: Callable[[Snapshot, Any, Any, float], Decision[Any]] | None
    params: Any
    initial_state: Callable[[float], Any]


def heatd_controller(params: ControlParams) -> Controller:
    return Controller("heatd", step, params, heatd_initial_state)


def baseline_controller(params: baseline.BaselineParams) -> Controller:
    return Controller("baseline", baseline.step, params, baseline.initial_state)


NO_CONTROLLER = Controller("none", None, None, lambda now: None)


class SnapshotBuilder:
    """Sensor readings -> Snapshot, with the sensor -> role table resolved once per site.

    Every sensor the plant has is bound, as on a fully instrumented site. Output roles
    that sensors report (actual valve position, fan speed, capacity) become the feedback
    roles; sensors without a control role (fan power, condenser outlet...) are left out,
    as a site file would not bind them. A None reading is a bad signal. The readings are
    kept as they are (:class:`SampledSignals`): Signals are made only where looked up.
    """

    def __init__(self, names: list[str]) -> None:
        plain: list[tuple[str, str]] = []
        racks: list[tuple[int, str]] = []
        for name in names:
            role = role_of(name)
            role = _FEEDBACK_OF_OUTPUT.get(role, role)
            if role.startswith(_RACK_PREFIX):
                racks.append((int(role[len(_RACK_PREFIX) : -1]), name))
            elif R.is_input_role(role):
                plain.append((name, role))
        self._plain = tuple(plain)
        self._racks = tuple(name for _, name in sorted(racks))

    def __call__(self, readings: Readings, now: float) -> Snapshot:
        get = readings.get
        sampled: dict[str, float | tuple[float | None, ...] | None] = {
            role: get(name) for name, role in self._plain
        }
        if self._racks:
            sampled[R.RACK_INLET_TEMP] = tuple([get(name) for name in self._racks])
        return Snapshot(now, SampledSignals(now, sampled))

    def picker(self, names: Sequence[str]) -> Callable[[Sequence[float | None], float], Snapshot]:
        """The same Snapshot from a list of readings in the order of ``names`` (what
        :func:`heatd.hil.sensors.true_values` lists), picked by position rather than by name."""
        index = {name: i for i, name in enumerate(names)}
        roles = tuple(role for _, role in self._plain)
        plain = _pick([index[name] for name, _ in self._plain])
        racks = _pick([index[name] for name in self._racks]) if self._racks else None

        def pick(values: Sequence[float | None], now: float) -> Snapshot:
            sampled: dict[str, object] = dict(zip(roles, plain(values), strict=True))
            if racks is not None:
                sampled[_RACK] = racks(values)
            return Snapshot(now, SampledSignals(now, sampled))

        return pick


def _pick(positions: list[int]) -> Callable[[Sequence[float | None]], tuple[float | None, ...]]:
    """values -> the tuple of values at ``positions`` (itemgetter, but always a tuple)."""
    if len(positions) == 1:
        (i,) = positions
        return lambda values: (values[i],)
    return itemgetter(*positions)


_RACK = R.RACK_INLET_TEMP

_new_tuple = tuple.__new__
"""A NamedTuple made as its ``_make`` does, without its Python-level constructor (a step
makes several, a simulated year three million steps)."""


@dataclass(frozen=True, slots=True)
class PlantStart:
    """How the plant is found when the controller takes over: by default quiet (heat pump
    off, valve to the dry cooler, fans full); or running, or tripped, warm or cold."""

    supply_temp_c: float = 32.0
    hp_running: bool = False
    hp_capacity: float = 0.0
    hp_tripped: bool = False
    valve: float = 0.0
    fan: float = 1.0


QUIET_START = PlantStart()


def plant_start(scenario: Scenario, t: float, start: PlantStart = QUIET_START) -> PlantState:
    """The plant in thermal steady state at scenario time t (a window may start
    mid-scenario), as ``start`` describes it."""
    d = scenario.disturbances(t)
    return plant_initial_state(
        scenario.params, t=t, it_power_kw=d.it_power_kw, outdoor_temp_c=d.outdoor_temp_c,
        supply_temp_c=start.supply_temp_c, hp_running=start.hp_running,
        hp_capacity=start.hp_capacity,
        hp_trip_code=TRIP_INTERNAL_FAULT if start.hp_tripped else TRIP_NONE,
        valve_position=start.valve, fan_speed=start.fan,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Run:
    """One co-simulation: the figures, the final plant state, and an optional trace."""

    scenario: str
    controller: str
    seed: int
    dt: float
    start_s: float
    duration_s: float
    kpis: Kpis
    final: PlantState
    trace: Mapping[str, list[float]] | None
    events: int


TRACE_KEYS = (
    "t_h", "supply_c", "return_c", "rack_inlet_c", "tank_top_c", "outdoor_c",
    "valve", "fan", "hp_capacity", "hp_running", "demand_kw", "delivered_kw",
    "hp_heat_kw", "available_kw",
)  # fmt: skip


def simulate(
    scenario: Scenario,
    controller: Controller,
    *,
    dt: float = 10.0,
    start_s: float = 0.0,
    duration_s: float | None = None,
    kpi: KpiConfig | None = None,
    trace_points: int = 0,
    start: PlantStart = QUIET_START,
) -> Run:
    """Co-simulate ``controller`` on ``scenario`` from ``start_s`` for ``duration_s``
    (default: to the end), the plant found as ``start`` says. ``trace_points`` > 0 also
    keeps about that many samples for plots. The figures are judged by ``kpi``, by default
    the plant's own spec (:func:`heatd.hil.kpi.kpi_config`). A controller that writes is
    refused a step longer than :func:`longest_step` (:class:`StepError`).
    """
    end, steps = _span(scenario, dt, start_s, duration_s)
    params: PlantParams = scenario.params
    if controller.step is not None:
        check_step(dt, params)
    compiled = compile_params(params)
    state = plant_start(scenario, start_s, start)
    config = kpi or plant_kpi_config(params)
    acc = Accumulator(config, ideal_stores(state, params))
    sensors = scenario.sensor_layer()
    build = SnapshotBuilder(sensor_names(params))
    names = true_value_names(params)
    pick = build.picker(names)
    noise = SensorNoise(params, scenario.seed, names)
    noisy = noise.active
    faults = scenario.faults
    disturbances = scenario.disturbances
    ctl_step, ctl_params = controller.step, controller.params
    cstate = controller.initial_state(start_s)
    idle = Actuators()
    rack_top = max(rack_offsets(params), default=0.0)
    every = max(1, steps // trace_points) if trace_points > 0 else 0
    trace: dict[str, list[float]] | None = {k: [] for k in TRACE_KEYS} if every else None
    events = 0
    hb = 0
    active: list[Fault] = []
    faults_change = -math.inf
    for k in range(steps):
        t = start_s + k * dt
        h = end - t if end - t < dt else dt  # min(dt, end - t), without the call
        dist = disturbances(t)
        if ctl_step is None:
            act = idle
        else:
            if t >= faults_change:
                active, faults_change = _faults_at(faults, t)
            if active:
                snapshot = build(sensors.read(state, active, t), t)
            else:
                values = true_values(state, params)
                if noisy:
                    noise.apply(values)
                snapshot = pick(values, t)
            decision = ctl_step(snapshot, cstate, ctl_params, t)
            cstate = decision.state
            events += len(decision.events)
            sp = decision.setpoints
            hb = hb + 1 if hb < 65535 else 0
            act = _new_tuple(Actuators, (sp.valve, sp.hp_enable, sp.hp_capacity, sp.hp_reset,
                                         sp.fan, hb))
        new = plant_step(state, act, dist, h, compiled)
        sample = sample_between(state, new, h, dist.dh_demand_kw, dist.it_power_kw,
                                not dist.hp_fault, rack_top)
        acc.add(sample)
        if trace is not None and k % every == 0:
            available = 0.0 if dist.hp_fault else heat_available_kw(new, compiled, config.lift_ref)
            record_sample(trace, new, sample, available)
        state = new
    return Run(
        scenario.name,
        controller.name,
        scenario.seed,
        dt,
        start_s,
        end - start_s,
        acc.result(),
        state,
        trace,
        events,
    )


def _faults_at(faults: Sequence[Fault], t: float) -> tuple[list[Fault], float]:
    """The faults active at t, and the first time after t at which that set changes: a run
    looks them up again only then, not every step."""
    active = [f for f in faults if f.start_s <= t < f.end_s]
    change = min((x for f in faults for x in (f.start_s, f.end_s) if x > t), default=math.inf)
    return active, change


def _span(scenario: Scenario, dt: float, start_s: float, duration_s: float | None
          ) -> tuple[float, int]:
    """Where a run ends (the scenario's end at the latest) and in how many steps."""
    if dt <= 0:
        raise ValueError("dt must be positive")
    end = (
        scenario.duration_s
        if duration_s is None
        else min(scenario.duration_s, start_s + duration_s)
    )
    return end, max(0, math.ceil((end - start_s) / dt - 1e-9))


def record_sample(trace: dict[str, list[float]], s: PlantState, x: Sample,
                  available_kw: float) -> None:
    """Append one row to a plot trace (TRACE_KEYS)."""
    h = x.dt / 3600.0
    row = (
        s.t / 3600.0, s.supply_temp_c, s.rack_temp_c, x.rack_inlet_c, s.tank_c[0],
        s.outdoor_temp_c, s.valve_position, s.fan_speed, s.hp_capacity,
        1.0 if s.hp_running else 0.0, x.demand_kw, x.delivered_kwh / h if h else 0.0,
        x.hp_heat_kwh / h if h else 0.0, available_kw,
    )  # fmt: skip
    for key, v in zip(TRACE_KEYS, row, strict=True):
        trace[key].append(v)
