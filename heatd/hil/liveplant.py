"""The plant as a served simulator runs it: the pure model stepped in plant time with the
actuator commands received so far, the scenario's disturbances and faults, and faults
injected while it runs. No I/O and no clock: the caller says how far to advance.
"""

from __future__ import annotations

import math
from typing import Any

from heatd.hil.faults import COMMS_KINDS, PHYSICAL_KINDS, Fault
from heatd.hil.plant import Actuators, PlantState, step
from heatd.hil.plant_params import PlantParams, compile_params
from heatd.hil.scenario import Scenario
from heatd.hil.sensors import Readings

MAX_SUBSTEP_S = 1.0
"""Longest plant step between two looks at the commands; the model splits it further."""


def scenario_for_site(scenario: Scenario, racks: int, params: PlantParams | None = None
                      ) -> Scenario:
    """The scenario with `params` (default: its own) and as many racks as the site has
    inlet sensors, so every `rack.inlet_temp` point has a rack behind it."""
    params = params or scenario.params
    if racks and params.it.rack_count != racks:
        it = params.it.model_copy(update={"rack_count": racks})
        params = params.model_copy(update={"it": it})
    if params is scenario.params:
        return scenario
    return Scenario(scenario.spec, params, scenario.seed)


class LivePlant:
    """Plant state plus the latest commands; `advance` steps it, `readings` measures it."""

    def __init__(self, scenario: Scenario, command: Actuators | None = None) -> None:
        self.scenario = scenario
        self.params = scenario.params
        self._compiled = compile_params(scenario.params)
        self.command = command or Actuators()
        self.state: PlantState = scenario.initial_state(heartbeat=self.command.heartbeat)
        self.injected: list[Fault] = []
        self._sensors = scenario.sensor_layer()
        self._reset_pending = False

    @property
    def t(self) -> float:
        return self.state.t

    def command_write(self, actuator: str, value: Any) -> None:
        """A write received for one actuator. A reset pulse shorter than a step still
        reaches the plant: its rising edge is kept until the next step."""
        self.command = self.command._replace(**{actuator: value})
        if actuator == "hp_reset" and value:
            self._reset_pending = True

    def advance(self, dt: float) -> None:
        """Step the plant by dt plant seconds, in substeps of at most MAX_SUBSTEP_S."""
        if dt <= 0:
            return
        n = max(1, math.ceil(dt / MAX_SUBSTEP_S - 1e-9))
        h = dt / n
        disturbances = self.scenario.disturbances
        for _ in range(n):
            act = self.command
            if self._reset_pending:
                act = act._replace(hp_reset=True)
                self._reset_pending = False
            self.state = step(self.state, act, disturbances(self.state.t), h, self._compiled)

    def inject(self, kind: str, target: str, duration_s: float = math.inf,
               params: dict[str, float] | None = None) -> Fault:
        """Start a sensor or comms fault now, for duration_s plant seconds. (Physical faults
        belong to the scenario: they change the disturbances.)"""
        if kind in PHYSICAL_KINDS:
            raise ValueError(f"{kind} is a physical fault: put it in the scenario")
        fault = Fault(-1 - len(self.injected), kind, target, self.t, self.t + duration_s,
                      dict(params or {}))
        self.injected.append(fault)
        return fault

    def active_faults(self) -> list[Fault]:
        t = self.t
        return [*self.scenario.active_faults(t), *(f for f in self.injected if f.active(t))]

    def readings(self, faults: list[Fault]) -> Readings:
        """Measured sensor values by name under `faults` (comms faults excluded: the
        protocol layer acts those out, so a silent device keeps its last registers)."""
        sensor_faults = [f for f in faults if f.kind not in COMMS_KINDS]
        return self._sensors.read(self.state, sensor_faults, self.t)
