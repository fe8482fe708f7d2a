"""Safety envelope: cooling priority, computed first, from the validated inputs only.

Severities, each no looser than the one below:
- worst case (supply or rack inlet unknown, coolant flow too low, PLC in local fallback,
  the recovery valve not following): full dry cooler, valve to the dry-cooler side, heat
  pump off at once;
- ride-through (supply reading lost, where the site states how fast its loop can rise):
  while the last reading plus that rise stays under the margin band, for at most
  ``blind_hold_max_s`` and only while the IT load does not grow, the cooling is held as
  it was (no more recovery share, no less dry cooling, no start) instead of the worst
  case, which in winter would chill the loop and stop the heat pump for nothing;
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
  stopped one is not started;
- distress (supply rising fast enough to reach the band within the rise horizon, or its
  rate not yet known; rack inlet near its limit): the valve share and the fans are held
  where they are, no more recovery share and no less dry cooling;
- a fan or compressor that does not follow its command is an alarm: the fans are asked
  for everything, a lame compressor gets no more flow;
- normal: the whole device range.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from heatd.control import roles as R
from heatd.control.bounds import _ENVELOPE_KEY, Bounds, Setpoints
from heatd.control.events import Layer, Limit
from heatd.control.params import ControlParams, EnvelopeParams
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


@dataclass(frozen=True, slots=True)
class EnvelopeResult:
    bounds: Bounds
    limits: tuple[Limit, ...]
    state: EnvelopeState
    margin: float | None
    """K below the supply limit; None while the supply temperature is unknown."""
    rise: float | None
    """Supply rate of rise, K/s; None until measured over half a window."""
    alarms: tuple[str, ...] = ()
    """Actuators that do not follow their command."""


class _Acc:
    """Collects the tightest value of each bound together with why."""

    __slots__ = ("cap", "cap_why", "fan", "fan_why", "run", "run_why", "start",
                 "start_why", "valve", "valve_why")

    def __init__(self) -> None:
        self.fan, self.valve, self.cap = 0.0, 1.0, 1.0
        self.start = self.run = True
        self.fan_why = self.valve_why = self.cap_why = self.start_why = self.run_why = ""

    def worst(self, why: str) -> None:
        self.floor_fan(1.0, why)
        self.recovery_out(why)

    def recovery_out(self, why: str) -> None:
        """The recovery branch is closed and the heat pump stopped; the fans are free."""
        self.cap_valve(0.0, why)
        self.cap_extraction(0.0, why)
        self.block_start(why)
        self.stop(why)

    def hold(self, prev: Setpoints, why: str) -> None:
        """No more recovery share than last cycle, and no less dry cooling."""
        self.floor_fan(prev.fan, why)
        self.cap_valve(prev.valve, why)

    def floor_fan(self, v: float, why: str) -> None:
        if v > self.fan or (v == self.fan and not self.fan_why and v > 0):
            self.fan, self.fan_why = v, why

    def cap_valve(self, v: float, why: str) -> None:
        if v < self.valve or (v == self.valve and not self.valve_why and v < 1):
            self.valve, self.valve_why = v, why

    def cap_extraction(self, v: float, why: str) -> None:
        if v < self.cap or (v == self.cap and not self.cap_why and v < 1):
            self.cap, self.cap_why = v, why

    def block_start(self, why: str) -> None:
        if self.start:
            self.start, self.start_why = False, why

    def stop(self, why: str) -> None:
        if self.run:
            self.run, self.run_why = False, why


def _unknown(inputs: Inputs, role: str) -> str:
    return f"{role} unknown ({inputs.invalid.get(role, 'not bound')})"


def _rise(state: EnvelopeState, supply: float, now: float,
          window: float) -> tuple[EnvelopeState, float | None]:
    """Roll the anchors and measure the rate of rise over one to two windows."""
    old, new = state.anchor_old, state.anchor_new
    if new is None or old is None:
        old = new = (now, supply)
    elif now - new[0] >= window:
        old, new = new, (now, supply)
    if old is not state.anchor_old or new is not state.anchor_new:
        state = replace(state, anchor_old=old, anchor_new=new)
    span = now - old[0]
    return state, ((supply - old[1]) / span if span >= 0.5 * window else None)


def _since(since: float | None, off: bool, now: float) -> float | None:
    """A mismatch clock: started when the actuator first strays, cleared when it follows."""
    if not off:
        return None
    return now if since is None else since


def _lost(acc: _Acc, inputs: Inputs, role: str, seen: Sample | None, band: float,
          state: EnvelopeState, prev: Setpoints, p: EnvelopeParams, now: float) -> None:
    """A cooling input whose reading is lost: ridden through with the cooling held as it
    was, for at most ``blind_hold_max_s``, while its last reading plus the fastest rise
    the loop can make (``blind_rise_k_per_s``) stays under its band and the IT load has
    not grown since the last supply reading; otherwise the worst case."""
    why = _unknown(inputs, role)
    it, it0 = inputs.values.get(_IT), state.it_seen
    if (p.blind_rise_k_per_s is not None and seen is not None
            and 0.0 <= now - seen[0] <= p.blind_hold_max_s
            and seen[1] + p.blind_rise_k_per_s * (now - seen[0]) < band
            and (it0 is None or (it is not None and it <= it0 * (1.0 + p.blind_it_growth)))):
        held = f"{why}; cooling held as it was"
        acc.hold(prev, held)
        acc.block_start(held)
    else:
        acc.worst(why)


def _supply_rules(acc: _Acc, supply: float, rise: float | None, prev: Setpoints,
                  p: EnvelopeParams, cap_min: float) -> None:
    band = p.supply_limit_c - p.supply_margin_k
    if supply >= band:
        depth = min((supply - band) / p.supply_margin_k, 1.0)
        why = ("supply at or above its limit" if depth >= 1.0
               else "supply within its margin of the limit")
        acc.floor_fan(depth, why)
        acc.floor_fan(prev.fan, why)
        acc.cap_valve(min(prev.valve, 1.0 - depth), why)
        if depth >= 1.0:  # no recovery flow left: the compressor idles, nothing starts
            acc.cap_extraction(cap_min, why)
            acc.block_start(why)
    if rise is None:
        acc.hold(prev, "supply rate of rise not yet known")
    elif rise > p.max_rise_k_per_s and supply + rise * p.rise_horizon_s >= band:
        acc.hold(prev, "supply rising fast")


def envelope(
    inputs: Inputs, prev: Setpoints, state: EnvelopeState, params: ControlParams, now: float
) -> EnvelopeResult:
    """Bounds for this cycle; every unknown cooling input is treated as the worst case."""
    p = params.envelope
    vals = inputs.values
    acc = _Acc()
    alarms: list[str] = []

    supply = vals.get(_SUPPLY)
    rise: float | None = None
    if supply is None:
        if state.anchor_new is not None:
            state = replace(state, anchor_old=None, anchor_new=None)
        band = p.supply_limit_c - p.supply_margin_k
        _lost(acc, inputs, _SUPPLY, state.supply_seen, band, state, prev, p, now)
    else:
        state, rise = _rise(state, supply, now, p.rise_window_s)
        _supply_rules(acc, supply, rise, prev, p, params.sequencer.capacity_min)

    rack = vals.get(_RACK)
    if rack is None and _RACK in inputs.invalid:
        band = p.rack_inlet_limit_c - p.rack_inlet_margin_k
        _lost(acc, inputs, _RACK, state.rack_seen, band, state, prev, p, now)
    if p.blind_rise_k_per_s is not None and (supply is not None or rack is not None):
        state = replace(  # one copy a cycle: what a ride-through would judge from
            state,
            supply_seen=state.supply_seen if supply is None else (now, supply),
            it_seen=state.it_seen if supply is None else vals.get(_IT),
            rack_seen=state.rack_seen if rack is None else (now, rack),
        )
    if rack is not None and rack >= p.rack_inlet_limit_c - p.rack_inlet_margin_k:
        over = rack - (p.rack_inlet_limit_c - p.rack_inlet_margin_k)
        why = "rack inlet near its limit"
        acc.floor_fan(min(1.0, over / p.rack_inlet_margin_k), why)
        acc.hold(prev, why)

    if p.flow_min is not None:
        flow = vals.get(_FLOW)
        if flow is None:
            acc.worst(_unknown(inputs, _FLOW))
        elif flow < p.flow_min:
            acc.worst("coolant flow below minimum")

    if vals.get(_FALLBACK, 0.0) > 0.5:
        acc.worst("plc in local fallback")

    fault = vals.get(_FAULT)
    trip = vals.get(_TRIP, 0.0)
    # A trip code or lockout that is known closes recovery whatever the fault bit reads.
    if trip > 0 or (fault is not None and fault > 0.5):
        acc.recovery_out("heat pump trip code set" if trip > 0 else "heat pump fault")
    elif vals.get(_LOCKOUT, 0.0) > 0.5:
        acc.recovery_out("heat pump locked out")
    elif fault is None:
        why = f"heat pump out of contact: {_unknown(inputs, _FAULT)}"
        acc.block_start(why)
        acc.cap_valve(prev.valve if prev.hp_enable else 0.0, why)
    if _RUNNING not in vals:
        acc.block_start(_unknown(inputs, _RUNNING))

    actual = vals.get(_VALVE_ACTUAL)
    valve_since = _since(state.valve_off_since,
                         actual is not None and abs(actual - prev.valve) > p.valve_mismatch_tol,
                         now)  # fmt: skip
    if valve_since is not None and now - valve_since >= p.valve_mismatch_s:
        acc.worst("recovery valve not following its setpoint")
        alarms.append(R.VALVE_RECOVERY)
    fan = vals.get(_FAN_ACTUAL)
    fan_since = _since(state.fan_off_since,
                       fan is not None and abs(fan - prev.fan) > p.fan_mismatch_tol, now)
    if fan_since is not None and now - fan_since >= p.fan_mismatch_s:
        acc.floor_fan(1.0, "dry-cooler fan not following its setpoint")
        alarms.append(R.DRYCOOLER_FAN)
    cap = vals.get(_CAP_ACTUAL)
    running = vals.get(_RUNNING, 0.0) > 0.5 and prev.hp_enable
    cap_since = _since(state.cap_off_since,
                       running and cap is not None
                       and abs(cap - prev.hp_capacity) > p.capacity_mismatch_tol,
                       now)  # fmt: skip
    if cap_since is not None and now - cap_since >= p.capacity_mismatch_s:
        why = "heat-pump capacity not following its setpoint"
        acc.cap_valve(prev.valve, why)
        acc.block_start(why)
        alarms.append(R.HP_CAPACITY)
    if (valve_since, fan_since, cap_since, tuple(alarms)) != (
            state.valve_off_since, state.fan_off_since, state.cap_off_since, state.alarms):
        state = replace(state, valve_off_since=valve_since, fan_off_since=fan_since,
                        cap_off_since=cap_since, alarms=tuple(alarms))

    margin = None if supply is None else p.supply_limit_c - supply
    return EnvelopeResult(
        Bounds(_ENVELOPE_KEY, acc.fan, acc.valve, acc.cap, acc.start, acc.run),
        _limits(acc), state, margin, rise, tuple(alarms),
    )  # fmt: skip


_SUPPLY = R.COOLANT_SUPPLY_TEMP
_IT = R.IT_POWER
_RACK = R.RACK_INLET_TEMP
_FLOW = R.COOLANT_FLOW
_FALLBACK = R.PLC_FALLBACK
_FAULT = R.HP_FAULT
_TRIP = R.HP_TRIP_CODE
_LOCKOUT = R.HP_LOCKOUT
_RUNNING = R.HP_RUNNING
_VALVE_ACTUAL = R.VALVE_RECOVERY_ACTUAL
_FAN_ACTUAL = R.DRYCOOLER_FAN_ACTUAL
_CAP_ACTUAL = R.HP_CAPACITY_ACTUAL


def _limits(acc: _Acc) -> tuple[Limit, ...]:
    out: list[Limit] = []
    env = Layer.ENVELOPE
    if acc.fan > 0.0:
        out.append(Limit("fan_min", acc.fan, env, acc.fan_why))
    if acc.valve < 1.0:
        out.append(Limit("valve_max", acc.valve, env, acc.valve_why))
    if acc.cap < 1.0:
        out.append(Limit("hp_capacity_max", acc.cap, env, acc.cap_why))
    if not acc.start:
        out.append(Limit("hp_start", False, env, acc.start_why))
    if not acc.run:
        out.append(Limit("hp_run", False, env, acc.run_why))
    return tuple(out)
