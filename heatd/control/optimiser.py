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
    target = values.get(R.DH_DEMAND, 0.0)
    top = values.get(R.STORAGE_TOP_TEMP)
    if top is not None:
        headroom = (p.storage_full_c - top) / p.storage_band_k
        target += p.storage_charge_kw * min(1.0, max(0.0, headroom))
    it = values.get(R.IT_POWER)
    if it is not None:
        target = min(target, it * p.hp_cop / (p.hp_cop - 1.0))
    return min(target, p.hp_nominal_heat_kw)


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


def _deadband(e: float, band: float) -> float:
    return e - band if e > band else (e + band if e < -band else 0.0)


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
    fan = fan_u = prev_fan if st.fan_u is None else st.fan_u
    fan_e = None
    supply = values.get(R.COOLANT_SUPPLY_TEMP)
    if supply is not None:
        fan_e = _deadband(supply - p.supply_setpoint_c, p.fan_deadband_k)
        last = fan_e if st.fan_e is None else st.fan_e
        fan = fan_u + p.fan_kp * (fan_e - last + dt / p.fan_ti_s * fan_e)
    fan = min(1.0, max(fan_lo, fan))

    cap, cap_e, cap_ff = 0.0, None, None
    if running:
        cap_ff = st.target_kw / p.hp_nominal_heat_kw
        heat = values.get(R.HP_HEAT)
        # On a (re)start the loop takes its positional value ff + kp*e (the rate limiter
        # makes that smooth); afterwards it moves by increments from its own last output.
        fresh = st.cap_u is None
        base = max(prev_cap, cap_min) if fresh else st.cap_u
        cap = base + cap_ff - (base if fresh or st.cap_ff is None else st.cap_ff)
        if heat is not None:
            cap_e = _deadband((st.target_kw - heat) / p.hp_nominal_heat_kw, p.heat_deadband)
            last = 0.0 if fresh or st.cap_e is None else st.cap_e
            cap += p.cap_kp * (cap_e - last + dt / p.cap_ti_s * cap_e)
        cap = min(cap_hi, max(cap_min, cap))
    elif enabled:
        cap = cap_min

    valve = 0.0
    if enabled:
        it = values.get(R.IT_POWER)
        heat, power = values.get(R.HP_HEAT), values.get(R.HP_POWER)
        if running and heat is not None and power is not None:
            extraction = max(0.0, heat - power)
        else:
            extraction = cap * p.hp_nominal_heat_kw * (1.0 - 1.0 / p.hp_cop)
        # IT power unknown: assume the heat pump was sized for the IT load
        valve = cap if it is None else p.valve_ff_gain * extraction / max(it, 1e-6)
        valve = max(valve, p.valve_min_running)
    new = _new(st.want, st.flip_since, fan_e, fan, cap_e, cap if running else None, cap_ff,
               st.target_kw)
    return _new_proposal(valve, fan, cap), new
