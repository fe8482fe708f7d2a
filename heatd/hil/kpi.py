"""Key performance indicators of one co-simulated run, judged from the plant's spec.

Nothing here reads a controller's parameters: the limits, the contract temperature, the
reference lift and the ideal all come from the plant (:func:`kpi_config`), so every
controller on one plant and scenario is held to the same figures.

The co-simulator hands over one :class:`Sample` per step (energies of that step from the
plant's exact integrators, temperatures and positions at its end); :class:`Accumulator`
folds them into :class:`Kpis`. It is pure arithmetic on the samples, so a hand-made trace
checks every integral.

The headline is **IT heat reused**: the heat the heat pump's evaporator took out of the
coolant loop, over the **ideal**, what the heat pump's size and the demand could take at
a fixed reference lift. The ideal depends only on the disturbances and the plant, never
on the run's own temperatures (a colder loop must not raise its own yardstick), and it is
a greedy schedule step by step:
- the source: the IT heat the servers offer in the step plus what the coolant loop holds.
  The loop's thermal mass is a buffer: heat the heat pump cannot take now warms it and
  can be taken later, down to the recovery exchanger's coldest outlet;
- the lift: condenser heat = evaporator heat x ``lift_ref`` (COP / (COP - 1) at the
  reference lift, from the plant's own COP curve); nothing while the heat pump has an
  internal fault (a physical trip in the scenario);
- the sink: the demand, plus the headroom of an ideal tank that starts with the real
  tank's content, charges with any surplus and serves the demand whenever the heat pump
  falls short.
Condenser heat (what the heat pump made, compressor work included) is kept as a separate
figure: extra compressor work is not recovered heat.

The network takes heat only at its contracted supply temperature (the plant's draw
fades out below it), so delivered heat is heat sold; ``unmet_demand_mwh`` is the demand
the site did not cover, ``below_contract_kh`` the degree-hours its supply offer (the tank
top) spent below contract while the network wanted heat.

Net CO2 = heat delivered x the displaced gas boiler's factor - (heat-pump + fan
electricity) x the grid factor; net money the same with prices.
ERF (ISO/IEC 30134-6) = heat delivered / (IT + fan + heat-pump electricity).
ERF, seasonal COP and CO2 are defined once, in ``heatd.billing.indicators``, which the
daemon's report uses too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from operator import itemgetter
from typing import NamedTuple

from heatd.billing.indicators import (
    DISPLACED_HEAT_KG_PER_KWH,
    GRID_KG_PER_KWH,
    co2_avoided_kg,
    erf,
    seasonal_cop,
)
from heatd.hil.plant import TRIP_NAMES, PlantState, cop_from_lift
from heatd.hil.plant_params import Compiled, PlantParams, compile_params

_S_PER_H = 3600.0

GAS_BOILER_KG_PER_KWH = DISPLACED_HEAT_KG_PER_KWH
"""Default CO2 of a kWh of heat from the gas boiler that recovered heat displaces."""
HEAT_PRICE_PER_MWH = 45.0
"""Default price the network pays for a MWh of heat at contract temperature."""
ELECTRICITY_PRICE_PER_MWH = 120.0
"""Default price of a MWh of electricity for the heat pump and the fans."""

ASHRAE_RECOMMENDED_C = 27.0
ASHRAE_A1_C = 32.0
ASHRAE_A2_C = 35.0
REFERENCE_SOURCE_BELOW_LIMIT_K = 10.0
"""The reference lift takes heat at this far below the supply limit (35 degC at W45)."""


@dataclass(frozen=True, slots=True)
class Prices:
    """What a kWh is worth where the site is: CO2 factors and money."""

    gas_kg_per_kwh: float = GAS_BOILER_KG_PER_KWH
    grid_kg_per_kwh: float = GRID_KG_PER_KWH
    heat_per_mwh: float = HEAT_PRICE_PER_MWH
    electricity_per_mwh: float = ELECTRICITY_PRICE_PER_MWH


@dataclass(frozen=True, slots=True)
class KpiConfig:
    """Limits, reference and prices the figures are judged with, from the plant spec."""

    supply_limit_c: float = 45.0
    """Coolant supply limit (ASHRAE W45 by default): every second above it counts."""
    throttle_c: float = 50.0
    """Coolant supply at which the servers throttle themselves."""
    rack_limits_c: tuple[float, float, float] = (ASHRAE_RECOMMENDED_C, ASHRAE_A1_C, ASHRAE_A2_C)
    """Rack inlet air limits counted: ASHRAE recommended, A1 and A2 allowable."""
    contract_supply_c: float = 70.0
    lift_ref: float = 1.3
    """Condenser heat per unit of evaporator heat at the reference lift."""
    prices: Prices = field(default_factory=Prices)
    min_on_s: float = 600.0
    """A run shorter than this is a short cycle."""
    min_off_s: float = 300.0
    """A restart sooner than this after a stop is a short cycle."""


def reference_lift_factor(params: PlantParams) -> float:
    """COP / (COP - 1) of the plant's heat pump lifting from 10 K below the supply limit
    to the network's contracted supply temperature."""
    contract = params.dh.supply_temp_c
    source = params.loop.supply_limit_c - REFERENCE_SOURCE_BELOW_LIMIT_K
    cop = cop_from_lift(contract - source, contract, params)
    return cop / (cop - 1.0)


def kpi_config(params: PlantParams, prices: Prices | None = None) -> KpiConfig:
    """The judge of every run on this plant: its limits, its contract, its heat pump."""
    return KpiConfig(
        supply_limit_c=params.loop.supply_limit_c,
        throttle_c=params.it.throttle_start_c,
        contract_supply_c=params.dh.supply_temp_c,
        lift_ref=reference_lift_factor(params),
        prices=prices or Prices(),
    )


class Sample(NamedTuple):
    """One co-simulation step: energies over it (kWh), the state at its end."""

    dt: float
    supply_c: float
    rack_inlet_c: float
    """Hottest rack inlet."""
    dh_supply_c: float
    """What the site offers the network: the tank top."""
    delivered_kwh: float
    hp_heat_kwh: float
    """Condenser heat."""
    reused_kwh: float
    """IT heat the evaporator took from the coolant loop."""
    hp_electricity_kwh: float
    it_kwh: float
    """IT energy the servers really drew (after any throttling)."""
    it_offered_kwh: float
    """IT energy the load would have drawn: the ideal's source."""
    fan_kwh: float
    hp_available: bool
    """False while the heat pump has an internal fault: the ideal takes nothing."""
    demand_kw: float
    hp_running: bool
    trip_code: int
    plc_fallback: bool
    plc_high_limit: bool
    valve: float
    fan: float
    capacity: float


@dataclass(frozen=True, slots=True)
class Kpis:
    """Every figure of a run; ``as_dict`` keys are stable (scripts read them)."""

    duration_h: float
    supply_over_limit_s: float
    supply_violation_kh: float
    max_supply_c: float
    plc_high_limit_s: float
    plc_fallback_s: float
    it_throttled_s: float
    rack_over_recommended_s: float
    rack_over_a1_s: float
    rack_over_a2_s: float
    max_rack_inlet_c: float
    it_heat_reused_mwh: float
    ideal_reuse_mwh: float
    reuse_ratio: float | None
    condenser_heat_mwh: float
    heat_delivered_mwh: float
    demand_mwh: float
    unmet_demand_mwh: float
    below_contract_kh: float
    hp_electricity_mwh: float
    fan_electricity_mwh: float
    electricity_per_mwh_reused: float | None
    """MWh of heat-pump and fan electricity per MWh of IT heat reused."""
    seasonal_cop: float | None
    hp_off_h: float
    """Hours the heat pump did not run: the dry cooler carried all the IT heat."""
    hp_starts: int
    short_cycles: int
    hp_trips: int
    trips_by_cause: dict[str, int]
    it_energy_mwh: float
    erf: float | None
    net_co2_t: float
    net_money: float
    valve_travel: float
    fan_travel: float
    capacity_travel: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


_ENERGIES = itemgetter(*(PlantState._fields.index(name) for name in (
    "heat_delivered_to_dh_kwh", "hp_heat_kwh", "heat_recovered_kwh", "hp_electricity_kwh",
    "it_energy_kwh", "fan_electricity_kwh",
)))  # fmt: skip
"""A state's energy integrators in Sample order, read in one call."""

_new_tuple = tuple.__new__


def sample_between(old: PlantState, new: PlantState, dt: float, demand_kw: float,
                   it_offered_kw: float, hp_available: bool, rack_top_k: float) -> Sample:
    """The KPI sample of one step from the plant states before and after it. (Made with
    ``tuple.__new__``, as ``Sample._make`` does, without the Python-level constructor: a
    simulated year makes three million.)"""
    delivered, hp_heat, reused, hp_el, it, fan = _ENERGIES(new)
    delivered0, hp_heat0, reused0, hp_el0, it0, fan0 = _ENERGIES(old)
    return _new_tuple(Sample, (
        dt, new.supply_temp_c, new.air_temp_c + rack_top_k, new.tank_c[0],
        delivered - delivered0, hp_heat - hp_heat0, reused - reused0, hp_el - hp_el0,
        it - it0, it_offered_kw * dt / _S_PER_H, fan - fan0,
        hp_available, demand_kw, new.hp_running, new.hp_trip_code, new.plc_fallback,
        new.plc_overtemp, new.valve_position, new.fan_speed, new.hp_capacity,
    ))  # fmt: skip


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


def stored_heat_kwh(state: PlantState, params: PlantParams | Compiled) -> tuple[float, float]:
    """(tank, coolant loop) heat of ``state`` in kWh above 0 degC: only the change between
    two states means anything. A run that ends with less than it started with delivered
    heat it did not make (a run starts from a steady state with a charged tank)."""
    c = params if isinstance(params, Compiled) else compile_params(params)
    tank = c.node_cap * sum(state.tank_c) / _S_PER_H
    loop = (c.air_cap * state.air_temp_c + c.rack_cap * state.rack_temp_c
            + c.sup_cap * state.supply_temp_c) / _S_PER_H
    return tank, loop


def heat_available_kw(state: PlantState, params: PlantParams | Compiled,
                      lift_ref: float) -> float:
    """Condenser heat the heat pump could make from the IT heat entering the loop now at
    the reference lift (what the plots show; the ideal also lets the loop buffer it)."""
    c = params if isinstance(params, Compiled) else compile_params(params)
    return min(state.it_power_kw * lift_ref, c.hp_nom)


def _clip(x: float, hi: float) -> float:
    return min(max(x, 0.0), hi)


class Accumulator:
    """Folds samples into KPIs; one per run.

    A year at 10 s steps is three million samples: the limits are read from the config
    once, the figures are kept in slots, and each step does only the additions it needs.
    """

    __slots__ = (
        "_below_kh", "_capacity_travel", "_contract", "_delivered", "_demand", "_fallback_s",
        "_fan", "_fan_travel", "_high_s", "_hp_el", "_hp_heat", "_hp_max", "_hp_off_s", "_ideal",
        "_it", "_last", "_lift", "_loop", "_loop_cap", "_max_rack", "_max_supply", "_off_at",
        "_on_at", "_over_kh", "_over_s", "_rack_limits", "_rack_s", "_reused", "_running",
        "_short", "_starts", "_supply_limit", "_t", "_tank", "_tank_cap", "_throttle",
        "_throttled_s", "_trip", "_trips", "_valve_travel", "config",
    )  # fmt: skip

    def __init__(self, config: KpiConfig, stores: IdealStores | None = None) -> None:
        self.config = config
        self._supply_limit, self._throttle = config.supply_limit_c, config.throttle_c
        self._contract, self._lift = config.contract_supply_c, config.lift_ref
        self._rack_limits = config.rack_limits_c
        st = stores or IdealStores()
        self._hp_max = st.hp_max_kw
        self._tank_cap, self._loop_cap = st.tank_capacity_kwh, st.loop_capacity_kwh
        self._tank = _clip(st.tank_start_kwh, st.tank_capacity_kwh)
        self._loop = _clip(st.loop_start_kwh, st.loop_capacity_kwh)
        self._t = 0.0
        self._over_s = self._over_kh = self._high_s = self._fallback_s = self._throttled_s = 0.0
        self._rack_s = [0.0, 0.0, 0.0]
        self._max_supply = self._max_rack = float("-inf")
        self._delivered = self._hp_heat = self._reused = self._hp_el = self._it = 0.0
        self._fan = self._ideal = self._demand = self._below_kh = 0.0
        self._starts = self._short = 0
        self._hp_off_s = 0.0
        self._trips: dict[str, int] = {}
        self._running = False
        self._trip = 0
        self._on_at: float | None = None
        self._off_at: float | None = None
        self._last: tuple[float, float, float] | None = None
        """The last sample's valve, fan and capacity."""
        self._valve_travel = self._fan_travel = self._capacity_travel = 0.0

    def add(self, x: Sample) -> None:
        """Account one step of the run. The sample is unpacked once; maxima and minima are
        plain comparisons where ``max`` and ``min`` would be a call each, with their results
        (NaN included: of equals, the first is kept)."""
        (dt, supply, rack, dh_supply, delivered, hp_heat, reused, hp_el, it, it_offered, fan_kwh,
         hp_available, demand_kw, hp_running, trip, plc_fallback, plc_high_limit, valve, fan,
         capacity) = x  # fmt: skip
        self._t += dt
        self._add_comfort(dt, supply, rack, plc_fallback, plc_high_limit)
        self._delivered += delivered
        self._hp_heat += hp_heat
        self._reused += reused
        self._hp_el += hp_el
        self._it += it
        self._fan += fan_kwh
        self._add_demand_and_ideal(dt, demand_kw, dh_supply, it_offered, hp_available)
        if not hp_running:
            self._hp_off_s += dt
        if hp_running != self._running:
            self._add_switch(hp_running)
        if trip:
            self._add_trip(trip)
        self._trip = trip
        last = self._last
        if last is not None:
            self._valve_travel += abs(valve - last[0])
            self._fan_travel += abs(fan - last[1])
            self._capacity_travel += abs(capacity - last[2])
        self._last = (valve, fan, capacity)

    def _add_comfort(self, dt: float, supply: float, rack: float, plc_fallback: bool,
                     plc_high_limit: bool) -> None:
        """Time over the supply limit, throttling, over the rack limits, PLC overrides."""
        over = supply - self._supply_limit
        if over > 0.0:
            self._over_s += dt
            self._over_kh += over * dt / _S_PER_H
        if supply > self._throttle:
            self._throttled_s += dt
        recommended, a1, a2 = self._rack_limits
        if rack > recommended:
            self._rack_s[0] += dt
        if rack > a1:
            self._rack_s[1] += dt
        if rack > a2:
            self._rack_s[2] += dt
        if plc_fallback:
            self._fallback_s += dt
        if plc_high_limit:
            self._high_s += dt
        top = self._max_supply
        self._max_supply = supply if supply > top else top
        top = self._max_rack
        self._max_rack = rack if rack > top else top

    def _add_demand_and_ideal(self, dt: float, demand_kw: float, dh_supply: float,
                              it_offered: float, hp_available: bool) -> None:
        """The demand, the network's shortfall, and the ideal reference."""
        contract, lift = self._contract, self._lift
        demand = demand_kw * dt / _S_PER_H
        self._demand += demand
        if demand_kw > 0.0 and dh_supply < contract:
            self._below_kh += (contract - dh_supply) * dt / _S_PER_H
        # The ideal: all the reference heat pump can take from the IT heat and the loop
        # buffer, into the demand and the ideal tank; what it cannot take warms the loop.
        source = self._loop + it_offered
        made = 0.0
        if hp_available:
            made = self._hp_max * dt / _S_PER_H  # the least of the three, the first if equal
            by_source = source * lift
            made = by_source if by_source < made else made
            by_sink = demand + self._tank_cap - self._tank
            made = by_sink if by_sink < made else made
            source -= made / lift
        loop_cap = self._loop_cap
        self._loop = loop_cap if loop_cap < source else source
        self._ideal += made / lift
        tank = self._tank + made - demand
        self._tank = 0.0 if tank < 0.0 else tank

    def _add_switch(self, hp_running: bool) -> None:
        """A heat-pump start or stop, and whether it ends a short cycle."""
        cfg = self.config
        now = self._t
        if hp_running:
            self._starts += 1
            if self._off_at is not None and now - self._off_at < cfg.min_off_s:
                self._short += 1
            self._on_at = now
        else:
            if self._on_at is not None and now - self._on_at < cfg.min_on_s:
                self._short += 1
            self._off_at = now
        self._running = hp_running

    def _add_trip(self, code: int) -> None:
        """A trip code that is new since the last step counts as one trip of its cause."""
        if code != self._trip:
            cause = TRIP_NAMES.get(code, str(code))
            self._trips[cause] = self._trips.get(cause, 0) + 1

    def result(self) -> Kpis:
        p = self.config.prices
        electricity = self._hp_el + self._fan
        total = self._it + electricity
        return Kpis(
            duration_h=self._t / _S_PER_H,
            supply_over_limit_s=self._over_s,
            supply_violation_kh=self._over_kh,
            max_supply_c=self._max_supply,
            plc_high_limit_s=self._high_s,
            plc_fallback_s=self._fallback_s,
            it_throttled_s=self._throttled_s,
            rack_over_recommended_s=self._rack_s[0],
            rack_over_a1_s=self._rack_s[1],
            rack_over_a2_s=self._rack_s[2],
            max_rack_inlet_c=self._max_rack,
            it_heat_reused_mwh=self._reused / 1000.0,
            ideal_reuse_mwh=self._ideal / 1000.0,
            reuse_ratio=self._reused / self._ideal if self._ideal > 0.0 else None,
            condenser_heat_mwh=self._hp_heat / 1000.0,
            heat_delivered_mwh=self._delivered / 1000.0,
            demand_mwh=self._demand / 1000.0,
            unmet_demand_mwh=max(self._demand - self._delivered, 0.0) / 1000.0,
            below_contract_kh=self._below_kh,
            hp_electricity_mwh=self._hp_el / 1000.0,
            fan_electricity_mwh=self._fan / 1000.0,
            electricity_per_mwh_reused=electricity / self._reused if self._reused > 0 else None,
            seasonal_cop=seasonal_cop(self._hp_heat, self._hp_el),
            hp_off_h=self._hp_off_s / _S_PER_H,
            hp_starts=self._starts,
            short_cycles=self._short,
            hp_trips=sum(self._trips.values()),
            trips_by_cause=dict(self._trips),
            it_energy_mwh=self._it / 1000.0,
            erf=erf(self._delivered, total),
            net_co2_t=co2_avoided_kg(self._delivered, electricity, p.gas_kg_per_kwh,
                                     p.grid_kg_per_kwh) / 1000.0,
            net_money=(self._delivered * p.heat_per_mwh - electricity * p.electricity_per_mwh)
            / 1000.0,
            valve_travel=self._valve_travel,
            fan_travel=self._fan_travel,
            capacity_travel=self._capacity_travel,
        )
