"""Safety envelope: cooling priority, computed first, from the validated inputs only.

Three severities, each no looser than the one below:
- worst case (cooling input unknown, PLC in local fallback, heat pump faulted): full dry
  cooler, valve to the dry-cooler side, heat pump off at once;
- distress (supply or rack inlet near/above its limit, supply rising fast enough to reach
  the margin band within the rise horizon, or its rate not yet known): recovery may not
  grow - valve, extraction and start are held at the last decision and the dry cooler may
  not slow down (full speed at the limit);
- normal: the whole device range.
"""

from __future__ import annotations

from dataclasses import dataclass

from heatd.control import roles as R
from heatd.control.bounds import _ENVELOPE_KEY, Bounds, Setpoints
from heatd.control.events import Layer, Limit
from heatd.control.frozen import maker, plain
from heatd.control.params import ControlParams
from heatd.control.validate import Inputs

Sample = tuple[float, float]
"""(time, supply temperature)."""


@dataclass(frozen=True, slots=True)
class EnvelopeState:
    """Two rolling anchors give the rate of rise over one to two windows, at O(1) cost."""

    anchor_old: Sample | None = None
    anchor_new: Sample | None = None
    valve_off_since: float | None = None


@dataclass(frozen=True, slots=True)
class EnvelopeResult:
    bounds: Bounds
    limits: tuple[Limit, ...]
    state: EnvelopeState
    margin: float | None
    """K below the supply limit; None while the supply temperature is unknown."""
    rise: float | None
    """Supply rate of rise, K/s; None until measured over half a window."""


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
        self.cap_valve(0.0, why)
        self.cap_extraction(0.0, why)
        self.block_start(why)
        if self.run:
            self.run, self.run_why = False, why

    def hold(self, prev: Setpoints, why: str) -> None:
        """No more recovery than last cycle, and no less dry cooling."""
        self.floor_fan(prev.fan, why)
        self.cap_valve(prev.valve, why)
        self.cap_extraction(prev.extraction, why)
        self.block_start(why)

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


def _unknown(inputs: Inputs, role: str) -> str:
    return f"{role} unknown ({inputs.invalid.get(role, 'not bound')})"


def envelope(
    inputs: Inputs, prev: Setpoints, state: EnvelopeState, params: ControlParams, now: float
) -> EnvelopeResult:
    """Bounds for this cycle; every unknown cooling input is treated as the worst case."""
    p = plain(params.envelope)
    vals = inputs.values
    acc: _Acc | None = None
    since0 = state.valve_off_since

    supply = vals.get(_SUPPLY)
    rise: float | None = None
    if supply is None:
        state = _new_state(None, None, since0)
        acc = _Acc()
        acc.worst(_unknown(inputs, _SUPPLY))
    else:
        window = p.rise_window_s
        old0, new0 = state.anchor_old, state.anchor_new
        old, new = old0, new0
        if new is None:
            old = new = (now, supply)
        elif now - new[0] >= window:
            old, new = new, (now, supply)
        span = now - old[0]  # type: ignore[index]
        if span >= 0.5 * window:
            rise = (supply - old[1]) / span  # type: ignore[index]
        if old is not old0 or new is not new0:
            state = _new_state(old, new, since0)
        band = p.supply_limit_c - p.supply_margin_k
        rising_fast = (rise is not None and rise > p.max_rise_k_per_s
                       and supply + rise * p.rise_horizon_s >= band)
        if supply >= band or rise is None or rising_fast:
            acc = _Acc()
            if supply >= p.supply_limit_c:
                why = "supply at or above its limit"
                acc.floor_fan(1.0, why)
                acc.hold(prev, why)
            elif supply >= band:
                why = "supply within its margin of the limit"
                acc.floor_fan((supply - band) / p.supply_margin_k, why)
                acc.hold(prev, why)
            if rise is None:
                acc.hold(prev, "supply rate of rise not yet known")
            elif rising_fast:
                acc.hold(prev, "supply rising fast")

    rack = vals.get(_RACK)
    if rack is not None or _RACK in inputs.invalid:
        if rack is None:
            acc = acc or _Acc()
            acc.worst(_unknown(inputs, _RACK))
        elif rack >= p.rack_inlet_limit_c - p.rack_inlet_margin_k:
            acc = acc or _Acc()
            over = rack - (p.rack_inlet_limit_c - p.rack_inlet_margin_k)
            why = "rack inlet near its limit"
            acc.floor_fan(min(1.0, over / p.rack_inlet_margin_k), why)
            acc.hold(prev, why)

    flow_min = p.flow_min
    if flow_min is not None:
        flow = vals.get(_FLOW)
        if flow is None or flow < flow_min:
            acc = acc or _Acc()
            low = "coolant flow below minimum"
            acc.worst(_unknown(inputs, _FLOW) if flow is None else low)

    if vals.get(_FALLBACK, 0.0) > 0.5:
        acc = acc or _Acc()
        acc.worst("plc in local fallback")

    fault = vals.get(_FAULT)
    trip = vals.get(_TRIP, 0.0)
    if fault is None or fault > 0.5 or trip > 0:
        acc = acc or _Acc()
        why = _unknown(inputs, _FAULT) if fault is None else (
            "heat pump trip code set" if trip > 0 else "heat pump fault")
        acc.worst(why)
    elif vals.get(_LOCKOUT, 0.0) > 0.5:
        acc = acc or _Acc()
        acc.cap_valve(0.0, "heat pump locked out")
        acc.cap_extraction(0.0, "heat pump locked out")
        acc.block_start("heat pump locked out")
        if acc.run:
            acc.run, acc.run_why = False, "heat pump locked out"
    if _RUNNING not in vals:
        acc = acc or _Acc()
        acc.block_start(_unknown(inputs, _RUNNING))

    actual = vals.get(_VALVE_ACTUAL)
    since = since0
    if actual is not None and abs(actual - prev.valve) > p.valve_mismatch_tol:
        since = now if since is None else since
        if now - since >= p.valve_mismatch_s:
            acc = acc or _Acc()
            acc.worst("recovery valve not following its setpoint")
    else:
        since = None
    if since != since0:
        state = _new_state(state.anchor_old, state.anchor_new, since)

    margin = None if supply is None else p.supply_limit_c - supply
    if acc is None:
        return _new_result(_NORMAL, (), state, margin, rise)
    return _new_result(
        Bounds(_ENVELOPE_KEY, acc.fan, acc.valve, acc.cap, acc.start, acc.run),
        _limits(acc),
        state,
        margin,
        rise,
    )


_new_state = maker(EnvelopeState)
_new_result = maker(EnvelopeResult)
_SUPPLY = R.COOLANT_SUPPLY_TEMP
_RACK = R.RACK_INLET_TEMP
_FLOW = R.COOLANT_FLOW
_FALLBACK = R.PLC_FALLBACK
_FAULT = R.HP_FAULT
_TRIP = R.HP_TRIP_CODE
_LOCKOUT = R.HP_LOCKOUT
_RUNNING = R.HP_RUNNING
_VALVE_ACTUAL = R.VALVE_RECOVERY_ACTUAL
_NORMAL = Bounds(_ENVELOPE_KEY, 0.0, 1.0, 1.0, True, True)


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
