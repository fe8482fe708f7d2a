"""Heat recovery: sell as much heat as the network (and storage) will take, inside
whatever bounds the envelope left, with the source loop as warm as cooling allows.

Two PI loops in velocity form, each continuing from its own last output, so they are
bumpless across mode changes and cannot wind up against a clamp:

- **cooling demand** ``u`` (0..1) holds the coolant supply at its setpoint. It drives
  the dry-cooler fan and, while the heat pump runs, the dry cooler's share of the flow
  (valve = 1 - u). In steady operation the heat pump takes all the IT heat it can: the
  valve sits fully on recovery and nothing leaks to the dry cooler; only heat the heat
  pump cannot take opens the dry cooler. A stopped heat pump gets no flow.
- **capacity** tracks the heat target: the network's demand plus storage headroom,
  capped by the IT heat the evaporator can take at the measured COP, and faded out as
  the loop falls below its setpoint (a colder loop costs COP and would only be drained).
  The fade only unloads a running heat pump; whether it runs is decided on the unfaded
  target, since heat the dry cooler passes on is lost for good.

Start/stop hysteresis with delays keeps noise from cycling the compressor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from heatd.control import roles as R
from heatd.control.minmax import clamp, max2, min2
from heatd.control.plain import OptimiserSettings


@dataclass(frozen=True, slots=True)
class OptState:
    """Loop memory. ``*_u`` is each PI's own output (the rate limiter chases it); None right
    after a mode change, so the loop restarts from the applied output without a kick."""

    want: bool = False
    flip_since: float | None = None
    cool_e: float | None = None
    cool_u: float | None = None
    cap_e: float | None = None
    cap_u: float | None = None
    target_kw: float = 0.0


RESET = OptState()


class Proposal(NamedTuple):
    """What the optimiser would like; the envelope's Bounds decide what is applied. Handed
    to the step within the cycle and never kept."""

    valve: float
    fan: float
    capacity: float


def measured_cop(values: dict[str, float], p: OptimiserSettings) -> float:
    """The heat pump's COP from its own meters when they make sense, else the nominal."""
    heat, power = values.get(R.HP_HEAT), values.get(R.HP_POWER)
    if heat is not None and power is not None and power > 0.05 * p.hp_nominal_heat_kw / p.hp_cop:
        cop = heat / power
        if 1.2 < cop < 12.0:
            return cop
    return p.hp_cop


def heat_target_kw(values: dict[str, float], p: OptimiserSettings) -> float:
    """Heat worth delivering now: demand plus storage headroom, capped by the IT heat the
    evaporator can take and by the heat pump's size. It decides whether the heat pump
    runs; a cold loop only slows it down (``cold_fade``), it never keeps it off."""
    target = values.get(R.DH_DEMAND, 0.0)
    top = values.get(R.STORAGE_TOP_TEMP)
    if top is not None:
        headroom = clamp((p.storage_full_c - top) / p.storage_band_k, 0.0, 1.0)
        target += p.storage_charge_kw * headroom
    it = values.get(R.IT_POWER)
    if it is not None:
        cop = measured_cop(values, p)
        target = min2(target, it * cop / (cop - 1.0))
    return min2(target, p.hp_nominal_heat_kw)


def cold_fade(values: dict[str, float], p: OptimiserSettings) -> float:
    """Share of the heat target the capacity loop chases: 1 while the loop is above
    ``source_min_c``, fading to 0 over ``cold_band_k`` below it, so a running heat pump
    unloads rather than drain the loop to where its COP no longer pays."""
    supply = values.get(R.COOLANT_SUPPLY_TEMP)
    if supply is None:
        return 1.0
    cold = p.source_min_c - supply
    return 1.0 if cold <= 0.0 else max2(1.0 - cold / p.cold_band_k, 0.0)


class HeatRequest(NamedTuple):
    """The start/stop half of the optimiser's memory, decided before the sequencer runs:
    whether heat is wanted, since when that has been about to flip, and how much. Handed to
    :func:`propose` within the cycle, which keeps it in the new :class:`OptState`."""

    want: bool
    flip_since: float | None
    target_kw: float


def request_heat(
    values: dict[str, float], st: OptState, p: OptimiserSettings, now: float
) -> HeatRequest:
    """Start/stop request with hysteresis and delays, so a noisy demand cannot cycle the pump."""
    wanted = heat_target_kw(values, p)
    frac = wanted / p.hp_nominal_heat_kw
    flip = frac < p.stop_below if st.want else frac >= p.start_above
    want = st.want
    since: float | None = None
    if flip:
        since = now if st.flip_since is None else st.flip_since
        if now - since >= (p.stop_delay_s if want else p.start_delay_s):
            want, since = not want, None
    return HeatRequest(want, since, wanted * cold_fade(values, p))


def want_heat(
    values: dict[str, float], st: OptState, p: OptimiserSettings, now: float
) -> OptState:
    """:func:`request_heat`, kept in the optimiser's state (the loops' memory as it was)."""
    want, since, target_kw = request_heat(values, st, p, now)
    return OptState(want, since, st.cool_e, st.cool_u, st.cap_e, st.cap_u, target_kw)


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
    p: OptimiserSettings,
    cap_min: float,
    dt: float,
    request: HeatRequest | None = None,
    cools: bool = False,
    valve_floor: float = 0.0,
) -> tuple[Proposal, OptState]:
    """Fan, capacity and valve targets for this cycle. Each PI output is clamped to what the
    bounds allow (``fan_lo``, ``cap_hi``), so it cannot wind up against them. ``request``
    is this cycle's :func:`request_heat`, kept in the new state; None takes the one ``st``
    holds (a state from :func:`want_heat`): the step makes one OptState a cycle, not two.
    ``cools``: the heat pump is a cooling path (the recovery valve stuck with flow through
    the evaporator, or the dry cooler saturated), so the cooling demand floors the
    capacity; ``valve_floor``: the recovery share it keeps meanwhile, where the demand
    would hand all the flow to the dry cooler."""
    want, since, target_kw = (st.want, st.flip_since, st.target_kw) if request is None else request
    u = prev_fan if st.cool_u is None else st.cool_u
    cool_e: float | None = None
    supply = values.get(R.COOLANT_SUPPLY_TEMP)
    if supply is not None:
        cool_e = _deadband(supply - p.supply_setpoint_c, p.cool_deadband_k)
        ret = values.get(R.COOLANT_RETURN_TEMP)
        if running and ret is not None:  # the evaporator inlet, not only the supply
            cool_e = max2(cool_e, ret - (p.evaporator_inlet_max_c - p.evaporator_margin_k))
        last = cool_e if st.cool_e is None else st.cool_e
        du = p.cool_kp * (cool_e - last + dt / p.cool_ti_s * cool_e)
        # Below the setpoint no sensor noise may add cooling: clamped at 0, the loop
        # would keep every upward spike and drop the downward ones, and leak recovery
        # flow to the dry cooler on a noisy sensor.
        u += min2(du, 0.0) if cool_e < 0.0 else du
    u = clamp(u, 0.0, 1.0)
    fan = max2(u, fan_lo)

    cap = 0.0
    cap_e: float | None = None
    if running:
        nominal = p.hp_nominal_heat_kw
        heat = values.get(R.HP_HEAT)
        # On a (re)start the loop begins at the target's own share of the machine (the
        # rate limiter makes that smooth); afterwards it moves by increments.
        fresh = st.cap_u is None
        cap = max(target_kw / nominal, cap_min, prev_cap) if st.cap_u is None else st.cap_u
        if heat is not None:
            e = _deadband((target_kw - heat) / nominal, p.heat_deadband)
            if target_kw >= nominal and heat < target_kw:
                # The whole machine is wanted: the deadband must not keep it a step short.
                e = max2(e, p.heat_deadband)
            last = 0.0 if fresh or st.cap_e is None else st.cap_e
            cap += p.cap_kp * (e - last + dt / p.cap_ti_s * e)
            cap_e = e
        if cools:
            cap = max2(cap, u)
        cap = clamp(cap, cap_min, cap_hi)
    elif enabled:
        cap = cap_min

    valve = max2(1.0 - u, valve_floor) if enabled else 0.0
    new = OptState(want, since, cool_e, u, cap_e, cap if running else None, target_kw)
    return Proposal(valve, fan, cap), new


