"""Controller state carried from one step to the next, plus the operator's leases.

Immutable: a step returns a new State, so the co-simulator can replay or fork a run from
any point, and a property test can compare every decision with the one before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from heatd.control import roles as R
from heatd.control.bounds import SAFE_SETPOINTS, Setpoints
from heatd.control.envelope import EnvelopeState
from heatd.control.estimate import NO_ESTIMATE, EstimateState
from heatd.control.events import Event, Limit, LimitKey
from heatd.control.optimiser import RESET, OptState
from heatd.control.sequencer import SeqState
from heatd.control.validate import ValidationState


class Mode(StrEnum):
    AUTO = "auto"
    RECOVERY_OFF = "recovery_off"  # pure cooling: the heat pump winds down, valve to dry cooler
    MANUAL = "manual"  # operator setpoints, still clamped by the envelope and sequencer
    SAFE = "safe"  # forced safe state: full dry cooler, valve closed, heat pump off (kept
    # while a stuck recovery valve leaves it flow: then it is the cooling)


@dataclass(frozen=True, slots=True)
class Lease:
    """An operator setpoint that lapses by itself: pure, it only compares ``expires`` with now."""

    role: str
    value: float
    expires: float
    by: str

    @property
    def setting(self) -> float | bool:
        """The value as the operator gave it: true or false for the heat pump's enable
        (kept as 1.0 or 0.0 with the fractions), the fraction otherwise."""
        return self.value > 0.5 if self.role in BOOLEAN_LEASES else self.value


BOOLEAN_LEASES: frozenset[str] = frozenset({R.HP_ENABLE})
"""Leased roles that are on or off."""


@dataclass(frozen=True, slots=True)
class State:
    mode: Mode
    mode_expires: float | None
    leases: tuple[Lease, ...]
    setpoints: Setpoints
    last_now: float | None
    seq: SeqState
    env: EnvelopeState
    opt: OptState
    val: ValidationState
    limit_keys: frozenset[LimitKey]
    limits: tuple[Limit, ...]
    """Last cycle's limits, whose keys are ``limit_keys``: a limit that clears says why it held."""
    pending: tuple[Event, ...] = ()
    """Events from operator commands, emitted by the next step."""
    reset_request: bool = False
    est: EstimateState = NO_ESTIMATE
    """What the loop taught the supply estimate."""


def initial_state(now: float, mode: Mode = Mode.AUTO) -> State:
    """A fresh controller: outputs start from the safe state and earn their way out of it."""
    return State(
        mode=mode,
        mode_expires=None,
        leases=(),
        setpoints=SAFE_SETPOINTS,
        last_now=None,
        seq=SeqState.initial(now),
        env=EnvelopeState(),
        opt=RESET,
        val=ValidationState(),
        limit_keys=frozenset(),
        limits=(),
    )
