"""Limits and events: how every layer explains what it did and why."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

LimitKey = tuple[str, str, str]
"""(name, layer, reason) of a limit."""


class Layer(StrEnum):
    """Who set a limit or caused a transition; the envelope always outranks the rest."""

    ENVELOPE = "envelope"
    SEQUENCER = "sequencer"
    OPTIMISER = "optimiser"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Limit:
    """A constraint active in this cycle, e.g. ``fan_min = 1.0`` because supply is unknown."""

    name: str
    value: float | bool
    layer: Layer
    reason: str

    @property
    def key(self) -> LimitKey:
        """Identity for transition detection; value changes alone are not events."""
        return (self.name, self.layer.value, self.reason)


@dataclass(frozen=True, slots=True)
class Event:
    """A transition: mode, limit set/cleared, heat-pump state, lease, command."""

    ts: float
    layer: Layer
    kind: str
    subject: str
    old: str | None
    new: str | None
    reason: str
