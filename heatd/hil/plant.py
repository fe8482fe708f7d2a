"""Pure plant model: `state' = step(state, actuators, disturbances, dt, params)`.

No I/O and no clock: plant time is `state.t` (seconds) and advances by `dt`. Everything
is plain floats in NamedTuples so a year at 10 s steps runs in well under a minute.

Physics (lumped, explicit Euler with automatic substeps):
- IT power splits into the liquid loop (cold plates) and room air; a coil returns the air
  heat to the loop. Rack inlet air temperature follows the air node.
- Coolant loop: rack node (its temperature is the return) and supply node, fixed flow.
  After the racks a 3-way valve sends `valve_position` of the flow through the recovery
  heat exchanger (heat-pump evaporator) and the rest through the dry cooler.
- Heat pump: enable, capacity 20-100 % with a slew limit (start-up ramp), COP from the lift
  (condenser outlet minus evaporator inlet), trips that latch until a reset rising edge.
  Like any real machine it unloads on a hot condenser return, keeping its outlet
  `cond_unload_k` below the over-temperature trip.
- District-heating side: the condenser charges a stratified tank (bottom -> condenser ->
  top); the network draws from the top to meet its demand and returns at its return
  temperature into the bottom. Without storage a one-node header plays the tank.
- Dry cooler: effectiveness-NTU with UA from fan speed; fan power cubic in speed.
- Site PLC: heartbeat watchdog forcing the safe state, and a high-limit override (valve to
  the dry cooler, fans full) above the supply limit, released 1 K below it.
- Servers protect themselves: their power throttles linearly from `throttle_start_c`
  coolant supply to nothing at `shutdown_c`, so the loop never runs away.
- The network takes heat only at its contracted supply temperature: below it the draw
  fades out over `accept_band_k`.

Energy bookkeeping (kWh integrators in the state) closes exactly:
it_energy + hp_electricity = heat_delivered_to_dh + heat_rejected_drycooler + delta stored
(`stored_heat_kwh`). Fan electricity goes to outdoor air and is metered separately.
"""

from __future__ import annotations

import math
import operator
from typing import NamedTuple

from heatd.hil.plant_params import Compiled, PlantParams, compile_params

# Heat-pump trip codes (hp_trip_code); a trip latches until a reset rising edge.
TRIP_NONE = 0
TRIP_EVAP_INLET_HIGH = 1
TRIP_STARTS_PER_HOUR = 2
TRIP_COND_OVERTEMP = 3
TRIP_INTERNAL_FAULT = 4
TRIP_NAMES = {
    TRIP_NONE: "none",
    TRIP_EVAP_INLET_HIGH: "evaporator inlet temperature high",
    TRIP_STARTS_PER_HOUR: "too many starts per hour",
    TRIP_COND_OVERTEMP: "condenser over-temperature",
    TRIP_INTERNAL_FAULT: "internal fault",
}

_S_PER_KWH = 3600.0


class Actuators(NamedTuple):
    """What the controller (or the PLC-side server) writes.

    valve_recovery, hp_capacity and fan_speed are fractions 0..1 (clamped);
    hp_capacity below the heat pump's minimum runs at the minimum.
    hp_reset acts on its rising edge (False -> True), like a reset push-button.
    heartbeat: any int; the PLC only watches whether it changes, and sees it once per
    step, so co-simulation steps must stay well below `plc.heartbeat_timeout_s`.
    """

    valve_recovery: float = 0.0
    hp_enable: bool = False
    hp_capacity: float = 0.0
    hp_reset: bool = False
    fan_speed: float = 1.0
    heartbeat: int = 0


class Disturbances(NamedTuple):
    """What the world does to the plant; `hp_fault` is an internal heat-pump fault,
    `valve_stuck` a seized recovery valve actuator (the valve stays where it is)."""

    it_power_kw: float
    outdoor_temp_c: float
    dh_demand_kw: float
    dh_return_temp_c: float = 40.0
    hp_fault: bool = False
    valve_stuck: bool = False


class PlantState(NamedTuple):
    """Complete plant state; immutable. Temperatures degC, powers kW, energies kWh.

    The `*_kw` / `*_c` outputs and `hp_cop` describe the last (sub)step, so a sensor layer
    can read them without recomputing physics.
    """

    t: float
    # thermal nodes
    air_temp_c: float
    rack_temp_c: float  # rack outlet = coolant return
    supply_temp_c: float
    tank_c: tuple[float, ...]  # top -> bottom
    # actuator positions
    valve_position: float
    fan_speed: float
    valve_lagged: float  # the actuator's lagged view of its command
    # heat pump
    hp_running: bool
    hp_capacity: float
    hp_trip_code: int
    hp_starts: tuple[float, ...]  # start times within the last hour
    hp_reset_prev: bool
    # site PLC
    plc_heartbeat_last: int
    plc_heartbeat_age_s: float
    plc_fallback: bool
    plc_overtemp: bool  # the PLC's high-limit override is acting
    # last-step outputs
    it_power_kw: float
    outdoor_temp_c: float
    dh_demand_kw: float
    dh_return_temp_c: float
    dh_supply_temp_c: float
    dh_delivered_kw: float
    recovered_kw: float
    hp_heat_kw: float
    hp_power_kw: float
    hp_cop: float
    hp_evap_inlet_c: float
    hp_cond_outlet_c: float
    drycooler_kw: float
    fan_power_kw: float
    # energy integrators
    it_energy_kwh: float
    heat_recovered_kwh: float
    heat_delivered_to_dh_kwh: float
    heat_rejected_drycooler_kwh: float
    hp_electricity_kwh: float
    hp_heat_kwh: float
    fan_electricity_kwh: float


def _compiled(params: PlantParams | Compiled) -> Compiled:
    return params if isinstance(params, Compiled) else compile_params(params)


def cop_from_lift(lift_k: float, cond_outlet_c: float, params: PlantParams | Compiled) -> float:
    """COP of the heat pump at a lift (K); regression of Jesper et al. 2021 or 0.5 x Carnot."""
    c = _compiled(params)
    return _cop(min(max(lift_k, c.lift_min), c.lift_max), cond_outlet_c, c)


def initial_state(
    params: PlantParams,
    *,
    t: float = 0.0,
    supply_temp_c: float = 32.0,
    it_power_kw: float | None = None,
    outdoor_temp_c: float = 10.0,
    storage_top_c: float | None = None,
    storage_bottom_c: float | None = None,
    heartbeat: int = 0,
    hp_running: bool = False,
    hp_capacity: float = 0.0,
    hp_trip_code: int = TRIP_NONE,
    valve_position: float = 0.0,
    fan_speed: float = 1.0,
) -> PlantState:
    """A plant in thermal steady state for the given IT load; by default quiet (heat pump
    off, valve to the dry cooler, fans full), or as a previous controller left it."""
    c = _compiled(params)
    q_it = params.it.idle_kw if it_power_kw is None else it_power_kw
    q_air = q_it * (1.0 - c.liquid_share)
    rack = supply_temp_c + q_it / c.loop_c
    air = supply_temp_c + q_air / c.coil_ua
    top = params.dh.supply_temp_c if storage_top_c is None else storage_top_c
    bottom = params.dh.return_temp_c if storage_bottom_c is None else storage_bottom_c
    n = c.nodes
    tank = tuple(top + (bottom - top) * i / (n - 1) for i in range(n)) if n > 1 else (top,)
    cap = min(max(hp_capacity, c.hp_min), 1.0) if hp_running else 0.0
    return PlantState(
        t, air, rack, supply_temp_c, tank,
        valve_position, fan_speed, valve_position,
        hp_running, cap, hp_trip_code, (), False,
        heartbeat, 0.0, False, False,
        q_it, outdoor_temp_c, 0.0, params.dh.return_temp_c, tank[0], 0.0,
        0.0, 0.0, 0.0, 0.0, rack - c.hx_approach, tank[-1], 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    )  # fmt: skip


def stored_heat_kwh(state: PlantState, params: PlantParams | Compiled) -> float:
    """Sensible heat above 0 degC in every thermal mass; its change closes the balance."""
    c = _compiled(params)
    kj = (
        c.air_cap * state.air_temp_c
        + c.rack_cap * state.rack_temp_c
        + c.sup_cap * state.supply_temp_c
        + c.node_cap * sum(state.tank_c)
    )
    return kj / _S_PER_KWH


def step(
    state: PlantState,
    act: Actuators,
    dist: Disturbances,
    dt: float,
    params: PlantParams | Compiled,
) -> PlantState:
    """Advance the plant by dt seconds (split into stable substeps when dt is long).

    Each substep runs, in order: the site PLC, valve and fans, heat-pump sequencing, the
    heat pump's heat, the dry cooler, the network draw, the tank, then the servers, coolant
    loop and room air, and the energy integrators.
    """
    c = params if isinstance(params, Compiled) else compile_params(params)
    n = 1 if dt <= c.max_dt else c.substeps(dt)  # one, the common case, without a call
    h = dt / n
    p = _Plant(state, dist)
    tank = list(state.tank_c)
    lag = 1.0 - math.exp(-h / c.valve_lag) if c.valve_lag > 0.0 else 1.0
    valve_rate = 0.0 if dist.valve_stuck else c.valve_rate
    t_dc_air = dist.outdoor_temp_c + c.air_offset
    cap_target = act.hp_capacity  # clamped to the minimum..1
    cap_target = c.hp_min if cap_target < c.hp_min else 1.0 if cap_target > 1.0 else cap_target
    reset_edge = act.hp_reset and not state.hp_reset_prev
    for _ in range(n):
        v_cmd, fan_cmd, hp_en = _site_plc(p, act, h, c)
        _move_valve_and_fans(p, v_cmd, fan_cmd, lag, valve_rate, h, c)
        _sequence_heat_pump(p, hp_en, reset_edge, dist.hp_fault, cap_target, h, c)
        reset_edge = False
        m_c = _heat_pump(p, tank[-1], c)
        _dry_cooler(p, t_dc_air, c)
        m_d = _network_draw(p, tank[0], c)
        _exchange_tank(tank, m_c, p.hp_cond_outlet_c, m_d, p.dh_return_temp_c, h, c)
        _racks_and_loop(p, dist.it_power_kw, h, c)
        _integrate(p, h)
    p.tank_c = tuple(tank)
    p.hp_reset_prev = act.hp_reset
    return PlantState._make(_as_state(p))


class _Plant:
    """PlantState's fields, writable, for the length of one step: the sub-steps read and
    write the plant by field name, and `_as_state` packs it back in one C call. (Built by
    keyword, a PlantState would cost a quarter of the step: CPython matches 38 keywords
    one by one.) The `*_kw` outputs are written by every substep, so they start unset."""

    __slots__ = PlantState._fields
    t: float
    air_temp_c: float
    rack_temp_c: float
    supply_temp_c: float
    tank_c: tuple[float, ...]
    valve_position: float
    fan_speed: float
    valve_lagged: float
    hp_running: bool
    hp_capacity: float
    hp_trip_code: int
    hp_starts: tuple[float, ...]
    hp_reset_prev: bool
    plc_heartbeat_last: int
    plc_heartbeat_age_s: float
    plc_fallback: bool
    plc_overtemp: bool
    it_power_kw: float
    outdoor_temp_c: float
    dh_demand_kw: float
    dh_return_temp_c: float
    dh_supply_temp_c: float
    dh_delivered_kw: float
    recovered_kw: float
    hp_heat_kw: float
    hp_power_kw: float
    hp_cop: float
    hp_evap_inlet_c: float
    hp_cond_outlet_c: float
    drycooler_kw: float
    fan_power_kw: float
    it_energy_kwh: float
    heat_recovered_kwh: float
    heat_delivered_to_dh_kwh: float
    heat_rejected_drycooler_kwh: float
    hp_electricity_kwh: float
    hp_heat_kwh: float
    fan_electricity_kwh: float

    def __init__(self, state: PlantState, dist: Disturbances) -> None:
        self.t = state.t
        self.air_temp_c = state.air_temp_c
        self.rack_temp_c = state.rack_temp_c
        self.supply_temp_c = state.supply_temp_c
        self.valve_position = state.valve_position
        self.fan_speed = state.fan_speed
        self.valve_lagged = state.valve_lagged
        self.hp_running = state.hp_running
        self.hp_capacity = state.hp_capacity
        self.hp_trip_code = state.hp_trip_code
        self.hp_starts = state.hp_starts
        self.plc_heartbeat_last = state.plc_heartbeat_last
        self.plc_heartbeat_age_s = state.plc_heartbeat_age_s
        self.plc_fallback = state.plc_fallback
        self.plc_overtemp = state.plc_overtemp
        self.outdoor_temp_c = dist.outdoor_temp_c
        self.dh_demand_kw = dist.dh_demand_kw
        self.dh_return_temp_c = dist.dh_return_temp_c
        self.it_energy_kwh = state.it_energy_kwh
        self.heat_recovered_kwh = state.heat_recovered_kwh
        self.heat_delivered_to_dh_kwh = state.heat_delivered_to_dh_kwh
        self.heat_rejected_drycooler_kwh = state.heat_rejected_drycooler_kwh
        self.hp_electricity_kwh = state.hp_electricity_kwh
        self.hp_heat_kwh = state.hp_heat_kwh
        self.fan_electricity_kwh = state.fan_electricity_kwh


_as_state = operator.attrgetter(*PlantState._fields)


def _site_plc(p: _Plant, act: Actuators, h: float, c: Compiled) -> tuple[float, float, bool]:
    """The site PLC: heartbeat watchdog, hard supply limit, and the commands it lets
    through to the plant. Returns (valve, fans, hp_enable)."""
    if act.heartbeat != p.plc_heartbeat_last:
        p.plc_heartbeat_last = act.heartbeat
        p.plc_heartbeat_age_s = 0.0
        p.plc_fallback = False
    else:
        p.plc_heartbeat_age_s += h
        if p.plc_heartbeat_age_s >= c.hb_timeout:
            p.plc_fallback = True
    if p.supply_temp_c > c.hi_limit:
        p.plc_overtemp = True
    elif p.supply_temp_c < c.hi_release:
        p.plc_overtemp = False
    if p.plc_fallback:
        v_cmd, fan_cmd, hp_en = 0.0, 1.0, False
    else:
        v_cmd, fan_cmd = act.valve_recovery, act.fan_speed  # clamped to 0..1
        v_cmd = 0.0 if v_cmd < 0.0 else 1.0 if v_cmd > 1.0 else v_cmd
        fan_cmd = 0.0 if fan_cmd < 0.0 else 1.0 if fan_cmd > 1.0 else fan_cmd
        hp_en = act.hp_enable
    if p.plc_overtemp:
        v_cmd, fan_cmd = 0.0, 1.0
    return v_cmd, fan_cmd, hp_en


def _move_valve_and_fans(
    p: _Plant, v_cmd: float, fan_cmd: float, lag: float, valve_rate: float, h: float,
    c: Compiled,
) -> None:
    """The valve follows its lagged command at its stroke rate (0: seized), the fans at
    their ramp."""
    v_lag = p.valve_lagged + (v_cmd - p.valve_lagged) * lag
    p.valve_lagged = v_lag
    p.valve_position = _toward(p.valve_position, v_lag, valve_rate * h)
    p.fan_speed = _toward(p.fan_speed, fan_cmd, c.fan_rate * h)


def _toward(position: float, target: float, most: float) -> float:
    """One move of at most `most` from `position` to `target`, stopping there."""
    if target > position:
        moved = position + most
        return target if target < moved else moved
    moved = position - most
    return target if target > moved else moved


def _sequence_heat_pump(
    p: _Plant,
    hp_en: bool,
    reset_edge: bool,
    hp_fault: bool,
    cap_target: float,
    h: float,
    c: Compiled,
) -> None:
    """Reset (on its rising edge), internal fault, starts per hour and the capacity ramp."""
    trip = p.hp_trip_code
    if reset_edge and trip and not hp_fault:
        trip = TRIP_NONE
    if hp_fault and not trip:
        trip = TRIP_INTERNAL_FAULT
    p.hp_trip_code = trip
    if trip:
        p.hp_running = False
        p.hp_capacity = 0.0
    elif hp_en and not p.hp_running:
        starts = tuple(s for s in p.hp_starts if s > p.t - 3600.0)
        p.hp_starts = starts
        if len(starts) >= c.max_starts:
            p.hp_trip_code = TRIP_STARTS_PER_HOUR
        else:
            p.hp_running = True
            p.hp_capacity = 0.0
            p.hp_starts = (*starts, p.t)
    elif p.hp_running and not hp_en:
        p.hp_running = False
        p.hp_capacity = 0.0
    if p.hp_running:
        p.hp_capacity = _toward(p.hp_capacity, cap_target, c.hp_rate * h)


def _heat_pump(p: _Plant, t_bot: float, c: Compiled) -> float:
    """The recovery heat exchanger and the heat pump, heating tank-bottom water; trips on a
    hot evaporator inlet or condenser outlet. Returns the condenser flow (kg/s)."""
    evap_in = p.hp_evap_inlet_c = p.rack_temp_c - c.hx_approach
    if not (p.hp_running and p.hp_capacity > 0.0):
        p.recovered_kw = p.hp_heat_kw = p.hp_power_kw = p.hp_cop = 0.0
        p.hp_cond_outlet_c = t_bot
        return 0.0
    cp_dh = c.cp_dh
    q_target = p.hp_capacity * c.hp_nom
    rise = c.dh_set - t_bot
    m_c = c.cond_flow_max
    if rise > 0.0:
        needed = q_target / (cp_dh * rise)
        m_c = needed if needed < m_c else m_c
    # the machine unloads itself to keep its condenser outlet below its trip
    room = (c.cond_unload - t_bot) * m_c * cp_dh
    if q_target > room:
        q_target = room if room > 0.0 else 0.0
    lift = q_target / (m_c * cp_dh) + t_bot - evap_in
    lift = c.lift_min if c.lift_min > lift else lift  # clamped in the model's range,
    lift = c.lift_max if c.lift_max < lift else lift  # the upper bound winning
    cop = p.hp_cop = _cop(lift, t_bot + q_target / (m_c * cp_dh), c)
    q_rec = q_target * (1.0 - 1.0 / cop)
    q_src = p.valve_position * c.loop_c * (p.rack_temp_c - c.src_min)
    if q_rec > q_src:
        q_rec = 0.0 if q_src < 0.0 else q_src
    q_cond = q_rec * cop / (cop - 1.0)
    p.recovered_kw, p.hp_heat_kw, p.hp_power_kw = q_rec, q_cond, q_cond - q_rec
    cond_out = p.hp_cond_outlet_c = t_bot + q_cond / (m_c * cp_dh)
    if evap_in > c.evap_max:
        p.hp_trip_code = TRIP_EVAP_INLET_HIGH
    elif cond_out > c.cond_max:
        p.hp_trip_code = TRIP_COND_OVERTEMP
    if p.hp_trip_code:  # this substep's heat was made; the compressor stops now
        p.hp_running = False
        p.hp_capacity = 0.0
    return m_c


def _cop(lift: float, cond_outlet_c: float, c: Compiled) -> float:
    """COP at a lift already inside the model's range."""
    if c.carnot:
        cop = c.carnot_eff * (cond_outlet_c + 273.15) / lift
    else:
        cop = 1.448e12 * (lift + 177.46) ** -4.946
    cop *= c.cop_factor
    return 1.01 if cop < 1.01 else cop


def _dry_cooler(p: _Plant, t_air: float, c: Compiled) -> None:
    """Heat the dry cooler rejects (effectiveness-NTU): diverting, on the flow the recovery
    branch leaves it; mixing, on the whole flow after the recovery branch has cooled it.
    Fan power is cubic in speed."""
    loop_c = c.loop_c
    if c.mixing:
        c_dc, t_in = loop_c, p.rack_temp_c - p.recovered_kw / loop_c
    else:
        c_dc, t_in = (1.0 - p.valve_position) * loop_c, p.rack_temp_c
    fan = p.fan_speed
    if c_dc > 0.0:
        ua = c.dc_ua * (c.dc_nat + (1.0 - c.dc_nat) * fan**c.dc_exp)
        p.drycooler_kw = (1.0 - math.exp(-ua / c_dc)) * c_dc * (t_in - t_air)
    else:
        p.drycooler_kw = 0.0
    p.fan_power_kw = c.fan_p * fan * fan * fan


def _network_draw(p: _Plant, t_top: float, c: Compiled) -> float:
    """The district-heating draw from the tank top, only at the contracted temperature.
    Returns the network flow (kg/s)."""
    cp_dh = c.cp_dh
    t_ret = p.dh_return_temp_c
    accept = (t_top - c.dh_set) / c.accept_band + 1.0
    if accept > 0.0 and t_top > t_ret:
        rise = t_top - t_ret
        m_d = (1.0 if accept > 1.0 else accept) * p.dh_demand_kw
        m_d /= cp_dh * (1.0 if rise < 1.0 else rise)
    else:
        m_d = 0.0
    m_d = c.dh_flow_max if c.dh_flow_max < m_d else m_d
    if m_d > 0.0:
        p.dh_delivered_kw = m_d * cp_dh * (t_top - t_ret)
        p.dh_supply_temp_c = c.dh_set if c.dh_set < t_top else t_top
    else:
        p.dh_delivered_kw = 0.0
        p.dh_supply_temp_c = t_top
    return m_d


def _exchange_tank(
    tank: list[float],
    m_c: float,
    cond_out: float,
    m_d: float,
    t_ret: float,
    h: float,
    c: Compiled,
) -> None:
    """The stratified tank (top first), in place: the condenser charges the top, the network
    draws from the top and returns into the bottom, and the net flow moves upwind between
    nodes. One node is the header alone."""
    kc = h / c.node_cap * c.cp_dh
    top = tank[0]
    if c.nodes == 1:
        tank[0] = top + kc * (m_c * (cond_out - top) + m_d * (t_ret - top))
        return
    old = tank[:]
    last = c.nodes - 1
    net = m_c - m_d
    flux = m_c * (cond_out - top)
    if net < 0.0:  # drawing: the water rises
        flux -= net * (old[1] - top)
    tank[0] = top + kc * flux
    for i in range(1, last):
        ti = old[i]
        if net > 0.0:  # charging: the water sinks
            tank[i] = ti + kc * (net * (old[i - 1] - ti))
        else:
            tank[i] = ti + kc * -(net * (old[i + 1] - ti))
    bottom = old[last]
    flux = m_d * (t_ret - bottom)
    if net > 0.0:
        flux += net * (old[last - 1] - bottom)
    tank[last] = bottom + kc * flux


def _racks_and_loop(p: _Plant, q_it_demand: float, h: float, c: Compiled) -> None:
    """The servers (throttling themselves on a hot supply), their liquid and air heat, the
    coolant loop (rack node, supply node) and the room air the coil returns."""
    t_air, t_rack, t_sup = p.air_temp_c, p.rack_temp_c, p.supply_temp_c
    q_it = q_it_demand
    if t_sup > c.throttle_start:
        share = 1.0 - (t_sup - c.throttle_start) / (c.shutdown - c.throttle_start)
        q_it *= share if share > 0.0 else 0.0
    p.it_power_kw = q_it
    q_liq = q_it * c.liquid_share
    q_coil = c.coil_ua * (t_air - t_sup)
    loop_c = c.loop_c
    p.air_temp_c = t_air + h * (q_it - q_liq - q_coil) / c.air_cap
    p.rack_temp_c = t_rack + h * (q_liq + q_coil + loop_c * (t_sup - t_rack)) / c.rack_cap
    p.supply_temp_c = (
        t_sup + h * (loop_c * (t_rack - t_sup) - p.recovered_kw - p.drycooler_kw) / c.sup_cap
    )


def _integrate(p: _Plant, h: float) -> None:
    """The energy integrators (kWh) and the clock."""
    hk = h / _S_PER_KWH
    p.it_energy_kwh += p.it_power_kw * hk
    p.heat_recovered_kwh += p.recovered_kw * hk
    p.heat_delivered_to_dh_kwh += p.dh_delivered_kw * hk
    p.heat_rejected_drycooler_kwh += p.drycooler_kw * hk
    p.hp_electricity_kwh += p.hp_power_kw * hk
    p.hp_heat_kwh += p.hp_heat_kw * hk
    p.fan_electricity_kwh += p.fan_power_kw * hk
    p.t += h
