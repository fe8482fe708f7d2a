"""Heat-pump sequencer: turns "I would like heat" into enable/reset commands the
compressor can live with (minimum on/off times, starts per hour, trip and reset policy).

Only the envelope may stop the machine early (a safety stop); everything else waits for
the minimum on time. A trip drops the enable at once and hands recovery back only after
a cool-down and a bounded number of automatic resets; past that, an operator must reset.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from heatd.control import roles as R
from heatd.control.bounds import Bounds
from heatd.control.events import Event, Layer, Limit
from heatd.control.frozen import maker
from heatd.control.params import SequencerParams


class HpState(StrEnum):
    OFF = "off"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    LOCKED_OUT = "locked_out"
    TRIPPED = "tripped"


_ENABLED = frozenset({HpState.STARTING, HpState.RUNNING})


@dataclass(frozen=True, slots=True)
class SeqState:
    """Where the heat pump is, and the history its protection timers need."""

    state: HpState
    since: float
    on_since: float | None
    off_since: float | None
    starts: tuple[float, ...] = ()
    resets: tuple[float, ...] = ()
    reset_until: float = float("-inf")
    """End of the reset pulse in progress; -inf when none was sent."""
    next_reset: float = float("-inf")
    """Earliest time of the next automatic reset (cool-down after a trip)."""

    @classmethod
    def initial(cls, now: float) -> SeqState:
        """Assume the machine may just have stopped: the minimum off time runs from now."""
        return cls(HpState.OFF, now, None, now)

    @classmethod
    def found(cls, running: bool, p: SequencerParams, now: float) -> SeqState:
        """The heat pump as heatd finds it on its first cycle: a running machine is taken
        over as running (its minimum on time long served), a stopped one may start at once
        (how long it has been off is unknown; its own anti-cycling timer guards it)."""
        if running:
            return cls(HpState.RUNNING, now, now - p.min_on_s, None)
        return cls(HpState.OFF, now, None, None)

    @property
    def enabled(self) -> bool:
        return self.state in _ENABLED


@dataclass(frozen=True, slots=True)
class SeqOut:
    enable: bool
    reset: bool
    state: SeqState
    limits: tuple[Limit, ...]
    events: tuple[Event, ...]


_NEVER = float("-inf")


class _Step:
    """One step's working copy: the state so far and the transitions it produced."""

    __slots__ = ("events", "now", "st")

    def __init__(self, st: SeqState, now: float) -> None:
        self.st, self.now = st, now
        self.events: list[Event] = []

    def go(self, new: HpState, layer: Layer, why: str, **changes: object) -> None:
        old = self.st.state
        self.events.append(Event(self.now, layer, "hp_state", "hp", old.value, new.value, why))
        if new in _ENABLED and old not in _ENABLED:
            changes.setdefault("on_since", self.now)
        elif new not in _ENABLED and old in _ENABLED:
            changes.setdefault("off_since", self.now)
        self.st = replace(self.st, state=new, since=self.now, **changes)  # type: ignore[arg-type]


def sequence(
    want_run: bool,
    requester: Layer,
    bounds: Bounds,
    values: dict[str, float],
    st: SeqState,
    p: SequencerParams,
    now: float,
    operator_reset: bool = False,
    stop_reason: str = "",
    stop_layer: Layer = Layer.ENVELOPE,
) -> SeqOut:
    """One sequencer step. ``want_run`` comes from the optimiser (or the operator)."""
    trip = values.get(_TRIP, 0.0)
    faulted = values.get(_FAULT, 0.0) > 0.5 or trip > 0
    locked = values.get(_LOCKOUT, 0.0) > 0.5
    running = values.get(_RUNNING, 0.0) > 0.5
    # Out of contact, a running machine is believed to run on: its own protection guards
    # it, and dropping its enable over a comms gap would cost a stop and a restart.
    unknown = _RUNNING not in values
    s = st.state
    if not faulted and not locked:  # the steady states, where nothing happens
        if s is HpState.RUNNING and (running or unknown) and bounds.hp_run:
            if want_run:
                return _new_out(True, now < st.reset_until, st, (), ())
            if st.on_since is not None and now - st.on_since < p.min_on_s:
                return _new_out(True, now < st.reset_until, st, _MIN_ON, ())
        elif s is HpState.OFF and not want_run:
            return _new_out(False, now < st.reset_until, st, (), ())
    step = _Step(st, now)
    limits: tuple[Limit, ...] = ()

    if faulted and s is not HpState.TRIPPED and s is not HpState.LOCKED_OUT:
        why = f"trip code {trip:g}" if trip > 0 else "fault"
        step.go(HpState.TRIPPED, Layer.SEQUENCER, why, next_reset=now + p.reset_cooldown_s,
                reset_until=_NEVER)
    elif locked and s is not HpState.TRIPPED and s is not HpState.LOCKED_OUT:
        step.go(HpState.LOCKED_OUT, Layer.SEQUENCER, "heat pump reports lockout")
    elif s is HpState.OFF:
        if want_run:
            limits = _try_start(step, bounds, p, requester, values.get(_MIN_OFF, 0.0) > 0.5)
    elif s is HpState.STARTING or s is HpState.RUNNING:
        if not bounds.hp_run:
            step.go(HpState.STOPPING, stop_layer, f"safety stop: {stop_reason}")
        elif want_run or (st.on_since is not None and now - st.on_since < p.min_on_s):
            if not want_run:
                limits = _MIN_ON
            if not unknown:
                _confirm(step, running, p, values.get(_MIN_OFF, 0.0) > 0.5)
        else:
            step.go(HpState.STOPPING, requester, "no heat wanted")
    elif s is HpState.STOPPING:
        if not running:
            step.go(HpState.OFF, Layer.SEQUENCER, "stop confirmed")
        elif now - st.since >= p.stop_timeout_s:
            step.go(HpState.OFF, Layer.SEQUENCER, "stop not confirmed in time")
    elif s is HpState.TRIPPED:
        _after_trip(step, faulted or locked, p)
    elif operator_reset:  # LOCKED_OUT
        step.st = replace(st, reset_until=now + p.reset_pulse_s, resets=())
        step.events.append(Event(now, Layer.OPERATOR, "hp_reset", "hp", None, None, "operator"))
    elif st.reset_until != _NEVER and now >= st.reset_until:
        if faulted or locked:
            step.st = replace(st, reset_until=_NEVER)
            step.events.append(Event(now, Layer.SEQUENCER, "hp_reset", "hp", None, None,
                                     "operator reset did not clear the fault"))
        else:
            step.go(HpState.OFF, Layer.OPERATOR, "operator reset", reset_until=_NEVER)
    st = step.st
    return _new_out(st.state in _ENABLED, now < st.reset_until, st, limits, tuple(step.events))


_new_out = maker(SeqOut)
_MIN_ON = (Limit("hp_stop", False, Layer.SEQUENCER, "minimum on time"),)
_TRIP = R.HP_TRIP_CODE
_FAULT = R.HP_FAULT
_LOCKOUT = R.HP_LOCKOUT
_MIN_OFF = R.HP_MIN_OFF_ACTIVE
_RUNNING = R.HP_RUNNING


def _confirm(step: _Step, running: bool, p: SequencerParams, held: bool = False) -> None:
    """STARTING waits for the running feedback; RUNNING falls back to waiting if it is lost.
    A start the heat pump's own minimum-off timer holds (``held``) is called off, not
    timed out into a trip: the sequencer tries again once the timer has run out."""
    st = step.st
    if st.state is HpState.STARTING:
        if running:
            step.go(HpState.RUNNING, Layer.SEQUENCER, "running confirmed")
        elif held:  # no start happened: it neither counts nor restarts the off time
            step.go(HpState.OFF, Layer.SEQUENCER, "heat pump's own minimum off timer",
                    off_since=st.off_since, starts=st.starts[:-1])
        elif step.now - st.since >= p.start_timeout_s:
            step.go(HpState.TRIPPED, Layer.SEQUENCER, "start not confirmed in time",
                    next_reset=step.now + p.reset_cooldown_s, reset_until=_NEVER)
    elif not running:
        step.go(HpState.STARTING, Layer.SEQUENCER, "running feedback lost")


def _try_start(
    step: _Step, bounds: Bounds, p: SequencerParams, requester: Layer, held: bool = False
) -> tuple[Limit, ...]:
    """Start if the envelope, the minimum off time (heatd's and, ``held``, the heat
    pump's own timer) and the start budget all allow it. The heat pump's timer only
    defers the start: it is no trip, no lockout, and counts no start."""
    if not bounds.hp_start:
        return ()  # the envelope already reports why
    st, now = step.st, step.now
    starts = tuple(t for t in st.starts if now - t < p.starts_window_s)
    if held:
        why = "heat pump's own minimum off timer"
    elif st.off_since is not None and now - st.off_since < p.min_off_s:
        why = "minimum off time"
    elif len(starts) >= p.max_starts_per_hour:
        why = f"{p.max_starts_per_hour} starts per window used"
    else:
        step.go(HpState.STARTING, requester, "heat wanted", starts=(*starts, now))
        return ()
    return (Limit("hp_start", False, Layer.SEQUENCER, why),)


def _after_trip(step: _Step, faulted: bool, p: SequencerParams) -> None:
    """Cool down, pulse reset, check; after too many resets in a window, lock out."""
    st, now = step.st, step.now
    if now < st.reset_until:
        return  # pulse still on
    if st.reset_until != _NEVER and not faulted:
        step.go(HpState.OFF, Layer.SEQUENCER, "reset succeeded", reset_until=_NEVER)
        return
    if now < st.next_reset:
        return
    resets = tuple(t for t in st.resets if now - t < p.resets_window_s)
    if len(resets) >= p.max_resets_per_hour:
        step.go(HpState.LOCKED_OUT, Layer.SEQUENCER,
                f"{p.max_resets_per_hour} automatic resets used; operator reset needed",
                reset_until=_NEVER)
        return
    step.st = replace(st, resets=(*resets, now), reset_until=now + p.reset_pulse_s,
                      next_reset=now + p.reset_pulse_s + p.reset_cooldown_s)
    step.events.append(Event(now, Layer.SEQUENCER, "hp_reset", "hp", None, None,
                             f"automatic reset {len(resets) + 1} of {p.max_resets_per_hour}"))
