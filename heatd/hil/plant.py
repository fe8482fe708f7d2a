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
from typing import NamedTuple

from heatd.hil.params import Compiled, PlantParams, compile_params

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
    """What the world does to the plant; `hp_fault` is an internal heat-pump fault."""

    it_power_kw: float
    outdoor_temp_c: float
    dh_demand_kw: float
    dh_return_temp_c: float = 40.0
    hp_fault: bool = False


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
    lift = min(max(lift_k, c.lift_min), c.lift_max)
    if c.carnot:
        cop = c.carnot_eff * (cond_outlet_c + 273.15) / lift
    else:
        cop = 1.448e12 * (lift + 177.46) ** -4.946
    return max(1.01, cop * c.cop_factor)


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
    """Advance the plant by dt seconds (split into stable substeps when dt is long)."""
    c = params if isinstance(params, Compiled) else compile_params(params)
    (
        t, t_air, t_rack, t_sup, tank_nodes, valve, fan, v_lag,
        running, cap, trip, starts, reset_prev,
        hb_last, hb_age, fallback, overtemp,
        _, _, _, _, dh_sup_out, q_dh, q_rec, q_cond, p_el, cop, evap_in, cond_out, q_dc, p_fan,
        e_it, e_rec, e_dh, e_dc, e_el, e_hp, e_fan,
    ) = state  # fmt: skip
    v_cmd_in, hp_en_in, cap_cmd, reset, fan_cmd_in, hb = act
    q_it, t_out, q_dem, t_ret, hp_fault = dist

    n = c.substeps(dt)
    h = dt / n
    tank = list(tank_nodes)
    nodes = c.nodes
    loop_c = c.loop_c
    cp_dh = c.cp_dh
    q_it_demand = q_it
    throttle_span = c.shutdown - c.throttle_start
    lag = 1.0 - math.exp(-h / c.valve_lag) if c.valve_lag > 0.0 else 1.0
    t_dc_air = t_out + c.air_offset
    cap_target = min(max(cap_cmd, c.hp_min), 1.0)
    reset_edge = reset and not reset_prev

    for _ in range(n):
        # --- site PLC: heartbeat watchdog and hard supply limit
        if hb != hb_last:
            hb_last = hb
            hb_age = 0.0
            fallback = False
        else:
            hb_age += h
            if hb_age >= c.hb_timeout:
                fallback = True
        if t_sup > c.hi_limit:
            overtemp = True
        elif t_sup < c.hi_release:
            overtemp = False
        if fallback:
            v_cmd, fan_cmd, hp_en = 0.0, 1.0, False
        else:
            v_cmd = min(max(v_cmd_in, 0.0), 1.0)
            fan_cmd = min(max(fan_cmd_in, 0.0), 1.0)
            hp_en = hp_en_in
        if overtemp:
            v_cmd, fan_cmd = 0.0, 1.0

        # --- servers throttle themselves on a hot supply
        if t_sup > c.throttle_start:
            q_it = q_it_demand * max(0.0, 1.0 - (t_sup - c.throttle_start) / throttle_span)
        else:
            q_it = q_it_demand
        q_liq = q_it * c.liquid_share
        q_air = q_it - q_liq

        # --- valve (lagged actuator, then its stroke rate) and fans move at finite rates
        v_lag += (v_cmd - v_lag) * lag
        dv = c.valve_rate * h
        valve = min(valve + dv, v_lag) if v_lag > valve else max(valve - dv, v_lag)
        df = c.fan_rate * h
        fan = min(fan + df, fan_cmd) if fan_cmd > fan else max(fan - df, fan_cmd)

        # --- heat-pump sequencing: reset, faults, starts, ramp
        if reset_edge and trip and not hp_fault:
            trip = TRIP_NONE
        reset_edge = False
        if hp_fault and not trip:
            trip = TRIP_INTERNAL_FAULT
        if trip:
            running = False
            cap = 0.0
        elif hp_en and not running:
            starts = tuple(s for s in starts if s > t - 3600.0)
            if len(starts) >= c.max_starts:
                trip = TRIP_STARTS_PER_HOUR
            else:
                running = True
                cap = 0.0
                starts = (*starts, t)
        elif running and not hp_en:
            running = False
            cap = 0.0
        if running:
            dc_ = c.hp_rate * h
            cap = min(cap + dc_, cap_target) if cap_target > cap else max(cap - dc_, cap_target)

        # --- recovery heat exchanger and heat pump
        t_bot = tank[-1]
        t_top = tank[0]
        evap_in = t_rack - c.hx_approach
        if running and cap > 0.0:
            q_target = cap * c.hp_nom
            rise = c.dh_set - t_bot
            m_c = c.cond_flow_max
            if rise > 0.0:
                m_c = min(m_c, q_target / (cp_dh * rise))
            # the machine unloads itself to keep its condenser outlet below its trip
            room = (c.cond_unload - t_bot) * m_c * cp_dh
            if q_target > room:
                q_target = room if room > 0.0 else 0.0
            lift = q_target / (m_c * cp_dh) + t_bot - evap_in
            lift = min(max(lift, c.lift_min), c.lift_max)
            if c.carnot:
                cop = c.carnot_eff * (t_bot + q_target / (m_c * cp_dh) + 273.15) / lift
            else:
                cop = 1.448e12 * (lift + 177.46) ** -4.946
            cop = max(cop * c.cop_factor, 1.01)
            q_rec = q_target * (1.0 - 1.0 / cop)
            q_src = valve * loop_c * (t_rack - c.src_min)
            if q_rec > q_src:
                q_rec = max(q_src, 0.0)
            q_cond = q_rec * cop / (cop - 1.0)
            p_el = q_cond - q_rec
            cond_out = t_bot + q_cond / (m_c * cp_dh)
            if evap_in > c.evap_max:
                trip = TRIP_EVAP_INLET_HIGH
            elif cond_out > c.cond_max:
                trip = TRIP_COND_OVERTEMP
            if trip:  # this substep's heat was made; the compressor stops now
                running = False
                cap = 0.0
        else:
            m_c = q_rec = q_cond = p_el = cop = 0.0
            cond_out = t_bot

        # --- dry cooler (effectiveness-NTU): diverting, on the flow the recovery branch
        # leaves it; mixing, on the whole flow after the recovery branch has cooled it
        if c.mixing:
            c_dc, t_dc_in = loop_c, t_rack - q_rec / loop_c
        else:
            c_dc, t_dc_in = (1.0 - valve) * loop_c, t_rack
        if c_dc > 0.0:
            ua = c.dc_ua * (c.dc_nat + (1.0 - c.dc_nat) * fan**c.dc_exp)
            q_dc = (1.0 - math.exp(-ua / c_dc)) * c_dc * (t_dc_in - t_dc_air)
        else:
            q_dc = 0.0
        p_fan = c.fan_p * fan * fan * fan

        # --- district-heating draw from the tank top, only at the contracted temperature
        accept = (t_top - c.dh_set) / c.accept_band + 1.0
        if accept > 0.0 and t_top > t_ret:
            m_d = min(accept, 1.0) * q_dem / (cp_dh * max(t_top - t_ret, 1.0))
        else:
            m_d = 0.0
        m_d = min(m_d, c.dh_flow_max)
        q_dh = m_d * cp_dh * (t_top - t_ret) if m_d > 0.0 else 0.0
        dh_sup_out = min(t_top, c.dh_set) if m_d > 0.0 else t_top

        # --- stratified tank: charge top->bottom, draw bottom->top, upwind between nodes
        k = h / c.node_cap
        if nodes == 1:
            tank[0] += k * cp_dh * (m_c * (cond_out - t_top) + m_d * (t_ret - t_top))
        else:
            net = m_c - m_d
            old = tank[:]
            last = nodes - 1
            for i in range(nodes):
                ti = old[i]
                flux = 0.0
                if i == 0:
                    flux += m_c * (cond_out - ti)
                    if net < 0.0:
                        flux -= net * (old[1] - ti)
                elif i == last:
                    flux += m_d * (t_ret - ti)
                    if net > 0.0:
                        flux += net * (old[i - 1] - ti)
                elif net > 0.0:
                    flux += net * (old[i - 1] - ti)
                else:
                    flux -= net * (old[i + 1] - ti)
                tank[i] = ti + k * cp_dh * flux

        # --- coolant loop and room air
        q_coil = c.coil_ua * (t_air - t_sup)
        t_air += h * (q_air - q_coil) / c.air_cap
        t_rack_new = t_rack + h * (q_liq + q_coil + loop_c * (t_sup - t_rack)) / c.rack_cap
        t_sup += h * (loop_c * (t_rack - t_sup) - q_rec - q_dc) / c.sup_cap
        t_rack = t_rack_new

        # --- energy integrators (kWh)
        hk = h / _S_PER_KWH
        e_it += q_it * hk
        e_rec += q_rec * hk
        e_dh += q_dh * hk
        e_dc += q_dc * hk
        e_el += p_el * hk
        e_hp += q_cond * hk
        e_fan += p_fan * hk
        t += h

    return PlantState(
        t, t_air, t_rack, t_sup, tuple(tank), valve, fan, v_lag,
        running, cap, trip, starts, reset,
        hb_last, hb_age, fallback, overtemp,
        q_it, t_out, q_dem, t_ret, dh_sup_out, q_dh, q_rec, q_cond, p_el, cop, evap_in,
        cond_out, q_dc, p_fan,
        e_it, e_rec, e_dh, e_dc, e_el, e_hp, e_fan,
    )  # fmt: skip
