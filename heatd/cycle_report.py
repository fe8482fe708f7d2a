"""What the daemon tells its listeners (the meter, the MQTT publisher): one immutable report
after every control cycle, and notices of what happens between cycles.

A listener only reads: it never reaches back into the daemon, so the daemon does not know
what its listeners are, and a listener that fails (or is missing, as a site without
``mqtt:`` lacks the publisher) changes nothing for the others or for control.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from heatd.control.core import Decision
from heatd.control.state import Lease, State
from heatd.cycle_stats import CycleFigures
from heatd.points import PointSnapshot


@dataclass(frozen=True, slots=True)
class Event:
    """One message for the ``events`` topic: an alarm, a transition, a device event, a
    reload; ``fields`` in the order they are published."""

    kind: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Availability:
    """A device started or stopped answering."""

    device: str
    online: bool


@dataclass(frozen=True, slots=True)
class LastError:
    """Why a device is not answering, in the driver's words; None once it is healthy."""

    device: str
    error: str | None


Notice = Event | Availability | LastError
"""Something that happened between cycles (a cycle's own events are in its report)."""


@dataclass(frozen=True, slots=True)
class ControlStatus:
    """The daemon's state beside the decision, as the control state shows it."""

    writes: Mapping[str, Mapping[str, Any]]
    """Each output role: the value applied, verified or not, failures."""
    leases: tuple[Lease, ...]
    """The control core's operator leases."""
    output_leases: tuple[Mapping[str, object], ...]
    """Leases on engineering outputs (``setpoints:``), with the seconds each has left."""
    outputs: Mapping[str, float]
    """What the engineering outputs are set to."""
    cycle: CycleFigures
    """Cycle timing up to the cycle before this one."""


@dataclass(frozen=True, slots=True)
class CycleReport:
    """One control cycle, as it ended."""

    started: float
    """Monotonic time the cycle started."""
    now: float
    """Monotonic time of the report."""
    wall: float
    """Wall-clock time of the report (s since the epoch): what records and states carry."""
    points: PointSnapshot | None
    """The point snapshot the cycle decided on; None in the report made at a stop, after
    the last cycle (the meter skips it, the publisher sends the final control state)."""
    decision: Decision[State] | None
    """The latest decision (an earlier one when this cycle failed); None before the
    first."""
    status: ControlStatus
    events: tuple[Event, ...]
    """Alarms and transitions raised during the cycle, in order."""


class Listener(Protocol):
    """What the daemon reports to. Called from the cycle: returns at once, no I/O."""

    def cycle(self, report: CycleReport) -> None:
        """After every control cycle, and once more at a stop."""

    def notice(self, notice: Notice) -> None:
        """Something that happened between cycles."""
