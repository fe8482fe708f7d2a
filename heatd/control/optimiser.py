"""Heat-recovery optimiser: sell as much heat as the DH side (and storage) will take,
inside whatever bounds the envelope left.

Two PI loops in velocity form, each continuing from the output actually applied last
cycle: the dry-cooler fan holds the supply temperature at its setpoint (the trim), the
heat-pump capacity tracks the heat target. Starting from the applied output makes the
loops bumpless across mode changes and free of wind-up when the envelope or a rate limit
clamps them, by construction. The recovery valve follows a heat-balance feed-forward
(the recovery branch gets the share of coolant flow that matches the share of heat the
heat pump extracts). Deadbands and start/stop hysteresis with delays keep it from hunting.
"""

from __future__ import annotations

from dataclasses import dataclass

from heatd.control import roles as R
from heatd.control.frozen import maker
from heatd.control.params import OptimiserParams


@dataclass(frozen=True, slots=True)
class OptState:
    """Loop memory. ``*_u`` is each PI's own output (the rate limiter chases it); None right
    after a mode change, so the loop restarts from the applied output without a kick."""

    want: bool = False
    flip_since: float | None = None
    fan_e: float | None = None
    fan_u: float | None = None
    cap_e: float | None = None
    cap_u: float | None = None
    cap_ff: float | None = None
    target_kw: float = 0.0


RESET = OptState()
_new = maker(OptState)


@dataclass(frozen=True, slots=True)
class Proposal:
    """What the optimiser would like; the envelope's Bounds decide what is applied."""

    valve: float
    fan: float
    capacity: float


_new_proposal = maker(Proposal)

def heat_target_kw(values: dict[str, float], p: OptimiserParams) -> float:
    """Heat worth delivering now: DH demand plus storage headroom, capped by the IT heat
    available to the evaporator and by the heat pump's size."""
    # min()/max() written out (same result, NaN included): this runs every cycle
    target = values.get(_DEMAND, 0.0)
    top = values.get(_TOP)
    if top is not None:
        headroom = (p.storage_full_c - top) / p.storage_band_k
        share = headroom if headroom > 0.0 else 0.0
        target += p.storage_charge_kw * (share if share < 1.0 else 1.0)
    it = values.get(_IT)
    if it is not None:
        cop = p.hp_cop
        it_heat = it * cop / (cop - 1.0)
        if it_heat < target:
            target = it_heat
    nominal = p.hp_nominal_heat_kw
    return nominal if nominal < target else target


def want_heat(
    values: dict[str, float], st: OptState, p: OptimiserParams, now: float
) -> OptState:
    """Start/stop request with hysteresis and delays, so a noisy demand cannot cycle the pump."""
    target = heat_target_kw(values, p)
    frac = target / p.hp_nominal_heat_kw
    flip = frac < p.stop_below if st.want else frac >= p.start_above
    want = st.want
    if flip:
        since = now if st.flip_since is None else st.flip_since
        if now - since < (p.stop_delay_s if want else p.start_delay_s):
            return _new(want, since, st.fan_e, st.fan_u, st.cap_e, st.cap_u, st.cap_ff, target)
        want = not want
    return _new(want, None, st.fan_e, st.fan_u, st.cap_e, st.cap_u, st.cap_ff, target)


def propose(
    values: dict[str, float],
    enabled: bool,
    running: bool,
    prev_fan: float,
    prev_cap: float,
    fan_lo: float,
    cap_hi: float,
    st: OptState,
    p: OptimiserParams,
    cap_min: float,
    dt: float,
) -> tuple[Proposal, OptState]:
    """Fan, capacity and valve targets for this cycle. Each PI output is clamped to what the
    bounds allow (``fan_lo``, ``cap_hi``), so it cannot wind up against them."""
    # Deadbands and min()/max() written out (same result, NaN included): this runs every cycle.
    fan = fan_u = prev_fan if st.fan_u is None else st.fan_u
    fan_e = None
    supply = values.get(_SUPPLY)
    if supply is not None:
        e, band = supply - p.supply_setpoint_c, p.fan_deadband_k
        fan_e = e - band if e > band else (e + band if e < -band else 0.0)
        last = fan_e if st.fan_e is None else st.fan_e
        fan = fan_u + p.fan_kp * (fan_e - last + dt / p.fan_ti_s * fan_e)
    if not fan > fan_lo:
        fan = fan_lo
    if not fan < 1.0:
        fan = 1.0

    cap, cap_e, cap_ff = 0.0, None, None
    if running:
        nominal = p.hp_nominal_heat_kw
        cap_ff = st.target_kw / nominal
        heat = values.get(_HEAT)
        # On a (re)start the loop takes its positional value ff + kp*e (the rate limiter
        # makes that smooth); afterwards it moves by increments from its own last output.
        fresh = st.cap_u is None
        base = (cap_min if cap_min > prev_cap else prev_cap) if fresh else st.cap_u
        cap = base + cap_ff - (base if fresh or st.cap_ff is None else st.cap_ff)
        if heat is not None:
            e, band = (st.target_kw - heat) / nominal, p.heat_deadband
            cap_e = e - band if e > band else (e + band if e < -band else 0.0)
            last = 0.0 if fresh or st.cap_e is None else st.cap_e
            cap += p.cap_kp * (cap_e - last + dt / p.cap_ti_s * cap_e)
        if not cap > cap_min:
            cap = cap_min
        if not cap < cap_hi:
            cap = cap_hi
    elif enabled:
        cap = cap_min

    valve = 0.0
    if enabled:
        it = values.get(_IT)
        heat, power = values.get(_HEAT), values.get(_POWER)
        if running and heat is not None and power is not None:
            extraction = heat - power
            if not extraction > 0.0:
                extraction = 0.0
        else:
            extraction = cap * p.hp_nominal_heat_kw * (1.0 - 1.0 / p.hp_cop)
        # IT power unknown: assume the heat pump was sized for the IT load
        valve = cap if it is None else p.valve_ff_gain * extraction / (1e-6 if it < 1e-6 else it)
        floor = p.valve_min_running
        if floor > valve:
            valve = floor
    new = _new(st.want, st.flip_since, fan_e, fan, cap_e, cap if running else None, cap_ff,
               st.target_kw)
    return _new_proposal(valve, fan, cap), new


_SUPPLY = R.COOLANT_SUPPLY_TEMP
_DEMAND = R.DH_DEMAND
_TOP = R.STORAGE_TOP_TEMP
_IT = R.IT_POWER
_HEAT = R.HP_HEAT
_POWER = R.HP_POWER
