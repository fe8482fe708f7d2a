"""Key performance indicators of one co-simulated run, BOPTEST style.

The co-simulator hands over one :class:`Sample` per step (energies of that step from the
plant's exact integrators, temperatures and positions at its end); :class:`Accumulator`
folds them into :class:`Kpis`. It is pure arithmetic on the samples, so a hand-made trace
checks every integral.

The ideal the recovery ratio is measured against ("what physics would allow"), a greedy
schedule over the same disturbances, step by step:
- the source: the IT heat of the step plus what the coolant loop holds. The loop's thermal
  mass (room air, racks, supply header) is a buffer: heat the heat pump cannot take now
  warms it and can be taken later, down to the recovery exchanger's coldest outlet.
- the lift: condenser heat = evaporator heat x COP / (COP - 1), COP from the plant's own
  curve at full output in the loop and tank temperatures of the run at that step
  (evaporator inlet = rack outlet - approach; condenser outlet as the plant makes it at
  nominal heat). Full output is the highest condenser outlet, so the lowest COP and the
  largest COP / (COP - 1): no heat pump turns the same heat into more at that state. At
  most the heat pump's nominal heat; nothing while it has an internal fault (a physical
  trip in the scenario).
- the sink: the demand, plus the headroom of an ideal tank that starts with the real
  tank's content, charges with any surplus and serves the demand whenever the heat pump
  falls short (which frees headroom). Tank content counts from the network's nominal
  return temperature up to the condenser trip temperature, the most any controller stores.
Taking all it can at every step is optimal for one store on each side with a linear
objective, so no controller's heat pump makes more: the ratio (heat the heat pump made,
i.e. delivered to the network + put in storage, over the ideal) is at most 1 up to the
Euler noise of the plant.

Heat delivered is what the network's meter sees; over a short window it includes the
heat the tank held at the start, which no controller made. So the ratio and ERF count the
heat the heat pump made (delivered + stored) instead.

ERF (ISO/IEC 30134-6) = energy reused / total data-centre energy, the heat pump and the
dry-cooler fans inside the data-centre boundary: heat-pump heat / (IT + fans + heat-pump
electricity), at most 1.
CO2 avoided = heat delivered x the displaced gas boiler's factor - heat-pump electricity
x the grid factor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

from hil.params import Compiled, PlantParams, compile_params
from hil.plant import PlantState, cop_from_lift

_S_PER_H = 3600.0


GAS_BOILER_KG_PER_KWH = 0.202
"""Default CO2 of a kWh of heat from the gas boiler that recovered heat displaces."""
GRID_KG_PER_KWH = 0.380
"""Default CO2 of a kWh of grid electricity."""


@dataclass(frozen=True, slots=True)
class KpiConfig:
    """Limits and factors the figures are judged with (not the controller's own)."""

    supply_limit_c: float = 45.0
    """Coolant supply temperature limit (ASHRAE W45): K.h above it are a violation."""
    rack_inlet_limit_c: float = 45.0
    """Hottest rack inlet air allowed (ASHRAE A4 allowable 45 degC: the air in this plant
    is cooled by the W45 coolant, so the air-side recommended 27 degC is out of reach)."""
    gas_kg_per_kwh: float = GAS_BOILER_KG_PER_KWH
    """CO2 of the gas boiler heat that delivered heat displaces."""
    grid_kg_per_kwh: float = GRID_KG_PER_KWH
    """CO2 of grid electricity the heat pump draws."""
    min_on_s: float = 600.0
    """A run shorter than this is a short cycle."""
    min_off_s: float = 300.0
    """A restart sooner than this after a stop is a short cycle."""


class Sample(NamedTuple):
    """One co-simulation step: energies over it (kWh), the state at its end."""

    dt: float
    supply_c: float
    rack_inlet_c: float
    """Hottest rack inlet."""
    delivered_kwh: float
    hp_heat_kwh: float
    hp_electricity_kwh: float
    it_kwh: float
    fan_kwh: float
    lift_factor: float
    """Condenser heat per unit of evaporator heat at full output; 0 = unavailable."""
    demand_kw: float
    hp_running: bool
    hp_tripped: bool
    plc_fallback: bool
    valve: float
    fan: float
    capacity: float


@dataclass(frozen=True, slots=True)
class Kpis:
    """Every figure of a run; ``as_dict`` keys are stable (scripts read them)."""

    duration_h: float
    supply_violation_kh: float
    rack_inlet_violation_s: float
    plc_fallback_s: float
    max_supply_c: float
    max_rack_inlet_c: float
    heat_delivered_mwh: float
    heat_recovered_mwh: float
    ideal_heat_mwh: float
    recovery_ratio: float | None
    demand_mwh: float
    hp_electricity_mwh: float
    seasonal_cop: float | None
    hp_starts: int
    short_cycles: int
    hp_trips: int
    it_energy_mwh: float
    fan_electricity_mwh: float
    erf: float | None
    co2_avoided_t: float
    valve_travel: float
    fan_travel: float
    capacity_travel: float

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def lift_factor(state: PlantState, params: PlantParams | Compiled) -> float:
    """COP / (COP - 1) of the heat pump at full output in the plant's state now."""
    c = params if isinstance(params, Compiled) else compile_params(params)
    q = c.hp_nom
    t_bot = state.tank_c[-1]
    m_c = c.cond_flow_max
    rise = c.dh_set - t_bot
    if rise > 0.0:
        m_c = min(m_c, q / (c.cp_dh * rise))
    cond_out = t_bot + q / (m_c * c.cp_dh)
    cop = cop_from_lift(cond_out - (state.rack_temp_c - c.hx_approach), cond_out, c)
    return cop / (cop - 1.0)


def heat_available_kw(state: PlantState, params: PlantParams | Compiled) -> float:
    """Heat the heat pump could make at full output from the IT heat entering the loop now
    (what the plots show; the ideal also lets the loop buffer it)."""
    c = params if isinstance(params, Compiled) else compile_params(params)
    return min(state.it_power_kw * lift_factor(state, c), c.hp_nom)


@dataclass(frozen=True, slots=True)
class IdealStores:
    """Bounds of the ideal schedule: heat-pump size and both buffers (kWh)."""

    hp_max_kw: float = float("inf")
    tank_capacity_kwh: float = 0.0
    tank_start_kwh: float = 0.0
    loop_capacity_kwh: float = 0.0
    loop_start_kwh: float = 0.0


def ideal_stores(state: PlantState, params: PlantParams) -> IdealStores:
    """The plant's heat pump, tank and loop as the ideal sees them, starting from ``state``."""
    c = compile_params(params)
    ret = params.dh.return_temp_c
    tank_cap = c.node_cap * c.nodes * (params.heat_pump.cond_outlet_max_c - ret) / _S_PER_H
    tank = c.node_cap * sum(t - ret for t in state.tank_c) / _S_PER_H
    floor = c.src_min
    top = c.sup_limit + params.it.peak_kw / c.loop_c  # rack outlet at the limit, at peak
    loop_cap = (c.air_cap + c.rack_cap + c.sup_cap) * (top - floor) / _S_PER_H
    loop = (
        c.air_cap * (state.air_temp_c - floor)
        + c.rack_cap * (state.rack_temp_c - floor)
        + c.sup_cap * (state.supply_temp_c - floor)
    ) / _S_PER_H
    return IdealStores(c.hp_nom, tank_cap, _clip(tank, tank_cap), loop_cap, _clip(loop, loop_cap))


def _clip(x: float, hi: float) -> float:
    return min(max(x, 0.0), hi)


def sample_between(old: PlantState, new: PlantState, dt: float, lift: float,
                   demand_kw: float, rack_top_k: float) -> Sample:
    """The KPI sample of one step from the plant states before and after it."""
    return Sample(
        dt, new.supply_temp_c, new.air_temp_c + rack_top_k,
        new.heat_delivered_to_dh_kwh - old.heat_delivered_to_dh_kwh,
        new.hp_heat_kwh - old.hp_heat_kwh,
        new.hp_electricity_kwh - old.hp_electricity_kwh,
        new.it_energy_kwh - old.it_energy_kwh,
        new.fan_electricity_kwh - old.fan_electricity_kwh,
        lift, demand_kw, new.hp_running, new.hp_trip_code != 0, new.plc_fallback,
        new.valve_position, new.fan_speed, new.hp_capacity,
    )  # fmt: skip


class Accumulator:
    """Folds samples into KPIs; one per run."""

    def __init__(self, config: KpiConfig, stores: IdealStores | None = None) -> None:
        self.config = config
        st = stores or IdealStores()
        self._hp_max = st.hp_max_kw
        self._tank_cap, self._loop_cap = st.tank_capacity_kwh, st.loop_capacity_kwh
        self._tank = _clip(st.tank_start_kwh, st.tank_capacity_kwh)
        self._loop = _clip(st.loop_start_kwh, st.loop_capacity_kwh)
        self._t = 0.0
        self._supply_kh = self._rack_s = self._fallback_s = 0.0
        self._max_supply = self._max_rack = float("-inf")
        self._delivered = self._hp_heat = self._hp_el = self._it = self._fan = 0.0
        self._ideal = self._demand = 0.0
        self._starts = self._short = self._trips = 0
        self._running = self._tripped = False
        self._on_at: float | None = None
        self._off_at: float | None = None
        self._last: tuple[float, float, float] | None = None
        self._travel = [0.0, 0.0, 0.0]

    def add(self, x: Sample) -> None:
        self.add_step(*x)

    def add_step(
        self,
        dt: float,
        supply_c: float,
        rack_inlet_c: float,
        delivered_kwh: float,
        hp_heat_kwh: float,
        hp_electricity_kwh: float,
        it_kwh: float,
        fan_kwh: float,
        lift: float,
        demand_kw: float,
        hp_running: bool,
        hp_tripped: bool,
        plc_fallback: bool,
        valve: float,
        fan: float,
        capacity: float,
    ) -> None:
        """:meth:`add` with the :class:`Sample` fields as arguments, in the same order: the
        co-simulator folds millions of steps and need not build a Sample for each."""
        cfg = self.config
        self._t += dt
        now = self._t
        over = supply_c - cfg.supply_limit_c
        if over > 0.0:
            self._supply_kh += over * dt / _S_PER_H
        if rack_inlet_c > cfg.rack_inlet_limit_c:
            self._rack_s += dt
        if plc_fallback:
            self._fallback_s += dt
        if supply_c > self._max_supply:  # as max(): NaN never replaces, -inf start
            self._max_supply = supply_c
        if rack_inlet_c > self._max_rack:
            self._max_rack = rack_inlet_c

        self._delivered += delivered_kwh
        self._hp_heat += hp_heat_kwh
        self._hp_el += hp_electricity_kwh
        self._it += it_kwh
        self._fan += fan_kwh
        demand = demand_kw * dt / _S_PER_H
        self._demand += demand
        source = self._loop + it_kwh
        made = 0.0
        if lift > 0.0:
            made = min(self._hp_max * dt / _S_PER_H, source * lift,
                       demand + self._tank_cap - self._tank)  # fmt: skip
            source -= made / lift
        loop_cap = self._loop_cap
        self._loop = source if source < loop_cap else loop_cap  # as min(loop_cap, source)
        self._ideal += made
        tank = self._tank + made - demand
        self._tank = tank if tank > 0.0 else 0.0  # as max(0.0, tank)

        if hp_running and not self._running:
            self._starts += 1
            if self._off_at is not None and now - self._off_at < cfg.min_off_s:
                self._short += 1
            self._on_at = now
        elif self._running and not hp_running:
            if self._on_at is not None and now - self._on_at < cfg.min_on_s:
                self._short += 1
            self._off_at = now
        self._running = hp_running
        if hp_tripped and not self._tripped:
            self._trips += 1
        self._tripped = hp_tripped

        last = self._last
        if last is not None:
            travel = self._travel
            travel[0] += abs(valve - last[0])
            travel[1] += abs(fan - last[1])
            travel[2] += abs(capacity - last[2])
        self._last = (valve, fan, capacity)

    def result(self) -> Kpis:
        cfg = self.config
        total = self._it + self._fan + self._hp_el
        return Kpis(
            duration_h=self._t / _S_PER_H,
            supply_violation_kh=self._supply_kh,
            rack_inlet_violation_s=self._rack_s,
            plc_fallback_s=self._fallback_s,
            max_supply_c=self._max_supply,
            max_rack_inlet_c=self._max_rack,
            heat_delivered_mwh=self._delivered / 1000.0,
            heat_recovered_mwh=self._hp_heat / 1000.0,
            ideal_heat_mwh=self._ideal / 1000.0,
            recovery_ratio=self._hp_heat / self._ideal if self._ideal > 0.0 else None,
            demand_mwh=self._demand / 1000.0,
            hp_electricity_mwh=self._hp_el / 1000.0,
            seasonal_cop=self._hp_heat / self._hp_el if self._hp_el > 0.0 else None,
            hp_starts=self._starts,
            short_cycles=self._short,
            hp_trips=self._trips,
            it_energy_mwh=self._it / 1000.0,
            fan_electricity_mwh=self._fan / 1000.0,
            erf=self._hp_heat / total if total > 0.0 else None,
            co2_avoided_t=(self._delivered * cfg.gas_kg_per_kwh - self._hp_el * cfg.grid_kg_per_kwh)
            / 1000.0,
            valve_travel=self._travel[0],
            fan_travel=self._travel[1],
            capacity_travel=self._travel[2],
        )
