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
from heatd.control.params import OptimiserParams


@dataclass(frozen=True, slots=True)
class OptState:
    """Loop memory: last errors (None right after a mode change: no proportional kick)."""

    want: bool = False
    flip_since: float | None = None
    fan_e: float | None = None
    cap_e: float | None = None
    cap_ff: float | None = None
    target_kw: float = 0.0


RESET = OptState()


@dataclass(frozen=True, slots=True)
class Proposal:
    """What the optimiser would like; the envelope's Bounds decide what is applied."""

    valve: float
    fan: float
    capacity: float


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
    if not flip:
        return OptState(st.want, None, st.fan_e, st.cap_e, st.cap_ff, target)
    since = now if st.flip_since is None else st.flip_since
    delay = p.stop_delay_s if st.want else p.start_delay_s
    if now - since >= delay:
        return OptState(not st.want, None, st.fan_e, st.cap_e, st.cap_ff, target)
    return OptState(st.want, since, st.fan_e, st.cap_e, st.cap_ff, target)


def _deadband(e: float, band: float) -> float:
    return e - band if e > band else (e + band if e < -band else 0.0)


def propose(
    values: dict[str, float],
    enabled: bool,
    running: bool,
    prev_valve: float,
    prev_fan: float,
    prev_cap: float,
    st: OptState,
    p: OptimiserParams,
    cap_min: float,
    dt: float,
) -> tuple[Proposal, OptState]:
    """Fan, capacity and valve targets for this cycle (unclamped; rate limits come after)."""
    fan, fan_e = prev_fan, None
    supply = values.get(R.COOLANT_SUPPLY_TEMP)
    if supply is not None:
        fan_e = _deadband(supply - p.supply_setpoint_c, p.fan_deadband_k)
        last = fan_e if st.fan_e is None else st.fan_e
        fan = prev_fan + p.fan_kp * (fan_e - last + dt / p.fan_ti_s * fan_e)

    cap, cap_e, cap_ff = 0.0, None, None
    if running:
        cap_ff = st.target_kw / p.hp_nominal_heat_kw
        heat = values.get(R.HP_HEAT)
        base = max(prev_cap, cap_min)
        if heat is None:
            cap = cap_ff
        else:
            cap_e = _deadband((st.target_kw - heat) / p.hp_nominal_heat_kw, p.heat_deadband)
            last = cap_e if st.cap_e is None else st.cap_e
            step_ff = 0.0 if st.cap_ff is None else cap_ff - st.cap_ff
            cap = base + step_ff + p.cap_kp * (cap_e - last + dt / p.cap_ti_s * cap_e)
    elif enabled:
        cap = cap_min

    valve = 0.0
    if enabled:
        it = values.get(R.IT_POWER)
        heat, power = values.get(R.HP_HEAT), values.get(R.HP_POWER)
        if running and heat is not None and power is not None:
            extraction = max(0.0, heat - power)
        else:
            extraction = max(cap, cap_min) * p.hp_nominal_heat_kw * (1.0 - 1.0 / p.hp_cop)
        valve = prev_valve if it is None else p.valve_ff_gain * extraction / max(it, 1e-6)
        valve = max(valve, p.valve_min_running)
    new = OptState(st.want, st.flip_since, fan_e, cap_e, cap_ff, st.target_kw)
    return Proposal(valve, fan, cap), new
