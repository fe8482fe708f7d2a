"""The plant's best cooling: what its cooling paths hold with nothing left to chance.

It is the reference a case's feasibility is judged against (``heatd.hil.family_score``):
the dry cooler at full fans, and the heat pump, with a share of the coolant flow
through its evaporator, making as much heat as the network draws (its demand, never
less than the machine's minimum). Only heat the condenser can hand on is credited: the
network takes what it draws and the storage ends as charged as it was, so the same
cooling holds for a day or a week, and nothing depends on how a controller would spend
the storage. The plant model keeps the rest honest: it unloads a heat pump whose
condenser return is too hot, trips it on a hot evaporator inlet or condenser outlet,
and keeps it off while an internal fault lasts. Other trips are reset after a cool-down,
as any controller may, within the machine's starts per hour.

A recovery valve that seizes stays where the controller before it left it, so no one
position is the plant's own: for such a case the reference drives the valve to where
the judged controller's valve seized (``seized_valve``), in time for the seizure, and
runs the heat pump at full capacity while it lasts, spending on it the storage it kept
until then (the plant model unloads the machine once the storage is full); the valve
moves again when the seizure ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from heatd.control import roles as R
from heatd.control.bounds import device_bounds
from heatd.control.core import Decision
from heatd.control.signals import Snapshot
from heatd.hil.cosim import Controller
from heatd.hil.plant_params import PlantParams

RECOVERY_SHARE = 0.3
"""Share of the coolant flow through the evaporator: more than any member of the family's
heat pump needs for its extraction, while a diverting valve leaves the dry cooler most of
the flow."""
RESET_COOLDOWN_S = 600.0
SEIZURE_LEAD_S = 360.0
"""How long before a seizure the reference drives its valve to the seized position: a
full stroke and lag of the slowest valve of the family (300 s and 30 s)."""
_BOUNDS = device_bounds()


@dataclass(frozen=True, slots=True)
class BestCoolingParams:
    heat_nominal_kw: float
    seized_valve: float | None = None
    """Where the judged controller's recovery valve seized, if it did."""
    seized_at_s: float = float("inf")
    """When it seized."""
    seized_until_s: float = float("inf")
    """When it moves again."""


@dataclass(frozen=True, slots=True)
class BestCoolingState:
    tripped_at: float | None = None
    """Since when the heat pump reports a trip: the cool-down before its reset."""


def initial_state(now: float) -> BestCoolingState:
    del now
    return BestCoolingState()


def _value(snapshot: Snapshot, role: str) -> float | None:
    for sig in snapshot.signals.get(role, ()):
        if sig.good and isinstance(sig.value, int | float):
            return float(sig.value)
    return None


def step(snapshot: Snapshot, state: BestCoolingState, params: BestCoolingParams,
         now: float) -> Decision[BestCoolingState]:
    """Full fans, the recovery share (or the seized position), and the heat pump on the
    network's demand."""
    tripped = any((_value(snapshot, role) or 0.0) > 0.5 for role in (R.HP_TRIP_CODE, R.HP_FAULT))
    since = (now if state.tripped_at is None else state.tripped_at) if tripped else None
    reset = since is not None and now - since >= RESET_COOLDOWN_S
    if reset:  # one cycle's pulse, then a new cool-down while the trip holds
        since = now
    demand = max(0.0, _value(snapshot, R.DH_DEMAND) or 0.0)
    capacity = min(1.0, demand / params.heat_nominal_kw)
    valve = RECOVERY_SHARE
    if params.seized_at_s - SEIZURE_LEAD_S <= now < params.seized_until_s:
        valve = params.seized_valve if params.seized_valve is not None else valve
        if now >= params.seized_at_s:  # the storage, kept until then, spent on the seizure
            capacity = 1.0
    setpoints = _BOUNDS.admit(valve, 1.0, not tripped, capacity, reset, True, 0.0)
    return Decision(setpoints, BestCoolingState(since), (), (), "auto", None,
                    "tripped" if tripped else "running", (), {}, _BOUNDS)


def controller(plant: PlantParams, seized_valve: float | None = None,
               seized_at_s: float = float("inf"),
               seized_until_s: float = float("inf")) -> Controller:
    """The best cooling of ``plant``, as the co-simulator drives it; with ``seized_valve``,
    of the plant whose recovery valve seizes there from ``seized_at_s`` to
    ``seized_until_s``."""
    params = BestCoolingParams(plant.heat_pump.heat_nominal_kw, seized_valve, seized_at_s,
                               seized_until_s)
    return Controller("best_cooling", step, params, initial_state)
