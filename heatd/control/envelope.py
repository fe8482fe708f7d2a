"""Safety envelope: cooling priority, computed first, from the validated inputs only.

Severities, each no looser than the one below:
- worst case (supply or rack inlet unknown, coolant flow too low, PLC in local fallback,
  the recovery valve not following): full dry cooler, valve to the dry-cooler side, heat
  pump off at once; but a recovery valve that does not follow and still passes flow to
  the heat pump (its measured position, or unknown) cannot close the recovery branch:
  the heat pump is then the cooling of that flow, and is kept and may start (its own
  protection guards it), while the fans run full and the valve is still asked to close;
- ride-through (supply reading lost, where the site states how fast its loop can rise):
  while the last reading plus that rise stays under the margin band, for at most
  ``blind_hold_max_s`` and only while the IT load does not grow, the cooling is held as
  it was (no more recovery share, no less dry cooling, no start) instead of the worst
  case, which in winter would chill the loop and stop the heat pump for nothing;
- supply reading lost: first, where the return, IT power and flow are good, its estimate
  (``heatd.control.estimate``, made by the step), which every layer judges as a reading;
  past the estimate and any ride-through, the worst case with the fans floored by the
  return, which bounds the supply from above (a winter loop is not chilled out of its
  transmitters' range);
- heat pump out (fault, trip or lockout) with the supply known: the recovery branch is
  dead, so all coolant goes to the dry cooler and the heat pump stays off; the fans stay
  with the supply loop, which knows how much cooling the loop needs (a winter loop
  chilled to 0 degC by full fans would starve the heat pump for hours after its reset);
- heat pump out of contact (its fault state unknown): a running machine has its own
  protection and keeps running, but gets no more flow than it had; a stopped one gets
  none and is not started;
- high limit (supply within its margin of the limit): recovery is **driven down** across
  the margin band, the valve from fully on recovery at the band's foot to fully on the
  dry cooler at the limit, and the fans are floored from nothing to full: the dry cooler
  gets a flow share and a fan speed able to carry the load before the limit is reached.
  The heat pump keeps running on the flow it still gets (it cools the loop too); at the
  limit, with no recovery flow left, it idles at its minimum capacity instead of
  stopping, so it takes the heat back without a restart once the supply falls, and a
  stopped one is not started; while the measured valve still passes recovery flow the
  compressor is that flow's cooling and is neither throttled nor kept from starting.
  A **saturated dry cooler** (fans commanded full with the supply still over the
  cooling loop's setpoint and not falling) cannot take more, and handing it the flow
  would take the heat pump's cooling away on a hot day: the heat pump becomes a cooling
  path instead (``hp_cooling``, kept until the fans are down to half). The
  recovery branch keeps ``cooling_recovery_share`` of the flow, in the band and at the
  limit too (the valve is driven down no further), and the compressor may run, load
  and start; in the band the step starts it and floors its capacity by the cooling
  demand. Only a heat pump known to be in contact and not faulted, tripped or locked
  out, whose evaporator inlet (the coolant return) is known and under
  ``optimiser.evaporator_inlet_max_c`` and whose condenser has a sink (the network's
  demand plus the storage headroom at least its minimum heat) is counted on; every
  other layer still tightens as before, so the worst case is unchanged;
- distress (supply rising fast enough to reach the band within the rise horizon, or its
  rate not yet known; rack inlet near its limit): the valve share and the fans are held
  where they are, no more recovery share and no less dry cooling;
- a fan or compressor that does not follow its command is an alarm: the fans are asked
  for everything, a lame compressor gets no more flow;
- normal: the whole device range.

Each severity is a layer, a function of the cycle's inputs that can only tighten the
bounds, and :data:`LAYERS` lists them in the order they are walked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from heatd.control import roles as R
from heatd.control.bounds import _ENVELOPE_KEY, Bounds, Setpoints
from heatd.control.events import Cause, Layer, Limit
from heatd.control.minmax import clamp, max2, min2
from heatd.control.optimiser import heat_target_kw
from heatd.control.params import ControlParams
from heatd.control.plain import PlainEnvelope, PlainOptimiser, plain_params
from heatd.control.validate import Inputs

Sample = tuple[float, float]
"""(time, supply temperature)."""


@dataclass(frozen=True, slots=True)
class EnvelopeState:
    """Two rolling anchors give the rate of rise over one to two windows, at O(1) cost; the
    mismatch clocks say since when each actuator has not followed its command."""

    anchor_old: Sample | None = None
    anchor_new: Sample | None = None
    valve_off_since: float | None = None
    """Since when the valve has been off its command without moving toward it."""
    fan_off_since: float | None = None
    cap_off_since: float | None = None
    alarms: tuple[str, ...] = ()
    """Output roles whose actuator does not follow its command, as of the last cycle."""
    supply_seen: Sample | None = None
    """The last good supply reading: what a ride-through through its loss judges from."""
    rack_seen: Sample | None = None
    """The last good rack inlet reading, likewise."""
    it_seen: float | None = None
    """The IT load at the last good supply reading."""
    valve_from: tuple[float, float] | None = None
    """(position, direction +1/-1 toward the command) where ``valve_off_since`` started:
    a valve that has moved ``valve_mismatch_tol`` toward its command since is on its way."""
    valve_ok_since: float | None = None
    """Since when a valve declared not following has followed again (its alarm holds for
    ``valve_clear_s`` of that)."""
    hp_cooling: bool = False
    """The heat pump is a cooling path beside a saturated dry cooler (held until the
    supply is back at the cooling loop's setpoint)."""
    made: Tightened | None = field(default=None, compare=False, repr=False)
    """Last cycle's bounds and limits, reused while the layers tighten the same way."""


class EnvelopeResult(NamedTuple):
    """The envelope's verdict for one cycle, handed to the step and never kept."""

    bounds: Bounds
    limits: tuple[Limit, ...]
    state: EnvelopeState
    margin: float | None
    """K below the supply limit; None while the supply temperature is unknown."""
    rise: float | None
    """Supply rate of rise, K/s; None until measured over half a window."""
    alarms: tuple[str, ...] = ()
    """Actuators that do not follow their command."""
    stop: Limit | None = None
    """The limit that withdrew the heat pump's permission to run, if one did."""
    hp_cools: bool = False
    """The recovery valve is stuck with flow through the heat pump's evaporator: the heat
    pump is that flow's only cooling."""
    hp_cooling: bool = False
    """The dry cooler is saturated with the supply in its band: the heat pump, able to
    cool, keeps the recovery share and its capacity follows the cooling demand."""


@dataclass(frozen=True, slots=True)
class Why:
    """Why a bound was tightened: the cause with its values, and the same for people."""

    cause: Cause
    reason: str
    role: str | None = None
    verdict: str | None = None

    def limit(self, name: str, value: float | bool) -> Limit:
        return Limit(name, value, Layer.ENVELOPE, self.cause, self.reason, self.role,
                     self.verdict)


Tightening = tuple[float, Why | None, float, Why | None, float, Why | None, Why | None, Why | None]
"""How the layers left the bounds: the fan floor, valve ceiling and capacity cap, each with
why, and why the heat pump may not start or run (None: it may)."""


@dataclass(frozen=True, slots=True)
class Tightened:
    """The Bounds and Limits one tightening makes: a cycle that tightens the same way as the
    last (most cycles: nothing, or the same actuator alarm) takes them as they are."""

    tightening: Tightening
    bounds: Bounds
    limits: tuple[Limit, ...]
    stop: Limit | None
    """The limit that withdrew the heat pump's permission to run, if one did."""


@dataclass(slots=True)
class _Cycle:
    """One envelope pass: what the layers read, and the tightest value of each bound so far
    with why. On a tie the bound keeps the reason of the layer that set it first, so the
    order of ``LAYERS`` is the order in which causes are named."""

    values: dict[str, float]
    """The validated inputs: only what is known."""
    invalid: dict[str, str]
    """Bound inputs not known this cycle -> why."""
    prev: Setpoints
    state: EnvelopeState
    """Last cycle's memory, as it was: the new one is made once, from this pass."""
    p: PlainEnvelope
    op: PlainOptimiser
    cap_min: float
    now: float
    anchor_old: Sample | None
    anchor_new: Sample | None
    supply: float | None = None
    rise: float | None = None
    fan: float = 0.0
    valve: float = 1.0
    cap: float = 1.0
    start: bool = True
    run: bool = True
    fan_why: Why | None = None
    valve_why: Why | None = None
    cap_why: Why | None = None
    start_why: Why | None = None
    run_why: Why | None = None
    valve_since: float | None = None
    fan_since: float | None = None
    cap_since: float | None = None
    valve_from: tuple[float, float] | None = None
    valve_ok_since: float | None = None
    valve_alarm: bool = False
    """The recovery valve does not follow its command (judged before the layers run)."""
    recovery_stays: bool = False
    """...and its measured position (or its unknown one) leaves flow through the recovery
    branch, which closing the valve cannot take away."""
    hp_cooling: bool = False
    """The heat pump is a cooling path beside a saturated dry cooler (the high limit's)."""
    alarms: list[str] = field(default_factory=list)
    missing: tuple[str, ...] = ()
    """Input roles absent from the snapshot: not measured, whatever an estimate says."""

    def floor_fan(self, v: float, why: Why) -> None:
        if v > self.fan:
            self.fan, self.fan_why = v, why

    def cap_valve(self, v: float, why: Why) -> None:
        if v < self.valve:
            self.valve, self.valve_why = v, why

    def cap_extraction(self, v: float, why: Why) -> None:
        if v < self.cap:
            self.cap, self.cap_why = v, why

    def block_start(self, why: Why) -> None:
        if self.start:
            self.start, self.start_why = False, why

    def stop(self, why: Why) -> None:
        if self.run:
            self.run, self.run_why = False, why

    def worst(self, why: Why) -> None:
        """Full dry cooler, the recovery branch closed and the heat pump stopped."""
        self.floor_fan(1.0, why)
        self.recovery_out(why)

    def recovery_out(self, why: Why) -> None:
        """The recovery branch is closed and the heat pump stopped; the fans are free. A
        stuck valve that leaves flow through the recovery branch cannot close it: the heat
        pump is then that flow's only cooling and keeps its permission to run and start."""
        self.cap_valve(0.0, why)
        if self.recovery_stays:
            return
        self.cap_extraction(0.0, why)
        self.block_start(why)
        self.stop(why)

    def hold(self, why: Why) -> None:
        """No more recovery share than last cycle (or than the heat pump keeps while it
        cools beside a saturated dry cooler), and no less dry cooling."""
        self.floor_fan(self.prev.fan, why)
        share = self.p.cooling_recovery_share if self.hp_cooling else 0.0
        self.cap_valve(max2(self.prev.valve, share), why)

    def unknown(self, role: str) -> Why:
        verdict = self.invalid.get(role, "not bound")
        return Why(Cause.INPUT_UNKNOWN, f"{role} unknown ({verdict})", role, verdict)


Rule = Callable[[_Cycle], None]
"""One safety layer: reads the cycle, tightens its bounds, names why."""


def _supply(c: _Cycle) -> None:
    """The supply temperature: its margin band and rate of rise, or, lost, a ride-through
    or the worst case."""
    p, supply = c.p, c.values.get(R.COOLANT_SUPPLY_TEMP)
    if supply is None:
        c.anchor_old = c.anchor_new = None
        _lost(c, R.COOLANT_SUPPLY_TEMP, c.state.supply_seen, p.supply_limit_c - p.supply_margin_k)
        return
    c.supply = supply
    c.rise = _rise(c, supply, p.rise_window_s)
    band = p.supply_limit_c - p.supply_margin_k
    c.hp_cooling = _hp_cooling(c, supply)
    if supply >= band:
        depth = min2((supply - band) / p.supply_margin_k, 1.0)
        why = _AT_LIMIT if depth >= 1.0 else _IN_BAND
        c.floor_fan(depth, why)
        c.floor_fan(c.prev.fan, why)
        if c.hp_cooling:  # the heat pump keeps its share; it may load and start
            c.cap_valve(max2(min2(c.prev.valve, 1.0 - depth), p.cooling_recovery_share),
                        _HP_COOLING_AT_LIMIT if depth >= 1.0 else _HP_COOLING_IN_BAND)
        else:
            c.cap_valve(min2(c.prev.valve, 1.0 - depth), why)
            if depth >= 1.0 and not _recovery_flow(c):  # the compressor idles, nothing starts
                c.cap_extraction(c.cap_min, why)
                c.block_start(why)
    if c.rise is None:
        c.hold(_RISE_UNKNOWN)
    elif c.rise > p.max_rise_k_per_s and supply + c.rise * p.rise_horizon_s >= band:
        c.hold(_RISING_FAST)


def _hp_cooling(c: _Cycle, supply: float) -> bool:
    """Whether the heat pump is a cooling path: it is taken on once the dry cooler is
    saturated (fans commanded full) with the supply still over the cooling loop's
    setpoint and not falling (a loop that warms past the setpoint with the fans full
    would otherwise hand the heat pump's flow to a dry cooler that cannot take more), and
    kept until the fans are down to half: the dry cooler has room again, and a noisy
    reading under the setpoint, which kicks the fans off full for a cycle, does not end
    it; only while it is in contact and not faulted, tripped or locked out, its
    evaporator inlet is known and under its limit, and its condenser has a sink."""
    vals, op = c.values, c.op
    ret = vals.get(R.COOLANT_RETURN_TEMP)
    if (vals.get(R.HP_FAULT, 1.0) > 0.5 or vals.get(R.HP_TRIP_CODE, 0.0) > 0
            or vals.get(R.HP_LOCKOUT, 0.0) > 0.5 or R.HP_RUNNING not in vals
            or ret is None or ret >= op.evaporator_inlet_max_c
            or heat_target_kw(vals, op) < c.cap_min * op.hp_nominal_heat_kw):
        return False
    if c.state.hp_cooling:
        return c.prev.fan >= _FANS_ROOM
    return (c.prev.fan >= 1.0 and supply > op.supply_setpoint_c + op.cool_deadband_k
            and c.rise is not None and c.rise >= 0.0)


def _rack_lost(c: _Cycle) -> None:
    """A rack inlet reading lost: ridden through against its own band, or the worst case.
    Racks known from some of their points (``validation.rack_inlet_min_good``) count as
    known only while the supply feeding every rack's coil is measured, every point of it
    good (an estimated supply is a value whose points are not, and one absent from the
    snapshot has none)."""
    supply = R.COOLANT_SUPPLY_TEMP
    if R.RACK_INLET_TEMP in c.invalid and (R.RACK_INLET_TEMP not in c.values
                                          or supply not in c.values or supply in c.invalid
                                          or supply in c.missing):
        band = c.p.rack_inlet_limit_c - c.p.rack_inlet_margin_k
        _lost(c, R.RACK_INLET_TEMP, c.state.rack_seen, band)


def _rack_near_limit(c: _Cycle) -> None:
    """The hottest rack inlet within its margin: fans floored across it, recovery held."""
    rack = c.values.get(R.RACK_INLET_TEMP)
    band = c.p.rack_inlet_limit_c - c.p.rack_inlet_margin_k
    if rack is not None and rack >= band:
        c.floor_fan(min2(1.0, (rack - band) / c.p.rack_inlet_margin_k), _RACK_NEAR)
        c.hold(_RACK_NEAR)


def _flow(c: _Cycle) -> None:
    """Coolant flow under its minimum, or unknown where a minimum is set: the worst case."""
    if c.p.flow_min is not None:
        flow = c.values.get(R.COOLANT_FLOW)
        if flow is None:
            c.worst(c.unknown(R.COOLANT_FLOW))
        elif flow < c.p.flow_min:
            c.worst(_FLOW_LOW)


def _plc_fallback(c: _Cycle) -> None:
    """The PLC cools on its own: the worst case, so heatd does not fight it."""
    if c.values.get(R.PLC_FALLBACK, 0.0) > 0.5:
        c.worst(_FALLBACK_WHY)


def _heat_pump(c: _Cycle) -> None:
    """A tripped, faulted or locked-out heat pump closes recovery; one out of contact keeps
    the flow it had and is not started. A known trip code or lockout closes recovery
    whatever the fault bit reads."""
    vals = c.values
    fault, trip = vals.get(R.HP_FAULT), vals.get(R.HP_TRIP_CODE, 0.0)
    if trip > 0:
        c.recovery_out(_TRIP_WHY)
    elif fault is not None and fault > 0.5:
        c.recovery_out(_FAULT_WHY)
    elif vals.get(R.HP_LOCKOUT, 0.0) > 0.5:
        c.recovery_out(_LOCKOUT_WHY)
    elif fault is None:
        unknown = c.unknown(R.HP_FAULT)
        why = Why(Cause.HP_OUT_OF_CONTACT, f"heat pump out of contact: {unknown.reason}",
                  R.HP_FAULT, unknown.verdict)
        c.block_start(why)
        c.cap_valve(c.prev.valve if c.prev.hp_enable else 0.0, why)


def _running_unknown(c: _Cycle) -> None:
    """Whether the heat pump runs is unknown: it is not started blind."""
    if R.HP_RUNNING not in c.values:
        c.block_start(c.unknown(R.HP_RUNNING))


def _valve_follows(c: _Cycle) -> None:
    """A recovery valve that does not follow its setpoint: the worst case, with the heat
    pump kept as cooling while the valve still passes it flow. Once it follows again it
    stays out of recovery, the fans with the supply loop, until its alarm clears; but a
    running heat pump that is a cooling path beside a saturated dry cooler is not
    stopped: the valve follows, and closing it would leave the loop to a dry cooler that
    cannot hold it (a stopped one is not started, so the alarm still costs one start at
    most)."""
    if c.valve_ok_since is not None:
        if not (c.hp_cooling and c.prev.hp_enable):
            c.recovery_out(_VALVE_WHY)
    elif c.valve_alarm:
        c.worst(_VALVE_STUCK_WHY if c.recovery_stays else _VALVE_WHY)
    if c.valve_alarm:
        c.alarms.append(R.VALVE_RECOVERY)


def _fan_follows(c: _Cycle) -> None:
    """Dry-cooler fans that do not follow: asked for everything."""
    fan, p = c.values.get(R.DRYCOOLER_FAN_ACTUAL), c.p
    off = fan is not None and abs(fan - c.prev.fan) > p.fan_mismatch_tol
    c.fan_since = _since(c.state.fan_off_since, off, c.now)
    if c.fan_since is not None and c.now - c.fan_since >= p.fan_mismatch_s:
        c.floor_fan(1.0, _FAN_WHY)
        c.alarms.append(R.DRYCOOLER_FAN)


def _capacity_follows(c: _Cycle) -> None:
    """A running compressor that does not follow its capacity: no more flow, no start."""
    vals, p, prev = c.values, c.p, c.prev
    cap = vals.get(R.HP_CAPACITY_ACTUAL)
    running = vals.get(R.HP_RUNNING, 0.0) > 0.5 and prev.hp_enable
    off = running and cap is not None and abs(cap - prev.hp_capacity) > p.capacity_mismatch_tol
    c.cap_since = _since(c.state.cap_off_since, off, c.now)
    if c.cap_since is not None and c.now - c.cap_since >= p.capacity_mismatch_s:
        c.cap_valve(prev.valve, _CAP_WHY)
        c.block_start(_CAP_WHY)
        c.alarms.append(R.HP_CAPACITY)


LAYERS: tuple[Rule, ...] = (
    _supply,
    _rack_lost,
    _rack_near_limit,
    _flow,
    _plc_fallback,
    _heat_pump,
    _running_unknown,
    _valve_follows,
    _fan_follows,
    _capacity_follows,
)
"""The safety layers, walked in this order: each can only tighten what the ones before left,
and on a tie the earlier one is named."""


def envelope(
    inputs: Inputs, prev: Setpoints, state: EnvelopeState, params: ControlParams, now: float
) -> EnvelopeResult:
    """Bounds for this cycle; every unknown cooling input is treated as the worst case."""
    plain = plain_params.of(params)
    c = _Cycle(inputs.values, inputs.invalid, prev, state, plain.envelope, plain.optimiser,
               plain.capacity_min, now, state.anchor_old, state.anchor_new,
               missing=inputs.missing)
    _judge_valve(c)
    for layer in LAYERS:
        layer(c)
    return _result(c)


def _judge_valve(c: _Cycle) -> None:
    """Whether the recovery valve follows, judged once before the layers, since every
    layer that would close the recovery branch must know whether it can.

    A valve off its command by more than ``valve_mismatch_tol`` is not following once it
    has not moved that far toward the command for ``valve_mismatch_s``: a slow valve on
    its way (any stroke up to ``valve_mismatch_s / valve_mismatch_tol``) follows, a seized
    one does not, however the command moves. Once declared, the alarm holds until the
    valve has followed for ``valve_clear_s`` (a lost feedback holds it too), so a valve
    that sticks now and then costs one stop, not a compressor cycle per sticking."""
    p, old, now = c.p, c.state, c.now
    actual, command = c.values.get(R.VALVE_RECOVERY_ACTUAL), c.prev.valve
    since, start = old.valve_off_since, old.valve_from
    off = actual is not None and abs(actual - command) > p.valve_mismatch_tol
    if actual is None or not off:
        since = start = None
    else:
        toward = 1.0 if command > actual else -1.0
        if start is None or start[1] != toward:
            if since is None or start is not None:  # a new stretch, or the command turned
                since = now
            start = (actual, toward)
        elif (actual - start[0]) * toward >= p.valve_mismatch_tol:  # on its way
            since, start = now, (actual, toward)
    c.valve_since, c.valve_from = since, start
    alarm = since is not None and now - since >= p.valve_mismatch_s
    if not alarm and R.VALVE_RECOVERY in old.alarms:
        if actual is None or off:
            alarm = True
        else:
            ok = now if old.valve_ok_since is None else old.valve_ok_since
            alarm = now - ok < p.valve_clear_s
            c.valve_ok_since = ok if alarm else None
    c.valve_alarm = alarm
    c.recovery_stays = alarm and (actual is None or (off and actual > p.valve_mismatch_tol))


def _recovery_flow(c: _Cycle) -> bool:
    """The measured valve position leaves flow through the recovery branch, or a stuck
    valve's may."""
    actual = c.values.get(R.VALVE_RECOVERY_ACTUAL)
    return c.recovery_stays or (actual is not None and actual > c.p.valve_mismatch_tol)


def _result(c: _Cycle) -> EnvelopeResult:
    """The bounds and limits the layers left, with the memory the next cycle judges from."""
    p, old, supply, values = c.p, c.state, c.supply, c.values
    supply_seen, rack_seen, it_seen = old.supply_seen, old.rack_seen, old.it_seen
    if p.blind_rise_k_per_s is not None:  # what a ride-through would judge from
        rack = values.get(R.RACK_INLET_TEMP)
        if supply is not None:
            supply_seen, it_seen = (c.now, supply), values.get(R.IT_POWER)
        if rack is not None:
            rack_seen = (c.now, rack)
    tightening = (c.fan, c.fan_why, c.valve, c.valve_why, c.cap, c.cap_why, c.start_why,
                  c.run_why)
    made = old.made
    if made is None or made.tightening != tightening:
        made = _tightened(c, tightening)
    alarms = tuple(c.alarms)
    memory = (c.anchor_old, c.anchor_new, c.valve_since, c.fan_since, c.cap_since, alarms,
              supply_seen, rack_seen, it_seen, c.valve_from, c.valve_ok_since, c.hp_cooling)
    state = old
    if made is not old.made or memory != (
            old.anchor_old, old.anchor_new, old.valve_off_since, old.fan_off_since,
            old.cap_off_since, old.alarms, old.supply_seen, old.rack_seen, old.it_seen,
            old.valve_from, old.valve_ok_since, old.hp_cooling):
        state = EnvelopeState(*memory, made)  # memory is in field order
    return EnvelopeResult(made.bounds, made.limits, state,
                          None if supply is None else p.supply_limit_c - supply, c.rise,
                          alarms, made.stop, c.recovery_stays, c.hp_cooling)


def _tightened(c: _Cycle, tightening: Tightening) -> Tightened:
    """The Bounds the layers left, one limit per bound they tightened, and among them the
    stop, if any."""
    out: list[Limit] = []
    if c.fan_why is not None:
        out.append(c.fan_why.limit("fan_min", c.fan))
    if c.valve_why is not None:
        out.append(c.valve_why.limit("valve_max", c.valve))
    if c.cap_why is not None:
        out.append(c.cap_why.limit("hp_capacity_max", c.cap))
    if c.start_why is not None:
        out.append(c.start_why.limit("hp_start", False))
    stop = None
    if c.run_why is not None:
        stop = c.run_why.limit("hp_run", False)
        out.append(stop)
    bounds = Bounds(_ENVELOPE_KEY, c.fan, c.valve, c.cap, c.start, c.run)
    return Tightened(tightening, bounds, tuple(out), stop)


def _rise(c: _Cycle, supply: float, window: float) -> float | None:
    """Roll the anchors and measure the rate of rise over one to two windows."""
    old, new, now = c.anchor_old, c.anchor_new, c.now
    if new is None or old is None:
        old = (now, supply)
        c.anchor_old = c.anchor_new = old
    elif now - new[0] >= window:
        old = new
        c.anchor_old, c.anchor_new = new, (now, supply)
    span = now - old[0]
    return (supply - old[1]) / span if span >= 0.5 * window else None


def _since(since: float | None, off: bool, now: float) -> float | None:
    """A mismatch clock: started when the actuator first strays, cleared when it follows."""
    if not off:
        return None
    return now if since is None else since


def _lost(c: _Cycle, role: str, seen: Sample | None, band: float) -> None:
    """A cooling input whose reading is lost: ridden through with the cooling held as it
    was, for at most ``blind_hold_max_s``, while its last reading plus the fastest rise
    the loop can make (``blind_rise_k_per_s``) stays under its band and the IT load has
    not grown since the last supply reading; otherwise the worst case."""
    p, now, why = c.p, c.now, c.unknown(role)
    it, it0 = c.values.get(R.IT_POWER), c.state.it_seen
    if (p.blind_rise_k_per_s is not None and seen is not None
            and 0.0 <= now - seen[0] <= p.blind_hold_max_s
            and seen[1] + p.blind_rise_k_per_s * (now - seen[0]) < band
            and (it0 is None or (it is not None and it <= it0 * (1.0 + p.blind_it_growth)))):
        held = Why(Cause.INPUT_LOST_HELD, f"{why.reason}; cooling held as it was", role,
                   why.verdict)
        c.hold(held)
        c.block_start(held)
    elif role == R.COOLANT_SUPPLY_TEMP:
        _below_return(c, why)
    else:
        c.worst(why)


def _below_return(c: _Cycle, why: Why) -> None:
    """The worst case for a lost supply: the recovery branch closed and the heat pump
    stopped, the fans floored by the return, which bounds the supply from above: full
    from the margin band up, nothing at or below ``supply_low_c``, so a winter night
    does not chill the loop without bound (and out of its sensors' range)."""
    p, ret = c.p, c.values.get(R.COOLANT_RETURN_TEMP)
    band = p.supply_limit_c - p.supply_margin_k
    c.recovery_out(why)
    c.floor_fan(1.0 if ret is None else
                clamp((ret - p.supply_low_c) / (band - p.supply_low_c), 0.0, 1.0), why)



_AT_LIMIT = Why(Cause.SUPPLY_AT_LIMIT, "supply at or above its limit")
_IN_BAND = Why(Cause.SUPPLY_IN_BAND, "supply within its margin of the limit")
_FANS_ROOM = 0.5
"""Fans commanded under this: a dry cooler with room again, the heat pump no longer a
cooling path."""
_HP_COOLING_IN_BAND = Why(Cause.SUPPLY_IN_BAND,
                          "supply within its margin of the limit, dry cooler saturated: the "
                          "heat pump keeps its recovery share as cooling",
                          verdict="heat pump cooling")
_HP_COOLING_AT_LIMIT = Why(Cause.SUPPLY_AT_LIMIT,
                           "supply at or above its limit, dry cooler saturated: the heat pump "
                           "keeps its recovery share as cooling", verdict="heat pump cooling")
_RISE_UNKNOWN = Why(Cause.RISE_UNKNOWN, "supply rate of rise not yet known")
_RISING_FAST = Why(Cause.RISING_FAST, "supply rising fast")
_RACK_NEAR = Why(Cause.RACK_NEAR_LIMIT, "rack inlet near its limit")
_FLOW_LOW = Why(Cause.FLOW_LOW, "coolant flow below minimum")
_FALLBACK_WHY = Why(Cause.PLC_FALLBACK, "plc in local fallback")
_TRIP_WHY = Why(Cause.HP_TRIP_CODE, "heat pump trip code set")
_FAULT_WHY = Why(Cause.HP_FAULT, "heat pump fault")
_LOCKOUT_WHY = Why(Cause.HP_LOCKOUT, "heat pump locked out")
_VALVE_WHY = Why(Cause.VALVE_NOT_FOLLOWING, "recovery valve not following its setpoint",
                 R.VALVE_RECOVERY)
_VALVE_STUCK_WHY = Why(Cause.VALVE_NOT_FOLLOWING,
                       "recovery valve not following its setpoint, with flow through the heat "
                       "pump: the heat pump is kept as its cooling", R.VALVE_RECOVERY,
                       "recovery flow")
_FAN_WHY = Why(Cause.FAN_NOT_FOLLOWING, "dry-cooler fan not following its setpoint",
               R.DRYCOOLER_FAN)
_CAP_WHY = Why(Cause.CAPACITY_NOT_FOLLOWING, "heat-pump capacity not following its setpoint",
               R.HP_CAPACITY)
