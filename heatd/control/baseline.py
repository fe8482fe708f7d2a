"""Rule-based baseline: the sequence a typical building-management system runs.

Thermostatic recovery valve on supply temperature, dry-cooler fan on a proportional band,
heat pump on/off on DH demand with hysteresis. No envelope, no timers, no validation
beyond "use the last good value": it is the comparison point the control core is scored
against, so it must be plausible and must not crash, but it is deliberately not safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from heatd.control import roles as R
from heatd.control.bounds import device_bounds
from heatd.control.core import Decision
from heatd.control.events import Event, Layer
from heatd.control.signals import Snapshot

_BOUNDS = device_bounds()
_KNOWN = frozenset(R.INPUT_ROLES) | frozenset(R.FEEDBACK_ROLES)


class BaselineParams(BaseModel):
    """Setpoints of the rule-based sequence; defaults match the control core's site."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    valve_full_c: float = 36.0
    """Supply temperature at which the valve sends all coolant through the recovery HX."""
    valve_band_k: Annotated[float, Field(gt=0)] = 4.0
    fan_start_c: float = 38.0
    fan_band_k: Annotated[float, Field(gt=0)] = 5.0
    hp_on_kw: float = 30.0
    hp_off_kw: float = 10.0
    hp_nominal_heat_kw: Annotated[float, Field(gt=0)] = 100.0
    capacity_min: Annotated[float, Field(ge=0, le=1)] = 0.2
    supply_limit_c: float = 45.0


@dataclass(frozen=True, slots=True)
class BaselineState:
    hp_on: bool = False
    supply: float | None = None
    demand: float | None = None


def initial_state(now: float) -> BaselineState:
    """Same shape as the control core's ``initial_state`` so a co-simulator can swap them."""
    del now  # the baseline keeps no timers
    return BaselineState()


def _last_good(snapshot: Snapshot, role: str, fallback: float | None) -> float | None:
    """First good numeric point of a role, else the last value seen (what a BMS does)."""
    for sig in snapshot.signals.get(role, ()):
        v = sig.value
        if sig.good and isinstance(v, int | float) and v == v and abs(v) != float("inf"):
            return float(v)
    return fallback


def _band(x: float, start: float, width: float) -> float:
    return min(1.0, max(0.0, (x - start) / width))


def step(
    snapshot: Snapshot, state: BaselineState, params: BaselineParams, now: float
) -> Decision[BaselineState]:
    """One BMS scan. Unknown supply with no history means full fan and valve closed."""
    supply = _last_good(snapshot, R.COOLANT_SUPPLY_TEMP, state.supply)
    demand = _last_good(snapshot, R.DH_DEMAND, state.demand)
    hp_on = state.hp_on
    if demand is not None:
        hp_on = demand > params.hp_off_kw if hp_on else demand >= params.hp_on_kw
    events: tuple[Event, ...] = ()
    if hp_on != state.hp_on:
        new, old = ("running", "off") if hp_on else ("off", "running")
        events = (Event(now, Layer.OPTIMISER, "hp_state", "hp", old, new, "demand hysteresis"),)

    if supply is None:
        valve, fan = 0.0, 1.0
    else:
        lo = params.valve_full_c - params.valve_band_k
        valve = _band(supply, lo, params.valve_band_k) if hp_on else 0.0
        fan = _band(supply, params.fan_start_c, params.fan_band_k)
    cap = min(1.0, (demand or 0.0) / params.hp_nominal_heat_kw)
    setpoints = _BOUNDS.admit(valve, fan, hp_on, cap, False, state.hp_on, params.capacity_min)
    missing = tuple(sorted(_KNOWN - snapshot.signals.keys()))
    margin = None if supply is None else params.supply_limit_c - supply
    return Decision(
        setpoints=setpoints,
        state=BaselineState(hp_on, supply, demand),
        limits=(),
        events=events,
        mode="auto",
        cooling_margin=margin,
        hp_state="running" if hp_on else "off",
        missing=missing,
        invalid={},
        bounds=_BOUNDS,
    )
