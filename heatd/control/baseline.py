"""Baseline: the sequence a competent building-automation engineer would program.

It is the comparison point heatd is scored against, so it must be good, not a straw man:

- **Interlock** at 43 degC supply or 51 degC evaporator inlet (coolant return), or with
  the supply unknown: everything to the dry cooler (valve 0, fan 100 %, heat pump off),
  latched until the loop is 3 K back under both limits.
- **Valve** to recovery only while the heat pump actually runs (its running feedback),
  and closed over a 38 -> 42 degC supply band so the dry cooler gets the flow it needs.
- **Fan**: a PI on supply temperature with anti-windup clamping.
- **Heat pump** enabled on demand with hysteresis and minimum on and off times; the
  capacity follows the demand.
- **Trips** are reset after a cool-down, at most a few times an hour; past that the
  machine stays off, as an operator would want.

Like a BMS it keeps the last good value of a signal that goes bad, and it has no
envelope, validation layers or rate-of-rise logic: those are heatd's job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from heatd.control import roles as R
from heatd.control.bounds import device_bounds
from heatd.control.core import Decision
from heatd.control.events import Cause, Event, Layer
from heatd.control.signals import Snapshot

_BOUNDS = device_bounds()
_KNOWN = frozenset(R.INPUT_ROLES) | frozenset(R.FEEDBACK_ROLES)

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


class BaselineParams(BaseModel):
    """Setpoints of the sequence; ``heatd.hil.family_score`` documents how they were tuned."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    interlock_supply_c: float = 43.0
    interlock_evaporator_c: float = 51.0
    interlock_release_k: Positive = 3.0
    valve_close_from_c: float = 38.0
    valve_closed_at_c: float = 42.0
    fan_setpoint_c: float = 38.0
    fan_kp: NonNegative = 0.1
    """Fan speed per K of supply above its setpoint."""
    fan_ti_s: Positive = 240.0
    hp_on_kw: float = 30.0
    hp_off_kw: float = 15.0
    min_on_s: NonNegative = 600.0
    min_off_s: NonNegative = 300.0
    reset_cooldown_s: NonNegative = 600.0
    max_resets_per_hour: Annotated[int, Field(ge=0)] = 2
    reset_pulse_s: Positive = 2.0
    hp_nominal_heat_kw: Positive = 100.0
    capacity_min: Annotated[float, Field(ge=0, le=1)] = 0.2
    supply_limit_c: float = 45.0


@dataclass(frozen=True, slots=True)
class BaselineState:
    hp_on: bool = False
    changed_at: float = float("-inf")
    """When the enable last changed: the minimum on and off times count from here."""
    interlock: bool = False
    fan_u: float = 1.0
    fan_e: float | None = None
    last_t: float | None = None
    tripped_at: float | None = None
    resets: tuple[float, ...] = ()
    reset_until: float = float("-inf")
    last: tuple[tuple[str, float], ...] = ()
    """Last good value of each role read, as a BMS holds it."""


def initial_state(now: float) -> BaselineState:
    """Same shape as the control core's ``initial_state`` so a co-simulator can swap them.
    The fan starts full, as a BMS powers up into its safe state."""
    del now
    return BaselineState()


def _read(snapshot: Snapshot, memory: dict[str, float], role: str) -> float | None:
    """First good numeric point of a role, else the last value seen (what a BMS does)."""
    for sig in snapshot.signals.get(role, ()):
        v = sig.value
        if sig.good and isinstance(v, int | float) and math.isfinite(v):
            memory[role] = float(v)
            return float(v)
    return memory.get(role)


@lru_cache(maxsize=16)
def _missing(bound: tuple[str, ...]) -> tuple[str, ...]:
    """Input roles a snapshot with these roles lacks: the same on every scan of a site."""
    return tuple(sorted(_KNOWN.difference(bound)))


def _band(x: float, start: float, end: float) -> float:
    return min(1.0, max(0.0, (x - start) / (end - start)))


def _interlock(st: BaselineState, supply: float | None, evap: float | None,
               p: BaselineParams) -> bool:
    if supply is None:
        return True
    hot = supply >= p.interlock_supply_c or (evap is not None
                                              and evap >= p.interlock_evaporator_c)
    if hot or not st.interlock:
        return hot
    release = p.interlock_release_k
    return supply > p.interlock_supply_c - release or (
        evap is not None and evap > p.interlock_evaporator_c - release)


def _fan(st: BaselineState, supply: float | None, p: BaselineParams,
         now: float) -> tuple[float, float | None]:
    """Velocity-form PI: clamping the output is the anti-windup."""
    if supply is None:
        return 1.0, None
    e = supply - p.fan_setpoint_c
    dt = 0.0 if st.last_t is None else min(max(now - st.last_t, 0.0), 60.0)
    last = e if st.fan_e is None else st.fan_e
    u = st.fan_u + p.fan_kp * (e - last + dt / p.fan_ti_s * e)
    return min(max(u, 0.0), 1.0), e


def _want(st: BaselineState, demand: float | None, p: BaselineParams, now: float) -> bool:
    """Demand hysteresis inside the minimum on and off times."""
    want = st.hp_on
    if demand is not None:
        want = demand > p.hp_off_kw if st.hp_on else demand >= p.hp_on_kw
    held = p.min_on_s if st.hp_on else p.min_off_s
    return st.hp_on if want != st.hp_on and now - st.changed_at < held else want


def _reset(st: BaselineState, tripped: bool, p: BaselineParams,
           now: float) -> tuple[BaselineState, bool]:
    """Pulse a reset once the cool-down after a trip has passed, a few times an hour."""
    if not tripped:
        if st.tripped_at is not None:
            st = replace(st, tripped_at=None)
        return st, now < st.reset_until
    tripped_at = now if st.tripped_at is None else st.tripped_at
    resets = tuple(t for t in st.resets if now - t < 3600.0)
    if (now >= st.reset_until and now - tripped_at >= p.reset_cooldown_s
            and len(resets) < p.max_resets_per_hour):
        return replace(st, tripped_at=now, resets=(*resets, now),
                       reset_until=now + p.reset_pulse_s), True
    return replace(st, tripped_at=tripped_at, resets=resets), now < st.reset_until


def step(
    snapshot: Snapshot, state: BaselineState, params: BaselineParams, now: float
) -> Decision[BaselineState]:
    """One BMS scan."""
    p = params
    memory = dict(state.last)
    supply = _read(snapshot, memory, R.COOLANT_SUPPLY_TEMP)
    evap = _read(snapshot, memory, R.COOLANT_RETURN_TEMP)
    demand = _read(snapshot, memory, R.DH_DEMAND)
    running = (_read(snapshot, memory, R.HP_RUNNING) or 0.0) > 0.5
    tripped = ((_read(snapshot, memory, R.HP_FAULT) or 0.0) > 0.5
               or (_read(snapshot, memory, R.HP_TRIP_CODE) or 0.0) > 0)

    interlock = _interlock(state, supply, evap, p)
    fan_u, fan_e = _fan(state, supply, p, now)
    st, reset = _reset(state, tripped, p, now)
    want = _want(st, demand, p, now) and not interlock and not tripped
    if interlock and st.hp_on:  # a safety stop does not wait for the minimum on time
        want = False

    if interlock:
        valve, fan = 0.0, 1.0
    else:
        fan = fan_u
        open_ = 1.0 - _band(supply or 0.0, p.valve_close_from_c, p.valve_closed_at_c)
        valve = open_ if running and want else 0.0
    cap = min(1.0, max(demand or 0.0, 0.0) / p.hp_nominal_heat_kw)
    setpoints = _BOUNDS.admit(valve, fan, want, cap, reset, state.hp_on, p.capacity_min)

    events: tuple[Event, ...] = ()
    if want != state.hp_on:
        new, old = ("running", "off") if want else ("off", "running")
        cause, why = ((Cause.INTERLOCK, "interlock") if interlock else
                      (Cause.HP_FAULT, "trip") if tripped else (Cause.DEMAND, "demand hysteresis"))
        events = (Event(now, Layer.OPTIMISER, "hp_state", "hp", old, new, cause, why),)
    st = BaselineState(
        hp_on=want, changed_at=now if want != state.hp_on else state.changed_at,
        interlock=interlock, fan_u=fan_u, fan_e=fan_e, last_t=now, tripped_at=st.tripped_at,
        resets=st.resets, reset_until=st.reset_until, last=tuple(memory.items()))
    margin = None if supply is None else p.supply_limit_c - supply
    return Decision(
        setpoints=setpoints,
        state=st,
        limits=(),
        events=events,
        mode="auto",
        cooling_margin=margin,
        hp_state="tripped" if tripped else ("running" if want else "off"),
        missing=_missing(tuple(snapshot.signals)),
        invalid={},
        bounds=_BOUNDS,
    )
