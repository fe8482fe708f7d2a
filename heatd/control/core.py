"""One control step: validate -> envelope -> sequencer and optimiser inside the bounds.

``step`` is pure: everything it knows arrives as arguments and everything it decides
leaves in the Decision, so the daemon, a test and the co-simulator drive it the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

from heatd.control import roles as R
from heatd.control.bounds import Bounds, Setpoints, device_bounds
from heatd.control.envelope import envelope
from heatd.control.estimate import supply_estimate
from heatd.control.events import Cause, Event, Layer, Limit, LimitKey
from heatd.control.minmax import clamp, min2
from heatd.control.optimiser import RESET, OptState, Proposal, propose, request_heat
from heatd.control.params import ControlParams
from heatd.control.plain import PlainOptimiser, plain_params
from heatd.control.sequencer import HpState, SeqState, sequence
from heatd.control.signals import Snapshot
from heatd.control.state import Lease, Mode, State
from heatd.control.validate import validate

S = TypeVar("S")
SC = TypeVar("SC")


@dataclass(frozen=True, slots=True)
class Decision(Generic[S]):
    """Everything one step decided, and everything the daemon publishes about it."""

    setpoints: Setpoints
    state: S
    limits: tuple[Limit, ...]
    events: tuple[Event, ...]
    mode: str
    """A :class:`Mode` from the control core (a str, as the baseline gives it)."""
    cooling_margin: float | None
    """K below the supply limit; None while the supply temperature is unknown."""
    hp_state: str
    """An :class:`HpState` from the control core (a str, as the baseline gives it)."""
    missing: tuple[str, ...]
    """Input roles the site does not bind."""
    invalid: Mapping[str, str]
    """Bound roles with a bad point this cycle -> why."""
    bounds: Bounds
    estimated: Mapping[str, float] = field(default_factory=dict)
    """Unknown roles the controller runs on an estimate of -> the estimate."""

    def summary(self) -> dict[str, Any]:
        """JSON-ready view for ``control/state``."""
        return {
            "mode": self.mode,
            "setpoints": self.setpoints.as_roles(),
            "limits": [
                {"name": x.name, "value": x.value, "layer": x.layer.value,
                 "cause": x.cause.value, "role": x.role, "reason": x.reason}
                for x in self.limits
            ],
            "cooling_margin": self.cooling_margin,
            "hp_state": self.hp_state,
            "missing": list(self.missing),
            "invalid": dict(self.invalid),
            "estimated": dict(self.estimated),
        }


class StepFn(Protocol[SC]):
    """What the co-simulator drives: the control core's ``step`` or the baseline's."""

    def __call__(self, snapshot: Snapshot, state: SC, params: Any, now: float) -> Decision[SC]:
        ...


def step(snapshot: Snapshot, state: State, params: ControlParams, now: float) -> Decision[State]:
    """Decide this cycle's setpoints. Never raises on any snapshot content."""
    plain = plain_params.of(params)
    op, cap_min, cap_max = plain.optimiser, plain.capacity_min, plain.capacity_max
    last = state.last_now
    dt = 0.0 if last is None or not now > last else min2(now - last, op.dt_max_s)
    events: list[Event] = list(state.pending)
    inputs, val = validate(snapshot, state.val, params, now)
    est, est_state = supply_estimate(inputs, state.est, plain.envelope, now)
    estimated: dict[str, float] = {}
    if est is not None:  # the envelope and the optimiser run on it, flagged
        estimated = {R.COOLANT_SUPPLY_TEMP: est}
        inputs = inputs._replace(values={**inputs.values, **estimated})
    if est_state.used is not state.est.used:
        events.append(_estimate_event(now, est_state.used))
    values = inputs.values
    opt = state.opt
    if last is None:
        state, opt = _take_over(state, values, params, now)
    prev = state.setpoints
    mode, mode_expires, leases, opt = _expire(state, opt, events, now)
    leased = {x.role: x.value for x in leases} if leases and mode is not Mode.SAFE else {}

    env = envelope(inputs, prev, state.env, params, now)
    if env.state.alarms != state.env.alarms:
        _actuator_events(events, state.env.alarms, env.state.alarms, now)
    bounds, limits, stop = env.bounds, list(env.limits), env.stop
    if mode is Mode.SAFE and env.hp_cools:  # the heat pump is the cooling the valve leaves
        bounds = bounds.tighten(1.0, 0.0)
        limits += _SAFE_LIMITS[:2]
    elif mode is Mode.SAFE:
        bounds = bounds.tighten(1.0, 0.0, 0.0, False, False)
        limits += _SAFE_LIMITS
        stop = _SAFE_STOP if stop is None else stop

    request = request_heat(values, opt, op, now)
    want, requester = _heat_wanted(mode, request.want, state.seq, leased)
    cooling, band_cooling = _hp_cooling(env.hp_cooling, env.margin, mode, leased,
                                        plain.envelope.supply_margin_k)
    stuck_cools = env.hp_cools and _cooling_needs_hp(values, state.seq.enabled, op)
    if not want and (stuck_cools or band_cooling or (cooling and state.seq.enabled)):
        want, requester = True, Layer.ENVELOPE
    seq = sequence(want, requester, bounds, values, state.seq, params.sequencer, now,
                   state.reset_request, stop)
    events += _by_lease(seq.events) if R.HP_ENABLE in leased else seq.events
    limits += seq.limits
    enabled, hp_state = seq.enable, seq.state.state
    prop, opt = propose(values, enabled, hp_state is HpState.RUNNING, prev.fan, prev.hp_capacity,
                        bounds.fan_min, min2(bounds.cap_max, cap_max), opt, op, cap_min, dt,
                        request, env.hp_cools or band_cooling,
                        plain.envelope.cooling_recovery_share if cooling else 0.0)
    valve, fan, cap = _operator_outputs(prop, mode, prev, cap_min, leased)
    if leased:
        limits += [Limit(f"override:{x.role}", x.setting, Layer.OPERATOR, Cause.LEASE,
                         "operator lease", x.role) for x in leases]

    # Rate limits: up by at most up_per_s * dt, down by at most down_per_s * dt.
    valve = _ramp(prev.valve, valve, op.valve_up_per_s, op.valve_down_per_s, dt)
    fan = _ramp(prev.fan, fan, op.fan_up_per_s, op.fan_down_per_s, dt)
    if prev.hp_enable and enabled:
        cap = _ramp(prev.hp_capacity, cap, op.cap_up_per_s, op.cap_down_per_s, dt)
    cap = min2(cap, cap_max)
    setpoints = bounds.admit(valve, fan, enabled, cap, seq.reset, prev.hp_enable, cap_min, prev)

    done = tuple(limits)
    if done == state.limits:  # most cycles: the same Limit objects as the last one
        done, keys = state.limits, state.limit_keys
    else:
        keys = frozenset(x.key for x in done)
        if keys != state.limit_keys:
            _limit_events(events, done, keys, state, now)
    new_state = State(mode, mode_expires, leases, setpoints, now, seq.state, env.state, opt,
                      val, keys, done, est=est_state)
    return Decision(setpoints, new_state, done, tuple(events), mode, env.margin, hp_state,
                    inputs.missing, inputs.invalid, bounds, estimated)


def _expire(state: State, opt: OptState, events: list[Event],
            now: float) -> tuple[Mode, float | None, tuple[Lease, ...], OptState]:
    """A mode lease that ran out falls back to auto, a setpoint lease to automatic; the
    loops restart from the applied outputs."""
    mode, mode_expires = state.mode, state.mode_expires
    if mode_expires is not None and now >= mode_expires:
        events.append(Event(now, Layer.OPERATOR, "mode", "mode", mode.value, "auto",
                            Cause.EXPIRED, "expired"))
        mode, mode_expires, opt = Mode.AUTO, None, RESET
    leases = state.leases
    if leases and any(x.expires <= now for x in leases):
        events.extend(Event(now, Layer.OPERATOR, "lease", x.role, x.setting, None,
                            Cause.EXPIRED, "expired") for x in leases if x.expires <= now)
        leases = tuple(x for x in leases if x.expires > now)
        opt = replace(RESET, want=opt.want, flip_since=opt.flip_since, target_kw=opt.target_kw)
    return mode, mode_expires, leases, opt


def _heat_wanted(mode: Mode, optimiser_wants: bool, seq: SeqState,
                 leased: Mapping[str, float]) -> tuple[bool, Layer]:
    """Whether the heat pump should run, and who asks: the optimiser in auto, the operator
    otherwise (manual keeps it as it is, the other modes stop it) or by a lease."""
    if R.HP_ENABLE in leased:
        return leased[R.HP_ENABLE] > 0.5, Layer.OPERATOR
    if mode is Mode.AUTO:
        return optimiser_wants, Layer.OPTIMISER
    return mode is Mode.MANUAL and seq.enabled, Layer.OPERATOR


def _by_lease(events: tuple[Event, ...]) -> tuple[Event, ...]:
    """The heat pump's start or stop that an operator's lease on its enable asked for says
    so (the sequencer knows only that the operator wants heat or not): an operator whose
    stop was deferred by the minimum on time sees when it took effect."""
    return tuple(replace(e, cause=Cause.LEASE, reason=f"operator lease on {R.HP_ENABLE}")
                 if e.kind == "hp_state" and e.layer is Layer.OPERATOR
                 and e.cause in (Cause.HEAT_WANTED, Cause.NO_HEAT_WANTED) else e
                 for e in events)


def _cooling_needs_hp(values: Mapping[str, float], enabled: bool, op: PlainOptimiser) -> bool:
    """With the recovery valve stuck on flow through the evaporator, the heat pump is that
    flow's cooling: started once the supply reaches its setpoint (or is unknown), kept on
    until the loop is as cold as the heat pump unloads at, so the compressor does not cycle
    on the loop's swings."""
    supply = values.get(R.COOLANT_SUPPLY_TEMP)
    return supply is None or supply >= (op.source_min_c if enabled else op.supply_setpoint_c)


def _hp_cooling(judged: bool, margin: float | None, mode: Mode, leased: Mapping[str, float],
                band_k: float) -> tuple[bool, bool]:
    """Whether the heat pump is a cooling path beside a saturated dry cooler (the envelope's
    ``hp_cooling``, in auto only: an operator's mode or lease on the heat pump stands), and
    whether the supply is in its margin band too. Past the setpoint a running one is kept
    on with its recovery share, its capacity on the heat target; in the band it is wanted
    (started if stopped) and the cooling demand floors its capacity: the storage it fills
    is not spent on a loop the dry cooler nearly holds."""
    cooling = judged and mode is Mode.AUTO and R.HP_ENABLE not in leased
    return cooling, cooling and margin is not None and margin <= band_k


def _operator_outputs(prop: Proposal, mode: Mode, prev: Setpoints, cap_min: float,
                      leased: Mapping[str, float]) -> tuple[float, float, float]:
    """The optimiser's proposal as the mode and the operator's leases change it: manual holds
    the outputs where they are, recovery-off winds the heat pump down to its minimum."""
    valve, fan, cap = prop.valve, prop.fan, prop.capacity
    if mode is Mode.MANUAL:
        valve, fan = prev.valve, prev.fan
        cap = prev.hp_capacity if prev.hp_enable else cap
    elif mode is Mode.RECOVERY_OFF:
        cap = cap_min
    if not leased:
        return valve, fan, cap
    return (leased.get(R.VALVE_RECOVERY, valve), leased.get(R.DRYCOOLER_FAN, fan),
            leased.get(R.HP_CAPACITY, cap))


def _estimate_event(now: float, used: bool) -> Event:
    """The controller starts (or stops) running on the supply's estimate."""
    if used:
        return Event(now, Layer.ENVELOPE, "input", R.COOLANT_SUPPLY_TEMP, "measured",
                     "estimated", Cause.SUPPLY_ESTIMATED,
                     "supply lost: estimated from the return, IT power and flow")
    return Event(now, Layer.ENVELOPE, "input", R.COOLANT_SUPPLY_TEMP, "estimated",
                 "measured", Cause.SUPPLY_ESTIMATED, "supply measured again, or not estimable")


def _ramp(x: float, target: float, up_per_s: float, down_per_s: float, dt: float) -> float:
    """``target``, at most ``up_per_s * dt`` above ``x`` and ``down_per_s * dt`` below it."""
    return clamp(target, x - down_per_s * dt, x + up_per_s * dt)


def _actuator_events(events: list[Event], old: tuple[str, ...], new: tuple[str, ...],
                     now: float) -> None:
    """An actuator that stops (or starts again) following its command is an alarm event."""
    for role in new:
        if role not in old:
            events.append(Event(now, Layer.ENVELOPE, "actuator", role, "following",
                                "not following", _NOT_FOLLOWING[role],
                                "feedback differs from the command"))
    for role in old:
        if role not in new:
            events.append(Event(now, Layer.ENVELOPE, "actuator", role, "not following",
                                "following", Cause.ACTUATOR_FOLLOWING,
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


def _limit_events(events: list[Event], limits: tuple[Limit, ...], keys: frozenset[LimitKey],
                  state: State, now: float) -> None:
    """One event per limit that appeared or cleared, naming the layer that set it."""
    old = state.limit_keys
    for x in limits:
        if x.key not in old:
            events.append(Event(now, x.layer, "limit", x.name, None, x.value, x.cause,
                                x.reason))
    for x in sorted((x for x in state.limits if x.key not in keys), key=_by_key):
        events.append(Event(now, x.layer, "limit_cleared", x.name, None, None, x.cause,
                            x.reason))


def _by_key(limit: Limit) -> LimitKey:
    return limit.key


_SAFE_MODE = "safe mode"
_SAFE_STOP = Limit("hp_run", False, Layer.OPERATOR, Cause.SAFE_MODE, _SAFE_MODE)
_SAFE_LIMITS = (
    Limit("fan_min", 1.0, Layer.OPERATOR, Cause.SAFE_MODE, _SAFE_MODE),
    Limit("valve_max", 0.0, Layer.OPERATOR, Cause.SAFE_MODE, _SAFE_MODE),
    _SAFE_STOP,
)
_NOT_FOLLOWING = {
    R.VALVE_RECOVERY: Cause.VALVE_NOT_FOLLOWING,
    R.DRYCOOLER_FAN: Cause.FAN_NOT_FOLLOWING,
    R.HP_CAPACITY: Cause.CAPACITY_NOT_FOLLOWING,
}
