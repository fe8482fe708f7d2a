"""The control core: pure decisions, no I/O. ``step`` is the entry point; ``baseline.step``
is the rule-based comparison with the same shape."""

from heatd.control.bounds import Bounds, Setpoints
from heatd.control.commands import clear_override, reset_heat_pump, set_mode, set_override
from heatd.control.core import Decision, StepFn, step
from heatd.control.events import Cause, Event, Layer, Limit
from heatd.control.params import ControlParams
from heatd.control.sequencer import HpState
from heatd.control.signals import Signal, Snapshot
from heatd.control.state import Lease, Mode, State, initial_state

__all__ = [
    "Bounds",
    "Cause",
    "ControlParams",
    "Decision",
    "Event",
    "HpState",
    "Layer",
    "Lease",
    "Limit",
    "Mode",
    "Setpoints",
    "Signal",
    "Snapshot",
    "State",
    "StepFn",
    "clear_override",
    "initial_state",
    "reset_heat_pump",
    "set_mode",
    "set_override",
    "step",
]
