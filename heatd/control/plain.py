"""The params sections the step reads every cycle, copied once into plain slotted objects.

A pydantic model's attribute read goes through ``BaseModel.__getattr__``'s hook, which
keeps the interpreter from specialising it: about 450 machine instructions, where a slot
of a frozen dataclass takes some 20. The envelope and the optimiser read some fifty
settings a cycle, so they are copied once per params object (params are frozen, and a
running site passes the same object every cycle) and read from the copy.

A copy has exactly its model's fields: making one from a model with a field it lacks, or
without one it has, raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from heatd.control.params import ControlParams, OptimiserParams

K = TypeVar("K")
V = TypeVar("V")


class PerObject(Generic[K, V]):
    """``make(key)``, made again only when another object (by identity) comes: the last
    key and its value are kept together, as one tuple, so a reader never pairs a key with
    another key's value. The key itself is held, so no other object can take its id()
    while its value is kept."""

    __slots__ = ("_last", "_make")

    def __init__(self, make: Callable[[K], V]) -> None:
        self._make = make
        self._last: tuple[K, V] | None = None

    def of(self, key: K) -> V:
        last = self._last
        if last is None or last[0] is not key:
            last = self._last = (key, self._make(key))
        return last[1]


@dataclass(frozen=True, slots=True)
class PlainEnvelope:
    """:class:`EnvelopeParams`, as plain attributes."""

    supply_limit_c: float
    supply_margin_k: float
    max_rise_k_per_s: float
    rise_window_s: float
    rise_horizon_s: float
    rack_inlet_limit_c: float
    rack_inlet_margin_k: float
    flow_min: float | None
    valve_mismatch_tol: float
    valve_mismatch_s: float
    valve_clear_s: float
    fan_mismatch_tol: float
    fan_mismatch_s: float
    capacity_mismatch_tol: float
    capacity_mismatch_s: float
    blind_rise_k_per_s: float | None
    blind_hold_max_s: float
    blind_it_growth: float
    supply_estimate: bool
    estimate_margin_k: float
    estimate_tau_s: float
    cooling_recovery_share: float
    supply_low_c: float


@dataclass(frozen=True, slots=True)
class PlainOptimiser:
    """:class:`OptimiserParams`, as plain attributes."""

    supply_setpoint_c: float
    cool_kp: float
    cool_ti_s: float
    cool_deadband_k: float
    evaporator_inlet_max_c: float
    evaporator_margin_k: float
    source_min_c: float
    cold_band_k: float
    cap_kp: float
    cap_ti_s: float
    heat_deadband: float
    hp_nominal_heat_kw: float
    hp_cop: float
    valve_up_per_s: float
    valve_down_per_s: float
    fan_up_per_s: float
    fan_down_per_s: float
    cap_up_per_s: float
    cap_down_per_s: float
    start_above: float
    stop_below: float
    start_delay_s: float
    stop_delay_s: float
    storage_full_c: float
    storage_band_k: float
    storage_charge_kw: float
    dt_max_s: float


OptimiserSettings = OptimiserParams | PlainOptimiser
"""What the optimiser reads its settings from: the model, or the step's plain copy of it."""


def _fields(model: BaseModel) -> dict[str, Any]:
    return {name: getattr(model, name) for name in type(model).model_fields}


@dataclass(frozen=True, slots=True)
class PlainParams:
    """What the step reads from :class:`ControlParams` every cycle, as plain attributes."""

    envelope: PlainEnvelope
    optimiser: PlainOptimiser
    capacity_min: float
    capacity_max: float

    @classmethod
    def of(cls, params: ControlParams) -> PlainParams:
        return cls(PlainEnvelope(**_fields(params.envelope)),
                   PlainOptimiser(**_fields(params.optimiser)),
                   params.sequencer.capacity_min, params.sequencer.capacity_max)


plain_params: PerObject[ControlParams, PlainParams] = PerObject(PlainParams.of)
