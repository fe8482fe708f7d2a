"""One control step: validate -> envelope -> sequencer and optimiser inside the bounds.

``step`` is pure: everything it knows arrives as arguments and everything it decides
leaves in the Decision, so the daemon, a test and the co-simulator drive it the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar

from heatd.control import roles as R
from heatd.control.bounds import Bounds, Setpoints, device_bounds
from heatd.control.envelope import envelope
from heatd.control.events import Event, Layer, Limit, LimitKey
from heatd.control.frozen import maker, plain
from heatd.control.optimiser import RESET, OptState, propose, want_heat
from heatd.control.params import ControlParams
from heatd.control.sequencer import HpState, SeqState, sequence
from heatd.control.signals import Snapshot
from heatd.control.state import Lease, Mode, State
from heatd.control.validate import validate

S = TypeVar("S")
P = TypeVar("P", contravariant=True)
SC = TypeVar("SC")


@dataclass(frozen=True, slots=True)
class Decision(Generic[S]):
    """Everything one step decided, and everything the daemon publishes about it."""

    setpoints: Setpoints
    state: S
    limits: tuple[Limit, ...]
    events: tuple[Event, ...]
    mode: str
    cooling_margin: float | None
    """K below the supply limit; None while the supply temperature is unknown."""
    hp_state: str
    missing: tuple[str, ...]
    """Input roles the site does not bind."""
    invalid: Mapping[str, str]
    """Bound roles with a bad point this cycle -> why."""
    bounds: Bounds

    def summary(self) -> dict[str, Any]:
        """JSON-ready view for ``control/state``."""
        return {
            "mode": self.mode,
            "setpoints": self.setpoints.as_roles(),
            "limits": [
                {"name": x.name, "value": x.value, "layer": x.layer.value, "reason": x.reason}
                for x in self.limits
            ],
            "cooling_margin": self.cooling_margin,
            "hp_state": self.hp_state,
            "missing": list(self.missing),
            "invalid": dict(self.invalid),
        }


class StepFn(Protocol[SC]):
    """What the co-simulator drives: the control core's ``step`` or the baseline's."""

    def __call__(self, snapshot: Snapshot, state: SC, params: Any, now: float) -> Decision[SC]:
        ...


_SAFE_MODE = "safe mode"


def step(snapshot: Snapshot, state: State, params: ControlParams, now: float) -> Decision[State]:
    """Decide this cycle's setpoints. Never raises on any snapshot content."""
    op, sp = plain(params.optimiser), plain(params.sequencer)
    prev = state.setpoints
    last = state.last_now
    if last is None or not now > last:
        dt = 0.0
    else:  # min(now - last, dt_max_s), written out like the other per-cycle min()s
        dt, dt_max = now - last, op.dt_max_s
        if dt_max < dt:
            dt = dt_max
    events: list[Event] = list(state.pending)
    opt = state.opt

    inputs, val = validate(snapshot, state.val, params, now)
    values = inputs.values
    if last is None:
        state, opt = _take_over(state, values, params, now)
        prev = state.setpoints

    mode, mode_expires = state.mode, state.mode_expires
    if mode_expires is not None and now >= mode_expires:
        events.append(Event(now, Layer.OPERATOR, "mode", "mode", mode.value, "auto", "expired"))
        mode, mode_expires, opt = Mode.AUTO, None, RESET
    leases: tuple[Lease, ...] = state.leases
    if leases and any(x.expires <= now for x in leases):
        for x in leases:
            if x.expires <= now:
                events.append(Event(now, Layer.OPERATOR, "lease", x.role, f"{x.value:g}", None,
                                    "expired"))
        leases = tuple(x for x in leases if x.expires > now)
        opt = replace(RESET, want=opt.want, flip_since=opt.flip_since, target_kw=opt.target_kw)
    leased = {x.role: x.value for x in leases} if leases else _NO_LEASES

    env = envelope(inputs, prev, state.env, params, now)
    if env.state.alarms != state.env.alarms:
        _actuator_events(events, state.env.alarms, env.state.alarms, now)
    bounds = env.bounds
    limits = list(env.limits)
    stop_reason = next((x.reason for x in limits if x.name == "hp_run"), "")
    stop_layer = _ENVELOPE
    if mode is _SAFE:
        bounds = bounds.tighten(1.0, 0.0, 0.0, False, False)
        limits += [
            Limit("fan_min", 1.0, Layer.OPERATOR, _SAFE_MODE),
            Limit("valve_max", 0.0, Layer.OPERATOR, _SAFE_MODE),
            Limit("hp_run", False, Layer.OPERATOR, _SAFE_MODE),
        ]
        if not stop_reason:
            stop_reason, stop_layer = _SAFE_MODE, Layer.OPERATOR

    opt = want_heat(values, opt, op, now)
    want, requester = opt.want, _OPTIMISER
    if mode is _MANUAL:
        want, requester = state.seq.enabled, Layer.OPERATOR
    elif mode is not _AUTO:
        want, requester = False, Layer.OPERATOR
    if leased and mode is not _SAFE and R.HP_ENABLE in leased:
        want, requester = leased[R.HP_ENABLE] > 0.5, Layer.OPERATOR

    seq = sequence(want, requester, bounds, values, state.seq, sp, now,
                   state.reset_request, stop_reason, stop_layer)
    if seq.events:
        events.extend(seq.events)
    if seq.limits:
        limits.extend(seq.limits)
    enabled = seq.enable
    seq_state = seq.state
    hp_state = seq_state.state
    running = hp_state is _RUNNING

    cap_max, cap_hi = sp.capacity_max, bounds.cap_max
    if cap_max < cap_hi:  # min(bounds.cap_max, capacity_max)
        cap_hi = cap_max
    prop, opt = propose(values, enabled, running, prev.fan, prev.hp_capacity, bounds.fan_min,
                        cap_hi, opt, op, sp.capacity_min, dt)
    valve, fan, cap = prop.valve, prop.fan, prop.capacity
    if mode is _MANUAL:
        valve, fan = prev.valve, prev.fan
        cap = prev.hp_capacity if prev.hp_enable else cap
    elif mode is _RECOVERY_OFF:
        cap = sp.capacity_min
    if leased and mode is not _SAFE:
        valve = leased.get(R.VALVE_RECOVERY, valve)
        fan = leased.get(R.DRYCOOLER_FAN, fan)
        cap = leased.get(R.HP_CAPACITY, cap)
        limits.extend(Limit(f"override:{x.role}", x.value, Layer.OPERATOR, "operator lease")
                      for x in leases)

    # Rate limits: up by at most up_per_s * dt, down by at most down_per_s * dt.
    x = prev.valve
    up, down = x + op.valve_up_per_s * dt, x - op.valve_down_per_s * dt
    valve = up if valve > up else (down if valve < down else valve)
    x = prev.fan
    up, down = x + op.fan_up_per_s * dt, x - op.fan_down_per_s * dt
    fan = up if fan > up else (down if fan < down else fan)
    if prev.hp_enable and enabled:
        x = prev.hp_capacity
        up, down = x + op.cap_up_per_s * dt, x - op.cap_down_per_s * dt
        cap = up if cap > up else (down if cap < down else cap)
    if cap_max < cap:  # min(cap, capacity_max)
        cap = cap_max
    setpoints = bounds.admit(valve, fan, enabled, cap, seq.reset, prev.hp_enable,
                             sp.capacity_min)

    keys = frozenset([x.key for x in limits]) if limits else _NO_KEYS
    if keys != state.limit_keys:
        _limit_events(events, limits, keys, state.limit_keys, now)

    new_state = _new_state(mode, mode_expires, leases, setpoints, now, seq_state, env.state, opt,
                           val, keys, (), False)
    return _new_decision(setpoints, new_state, tuple(limits), tuple(events), _VALUE[mode],
                         env.margin, _VALUE[hp_state], inputs.missing, inputs.invalid, bounds)


def _actuator_events(events: list[Event], old: tuple[str, ...], new: tuple[str, ...],
                     now: float) -> None:
    """An actuator that stops (or starts again) following its command is an alarm event."""
    for role in new:
        if role not in old:
            events.append(Event(now, _ENVELOPE, "actuator", role, "following", "not following",
                                "feedback differs from the command"))
    for role in old:
        if role not in new:
            events.append(Event(now, _ENVELOPE, "actuator", role, "not following", "following",
                                "feedback agrees with the command again"))


def _take_over(state: State, values: dict[str, float], params: ControlParams,
               now: float) -> tuple[State, OptState]:
    """First cycle: take the plant as found rather than as if everything had just stopped.
    A running heat pump stays running and wanted; outputs whose position the site reports
    start from there (a bumpless take-over), the others from the safe state."""
    running = values.get(R.HP_RUNNING)
    seq = state.seq
    opt = state.opt
    if running is not None:
        seq = SeqState.found(running > 0.5, params.sequencer, now)
        if seq.enabled:
            opt = replace(opt, want=True)
    valve = values.get(R.VALVE_RECOVERY_ACTUAL)
    fan = values.get(R.DRYCOOLER_FAN_ACTUAL)
    setpoints = state.setpoints
    if valve is not None and fan is not None:
        cap = values.get(R.HP_CAPACITY_ACTUAL, params.sequencer.capacity_min)
        setpoints = device_bounds().admit(valve, fan, seq.enabled, cap, False, seq.enabled,
                                          params.sequencer.capacity_min)
    return replace(state, seq=seq, setpoints=setpoints), opt


_NO_LEASES: Mapping[str, float] = MappingProxyType({})
_NO_KEYS: frozenset[LimitKey] = frozenset()
_VALUE: dict[Mode | HpState, str] = {x: x.value for x in (*Mode, *HpState)}
"""Enum member -> its value: a dict lookup instead of the enum's ``value`` property."""
_new_state = maker(State)
_new_decision = maker(Decision)
_SAFE, _MANUAL, _AUTO, _RECOVERY_OFF = Mode.SAFE, Mode.MANUAL, Mode.AUTO, Mode.RECOVERY_OFF
_ENVELOPE, _OPTIMISER, _RUNNING = Layer.ENVELOPE, Layer.OPTIMISER, HpState.RUNNING


def _limit_events(events: list[Event], limits: list[Limit], keys: frozenset[LimitKey],
                  old: frozenset[LimitKey], now: float) -> None:
    """One event per limit that appeared or cleared, naming the layer that set it."""
    for x in limits:
        if x.key not in old:
            events.append(Event(now, x.layer, "limit", x.name, None, str(x.value), x.reason))
    for name, layer, reason in sorted(old - keys):
        events.append(Event(now, Layer(layer), "limit_cleared", name, None, None, reason))
