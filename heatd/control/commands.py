"""Operator commands as pure state updates; their events surface in the next Decision.

Nothing here can reach an output directly: a command only changes what the next step
proposes, and the envelope still clamps it.
"""

from __future__ import annotations

from dataclasses import replace

from heatd.control import roles as R
from heatd.control.events import Cause, Event, Layer
from heatd.control.optimiser import RESET
from heatd.control.params import SequencerParams
from heatd.control.sequencer import Wait, protection_wait
from heatd.control.state import Lease, Mode, State

OVERRIDABLE: frozenset[str] = frozenset(
    {R.VALVE_RECOVERY, R.DRYCOOLER_FAN, R.HP_ENABLE, R.HP_CAPACITY}
)


def _bumpless(state: State) -> State:
    """Forget loop errors so the next step continues from the applied outputs without a kick."""
    opt = replace(RESET, want=state.opt.want, target_kw=state.opt.target_kw)
    return replace(state, opt=opt)


def set_mode(
    state: State, mode: Mode, now: float, ttl_s: float | None = None, by: str = "operator"
) -> State:
    """Change mode; with ``ttl_s`` the mode is a lease that falls back to auto."""
    if ttl_s is not None and not ttl_s > 0:
        raise ValueError("ttl_s must be positive")
    expires = None if ttl_s is None or mode is Mode.AUTO else now + ttl_s
    ev = Event(now, Layer.OPERATOR, "mode", "mode", state.mode.value, mode.value, Cause.SET,
               f"set by {by}")
    state = replace(state, mode=mode, mode_expires=expires, pending=(*state.pending, ev))
    return _bumpless(state)


def lease_wait(state: State, role: str, value: float | bool, p: SequencerParams,
               now: float) -> Wait | None:
    """How long the heat pump's protection defers what a lease on ``role`` asks (a stop
    inside the minimum on time, a start inside the minimum off time or past the start
    budget); None when nothing defers it or the role is not the heat pump's enable."""
    if role != R.HP_ENABLE:
        return None
    return protection_wait(state.seq, float(value) > 0.5, p, now)


def set_override(
    state: State, role: str, value: float | bool, now: float, ttl_s: float, by: str = "operator",
    sequencer: SequencerParams | None = None,
) -> State:
    """Lease one output to a fixed value for ``ttl_s`` seconds (replaces any lease on it).
    Given the ``sequencer``'s parameters, its event says when the heat pump's protection
    lets the lease take effect."""
    if role not in OVERRIDABLE:
        raise ValueError(f"{role!r} cannot be overridden; one of {sorted(OVERRIDABLE)}")
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{role} override {value!r} outside 0..1")
    if not ttl_s > 0:
        raise ValueError("an override needs a positive ttl_s")
    lease = Lease(role, v, now + ttl_s, by)
    leases = (*(x for x in state.leases if x.role != role), lease)
    wait = None if sequencer is None else lease_wait(state, role, v, sequencer, now)
    ev = Event(now, Layer.OPERATOR, "lease", role, None, lease.setting, Cause.SET,
               f"set by {by} for {ttl_s:g} s" + ("" if wait is None else f"; {wait.reason}"))
    return _bumpless(replace(state, leases=leases, pending=(*state.pending, ev)))


def clear_override(state: State, role: str, now: float, by: str = "operator") -> State:
    """End a lease early; the output returns to automatic, bumplessly."""
    kept = tuple(x for x in state.leases if x.role != role)
    gone = [x for x in state.leases if x.role == role]
    if not gone:
        return state
    ev = Event(now, Layer.OPERATOR, "lease", role, gone[0].setting, None, Cause.CLEARED,
               f"cleared by {by}")
    return _bumpless(replace(state, leases=kept, pending=(*state.pending, ev)))


def reset_heat_pump(state: State, now: float, by: str = "operator") -> State:
    """Operator reset: the only way out of a lock-out (acts only when locked out)."""
    ev = Event(now, Layer.OPERATOR, "command", "hp_reset", None, None, Cause.OPERATOR_RESET,
               f"requested by {by}")
    return replace(state, reset_request=True, pending=(*state.pending, ev))
