"""Limits and events: how every layer explains what it did and why.

Each carries a :class:`Cause`, the machine-readable why, with the values it concerns
(``role``, ``verdict``, ``value``); ``reason`` is the same said for people and is never
compared, keyed or parsed: everything that detects a change or finds a limit does so by
cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

EventValue = str | float | bool | None
"""A transition's ``old`` and ``new``: a state's name (``"running"``, ``"auto"``), a
limit's or a lease's value as the value it is (a fraction, degC, true/false for the heat
pump's enable), or None where there is none. Published as JSON values of their type."""


class Layer(StrEnum):
    """Who set a limit or caused a transition; the envelope always outranks the rest."""

    ENVELOPE = "envelope"
    SEQUENCER = "sequencer"
    OPTIMISER = "optimiser"
    OPERATOR = "operator"


class Cause(StrEnum):
    """Why a limit holds or a transition happened."""

    # envelope: cooling inputs
    INPUT_UNKNOWN = "input_unknown"
    """A cooling input (``role``) is unknown (``verdict``): the worst case."""
    INPUT_LOST_HELD = "input_lost_held"
    """A lost cooling input (``role``, ``verdict``) is ridden through, the cooling held."""
    SUPPLY_ESTIMATED = "supply_estimated"
    """The lost supply is estimated from the return, IT power and flow."""
    SUPPLY_IN_BAND = "supply_in_band"
    SUPPLY_AT_LIMIT = "supply_at_limit"
    RISE_UNKNOWN = "rise_unknown"
    RISING_FAST = "rising_fast"
    RACK_NEAR_LIMIT = "rack_near_limit"
    FLOW_LOW = "flow_low"
    PLC_FALLBACK = "plc_fallback"
    # envelope and sequencer: the heat pump's own state
    HP_TRIP_CODE = "hp_trip_code"
    HP_FAULT = "hp_fault"
    HP_LOCKOUT = "hp_lockout"
    HP_OUT_OF_CONTACT = "hp_out_of_contact"
    HP_OWN_MIN_OFF = "hp_own_min_off"
    # envelope: actuators
    VALVE_NOT_FOLLOWING = "valve_not_following"
    FAN_NOT_FOLLOWING = "fan_not_following"
    CAPACITY_NOT_FOLLOWING = "capacity_not_following"
    ACTUATOR_FOLLOWING = "actuator_following"
    # sequencer: protection and transitions
    MIN_ON_TIME = "min_on_time"
    MIN_OFF_TIME = "min_off_time"
    STARTS_USED = "starts_used"
    HEAT_WANTED = "heat_wanted"
    NO_HEAT_WANTED = "no_heat_wanted"
    RUNNING_CONFIRMED = "running_confirmed"
    RUNNING_LOST = "running_lost"
    START_TIMEOUT = "start_timeout"
    STOP_CONFIRMED = "stop_confirmed"
    STOP_TIMEOUT = "stop_timeout"
    AUTO_RESET = "auto_reset"
    RESET_SUCCEEDED = "reset_succeeded"
    RESETS_USED = "resets_used"
    RESET_FAILED = "reset_failed"
    BOUNDS = "bounds"
    """The bounds forbid it and the caller did not say why."""
    # operator
    SAFE_MODE = "safe_mode"
    LEASE = "lease"
    SET = "set"
    CLEARED = "cleared"
    EXPIRED = "expired"
    OPERATOR_RESET = "operator_reset"
    # the rule-based baseline
    INTERLOCK = "interlock"
    DEMAND = "demand"


class LimitKey(NamedTuple):
    """What makes a limit the same limit from one cycle to the next: not its value (a band
    moves it every cycle), not its wording."""

    name: str
    layer: Layer
    cause: Cause
    role: str | None
    verdict: str | None


@dataclass(frozen=True, slots=True)
class Limit:
    """A constraint active in this cycle, e.g. ``fan_min = 1.0`` because supply is unknown."""

    name: str
    value: float | bool
    layer: Layer
    cause: Cause
    reason: str
    role: str | None = None
    """The input or output the cause concerns, if any."""
    verdict: str | None = None
    """Why that input is unknown, as validation judged it."""

    @property
    def key(self) -> LimitKey:
        """Identity for transition detection; value changes alone are not events."""
        return LimitKey(self.name, self.layer, self.cause, self.role, self.verdict)


@dataclass(frozen=True, slots=True)
class Event:
    """A transition: mode, limit set/cleared, heat-pump state, lease, command."""

    ts: float
    layer: Layer
    kind: str
    subject: str
    old: EventValue
    new: EventValue
    cause: Cause
    reason: str
