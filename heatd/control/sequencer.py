"""Heat-pump sequencer: turns "I would like heat" into enable/reset commands the
compressor can live with (minimum on/off times, starts per hour, trip and reset policy).

Only the envelope may stop the machine early (a safety stop); everything else waits for
the minimum on time. A trip drops the enable at once and hands recovery back only after
a cool-down and a bounded number of automatic resets; past that, an operator must reset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, NamedTuple

from heatd.control import roles as R
from heatd.control.bounds import Bounds
from heatd.control.events import Cause, Event, Layer, Limit
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


class Wait(NamedTuple):
    """How long the heat pump's own protection holds off a stop or a start asked now."""

    seconds: float
    cause: Cause
    """``min_on_time``, ``min_off_time`` or ``starts_used``."""
    reason: str
    """Said for people: ``the heat pump's minimum on time defers the stop by 412 s``."""


def protection_wait(st: SeqState, run: bool, p: SequencerParams, now: float) -> Wait | None:
    """How long the minimum on time (``run`` false) or the minimum off time and the start
    budget (``run`` true) keep the sequencer from switching the heat pump as asked; None
    when they do not (the envelope, a trip or the heat pump's own timer may still). An
    operator's lease waits for them: only a safety stop cuts the minimum on time short."""
    if not run:
        if not st.enabled or st.on_since is None or now - st.on_since >= p.min_on_s:
            return None
        left = st.on_since + p.min_on_s - now
        return Wait(left, Cause.MIN_ON_TIME,
                    f"the heat pump's minimum on time defers the stop by {left:.0f} s")
    if st.state not in (HpState.OFF, HpState.STOPPING):
        return None
    waits = []
    if st.off_since is not None and now - st.off_since < p.min_off_s:
        left = st.off_since + p.min_off_s - now
        waits.append(Wait(left, Cause.MIN_OFF_TIME,
                          f"the heat pump's minimum off time defers the start by {left:.0f} s"))
    starts = sorted(t for t in st.starts if now - t < p.starts_window_s)
    if len(starts) >= p.max_starts_per_hour:
        left = starts[len(starts) - p.max_starts_per_hour] + p.starts_window_s - now
        waits.append(Wait(left, Cause.STARTS_USED,
                          f"the heat pump's {p.max_starts_per_hour} starts per window are "
                          f"used: the start waits {left:.0f} s"))
    return max(waits, default=None)


class SeqOut(NamedTuple):
    """One step's outcome, handed to the control step within the cycle and never kept."""

    enable: bool
    reset: bool
    state: SeqState
    limits: tuple[Limit, ...]
    events: tuple[Event, ...]


_NEVER = float("-inf")


@dataclass(slots=True)
class _Step:
    """One step's working copy: what the sequencer was asked and saw, the state so far and
    the transitions and limits it produced."""

    st: SeqState
    now: float
    want: bool
    requester: Layer
    bounds: Bounds
    p: SequencerParams
    seen: _Seen
    operator_reset: bool
    stop: Limit | None
    events: list[Event] = field(default_factory=list)
    limits: tuple[Limit, ...] = ()

    def go(self, new: HpState, layer: Layer, cause: Cause, why: str, **changes: Any) -> None:
        old = self.st.state
        self.events.append(Event(self.now, layer, "hp_state", "hp", old.value, new.value, cause,
                                 why))
        if new in _ENABLED and old not in _ENABLED:
            changes.setdefault("on_since", self.now)
        elif new not in _ENABLED and old in _ENABLED:
            changes.setdefault("off_since", self.now)
        self.st = replace(self.st, state=new, since=self.now, **changes)

    def reset_event(self, layer: Layer, cause: Cause, why: str) -> None:
        self.events.append(Event(self.now, layer, "hp_reset", "hp", None, None, cause, why))


class _Seen(NamedTuple):
    """What the heat pump reports this cycle."""

    trip: float
    faulted: bool
    locked: bool
    running: bool
    unknown: bool
    """Out of contact: whether it runs is not known."""
    held: bool
    """Its own minimum-off timer holds it."""

    @classmethod
    def read(cls, values: dict[str, float]) -> _Seen:
        trip, running = values.get(R.HP_TRIP_CODE, 0.0), values.get(R.HP_RUNNING)
        return cls(trip, values.get(R.HP_FAULT, 0.0) > 0.5 or trip > 0,
                   values.get(R.HP_LOCKOUT, 0.0) > 0.5, running is not None and running > 0.5,
                   running is None, values.get(R.HP_MIN_OFF_ACTIVE, 0.0) > 0.5)


def sequence(
    want_run: bool,
    requester: Layer,
    bounds: Bounds,
    values: dict[str, float],
    st: SeqState,
    p: SequencerParams,
    now: float,
    operator_reset: bool = False,
    stop: Limit | None = None,
) -> SeqOut:
    """One sequencer step. ``want_run`` comes from the optimiser (or the operator); ``stop``
    is the limit that withdrew ``bounds.hp_run``, named in the safety stop it causes."""
    seen = _Seen.read(values)
    steady = _steady(want_run, bounds, seen, st, p, now)
    if steady is not None:
        return steady
    step = _Step(st, now, want_run, requester, bounds, p, seen, operator_reset, stop)
    s = st.state
    if seen.faulted and s not in _OUT:
        why, cause = ((f"trip code {seen.trip:g}", Cause.HP_TRIP_CODE) if seen.trip > 0
                      else ("fault", Cause.HP_FAULT))
        step.go(HpState.TRIPPED, Layer.SEQUENCER, cause, why,
                next_reset=now + p.reset_cooldown_s, reset_until=_NEVER)
    elif seen.locked and s not in _OUT:
        step.go(HpState.LOCKED_OUT, Layer.SEQUENCER, Cause.HP_LOCKOUT,
                "heat pump reports lockout")
    else:
        _BY_STATE[s](step)
    st = step.st
    return SeqOut(st.state in _ENABLED, now < st.reset_until, st, step.limits,
                  tuple(step.events))


def _steady(want_run: bool, bounds: Bounds, seen: _Seen, st: SeqState, p: SequencerParams,
            now: float) -> SeqOut | None:
    """The steady states, where nothing happens (most cycles); None when something may."""
    if seen.faulted or seen.locked:
        return None
    s = st.state
    if s is HpState.RUNNING and (seen.running or seen.unknown) and bounds.hp_run:
        # Out of contact, a running machine is believed to run on: its own protection
        # guards it, and dropping its enable over a comms gap would cost a stop and a
        # restart.
        if want_run:
            return SeqOut(True, now < st.reset_until, st, (), ())
        if st.on_since is not None and now - st.on_since < p.min_on_s:
            return SeqOut(True, now < st.reset_until, st, _MIN_ON, ())
    elif s is HpState.OFF and not want_run:
        return SeqOut(False, now < st.reset_until, st, (), ())
    return None


def _off(step: _Step) -> None:
    if step.want:
        step.limits = _try_start(step, step.bounds, step.p, step.requester, step.seen.held)


def _on(step: _Step) -> None:
    """Starting or running: a safety stop at once, else kept on while wanted or inside the
    minimum on time."""
    st, p = step.st, step.p
    if not step.bounds.hp_run:
        stop = _UNNAMED_STOP if step.stop is None else step.stop
        step.go(HpState.STOPPING, stop.layer, stop.cause, f"safety stop: {stop.reason}")
    elif step.want or (st.on_since is not None and step.now - st.on_since < p.min_on_s):
        if not step.want:
            step.limits = _MIN_ON
        if not step.seen.unknown:
            _confirm(step, step.seen.running, p, step.seen.held)
    else:
        step.go(HpState.STOPPING, step.requester, Cause.NO_HEAT_WANTED, "no heat wanted")


def _stopping(step: _Step) -> None:
    if not step.seen.running:
        step.go(HpState.OFF, Layer.SEQUENCER, Cause.STOP_CONFIRMED, "stop confirmed")
    elif step.now - step.st.since >= step.p.stop_timeout_s:
        step.go(HpState.OFF, Layer.SEQUENCER, Cause.STOP_TIMEOUT, "stop not confirmed in time")


def _tripped(step: _Step) -> None:
    _after_trip(step, step.seen.faulted or step.seen.locked, step.p)


def _locked_out(step: _Step) -> None:
    """Only an operator reset leads out, and only if the fault has cleared by its end."""
    st, now = step.st, step.now
    if step.operator_reset:
        step.st = replace(st, reset_until=now + step.p.reset_pulse_s, resets=())
        step.reset_event(Layer.OPERATOR, Cause.OPERATOR_RESET, "operator")
    elif st.reset_until != _NEVER and now >= st.reset_until:
        if step.seen.faulted or step.seen.locked:
            step.st = replace(st, reset_until=_NEVER)
            step.reset_event(Layer.SEQUENCER, Cause.RESET_FAILED,
                             "operator reset did not clear the fault")
        else:
            step.go(HpState.OFF, Layer.OPERATOR, Cause.OPERATOR_RESET, "operator reset",
                    reset_until=_NEVER)


_BY_STATE: dict[HpState, Callable[[_Step], None]] = {
    HpState.OFF: _off,
    HpState.STARTING: _on,
    HpState.RUNNING: _on,
    HpState.STOPPING: _stopping,
    HpState.TRIPPED: _tripped,
    HpState.LOCKED_OUT: _locked_out,
}
"""What each state does on a cycle with no new trip or lockout."""
_OUT = frozenset({HpState.TRIPPED, HpState.LOCKED_OUT})
_MIN_ON = (Limit("hp_stop", False, Layer.SEQUENCER, Cause.MIN_ON_TIME, "minimum on time"),)
_UNNAMED_STOP = Limit("hp_run", False, Layer.ENVELOPE, Cause.BOUNDS, "bounds forbid running")


def _confirm(step: _Step, running: bool, p: SequencerParams, held: bool = False) -> None:
    """STARTING waits for the running feedback; RUNNING falls back to waiting if it is lost.
    A start the heat pump's own minimum-off timer holds (``held``) is called off, not
    timed out into a trip: the sequencer tries again once the timer has run out."""
    st = step.st
    if st.state is HpState.STARTING:
        if running:
            step.go(HpState.RUNNING, Layer.SEQUENCER, Cause.RUNNING_CONFIRMED,
                    "running confirmed")
        elif held:  # no start happened: it neither counts nor restarts the off time
            step.go(HpState.OFF, Layer.SEQUENCER, Cause.HP_OWN_MIN_OFF,
                    "heat pump's own minimum off timer", off_since=st.off_since,
                    starts=st.starts[:-1])
        elif step.now - st.since >= p.start_timeout_s:
            step.go(HpState.TRIPPED, Layer.SEQUENCER, Cause.START_TIMEOUT,
                    "start not confirmed in time", next_reset=step.now + p.reset_cooldown_s,
                    reset_until=_NEVER)
    elif not running:
        step.go(HpState.STARTING, Layer.SEQUENCER, Cause.RUNNING_LOST, "running feedback lost")


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
        cause, why = Cause.HP_OWN_MIN_OFF, "heat pump's own minimum off timer"
    elif st.off_since is not None and now - st.off_since < p.min_off_s:
        cause, why = Cause.MIN_OFF_TIME, "minimum off time"
    elif len(starts) >= p.max_starts_per_hour:
        cause, why = Cause.STARTS_USED, f"{p.max_starts_per_hour} starts per window used"
    else:
        step.go(HpState.STARTING, requester, Cause.HEAT_WANTED, "heat wanted",
                starts=(*starts, now))
        return ()
    return (Limit("hp_start", False, Layer.SEQUENCER, cause, why),)


def _after_trip(step: _Step, faulted: bool, p: SequencerParams) -> None:
    """Cool down, pulse reset, check; after too many resets in a window, lock out."""
    st, now = step.st, step.now
    if now < st.reset_until:
        return  # pulse still on
    if st.reset_until != _NEVER and not faulted:
        step.go(HpState.OFF, Layer.SEQUENCER, Cause.RESET_SUCCEEDED, "reset succeeded",
                reset_until=_NEVER)
        return
    if now < st.next_reset:
        return
    resets = tuple(t for t in st.resets if now - t < p.resets_window_s)
    if len(resets) >= p.max_resets_per_hour:
        step.go(HpState.LOCKED_OUT, Layer.SEQUENCER, Cause.RESETS_USED,
                f"{p.max_resets_per_hour} automatic resets used; operator reset needed",
                reset_until=_NEVER)
        return
    step.st = replace(st, resets=(*resets, now), reset_until=now + p.reset_pulse_s,
                      next_reset=now + p.reset_pulse_s + p.reset_cooldown_s)
    step.reset_event(Layer.SEQUENCER, Cause.AUTO_RESET,
                     f"automatic reset {len(resets) + 1} of {p.max_resets_per_hour}")
