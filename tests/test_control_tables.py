"""The safety envelope and the heat-pump sequencer as case tables, like a PLC test bench:
each row sets the inputs and the state before, and states the bounds (or the sequencer's
commands) that must come out, with the cause every limit and transition must name."""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import pytest

from heatd.control import roles as R
from heatd.control.bounds import Bounds, device_bounds
from heatd.control.envelope import LAYERS, EnvelopeState, envelope
from heatd.control.events import Cause, Layer, Limit
from heatd.control.params import ControlParams, SequencerParams
from heatd.control.sequencer import HpState, SeqState, protection_wait, sequence
from heatd.control.signals import Snapshot
from heatd.control.validate import ValidationState, validate

C = Cause
NOW = 1000.0
P = ControlParams()
CAP_MIN = P.sequencer.capacity_min
FLOW_MIN = ControlParams.model_validate({"envelope": {"flow_min": 5.0}})
RIDE = ControlParams.model_validate({"envelope": {"blind_rise_k_per_s": 0.01}})
PREV = device_bounds().admit(0.6, 0.3, True, 0.5, False, True, CAP_MIN)
"""Last cycle's outputs: valve 0.6 to recovery, fans at 0.3, heat pump on at 0.5."""
SETTLED = EnvelopeState((NOW - 60.0, 38.0), (NOW - 1.0, 38.0))
"""A supply steady at 38 degC for the last minute: its rate of rise is known and flat."""

# --- envelope ---------------------------------------------------------------------------

Expect = tuple[float, float, float, bool, bool]
"""(fan_min, valve_max, cap_max, hp_start, hp_run)"""
FULL: Expect = (0.0, 1.0, 1.0, True, True)
WORST: Expect = (1.0, 0.0, 0.0, False, False)
HP_OUT: Expect = (0.0, 0.0, 0.0, False, False)
HELD: Expect = (0.3, 0.6, 1.0, True, True)
"""No more recovery share than last cycle, no less dry cooling."""


class EnvCase(NamedTuple):
    inputs: dict[str, object]
    bounds: Expect
    causes: dict[str, Cause]
    """Limit name -> the cause it must name."""
    state: EnvelopeState = SETTLED
    params: ControlParams = P


def on_all(cause: Cause, *names: str) -> dict[str, Cause]:
    return dict.fromkeys(names or ("fan_min", "valve_max", "hp_capacity_max", "hp_start",
                                   "hp_run"), cause)


RECOVERY = ("valve_max", "hp_capacity_max", "hp_start", "hp_run")
DRY = ("fan_min", "valve_max")
STUCK_OPEN: Expect = (1.0, 0.0, 1.0, True, True)
"""Fans full and the valve asked to close; the heat pump free: the cooling it still gives."""

ENVELOPE_CASES = {
    "normal": EnvCase({}, FULL, {}),
    "supply unknown": EnvCase({R.COOLANT_SUPPLY_TEMP: None}, WORST, on_all(C.INPUT_UNKNOWN)),
    "supply mid-band": EnvCase({R.COOLANT_SUPPLY_TEMP: 43.5}, (0.5, 0.5, 1.0, True, True),
                               on_all(C.SUPPLY_IN_BAND, "fan_min", "valve_max")),
    "supply at limit": EnvCase({R.COOLANT_SUPPLY_TEMP: 45.0}, (1.0, 0.0, CAP_MIN, False, True),
                               on_all(C.SUPPLY_AT_LIMIT, "fan_min", "valve_max",
                                      "hp_capacity_max", "hp_start")),
    "rise not yet known": EnvCase({}, HELD, on_all(C.RISE_UNKNOWN, "fan_min", "valve_max"),
                                  state=EnvelopeState()),
    "rising fast": EnvCase({R.COOLANT_SUPPLY_TEMP: 39.0}, HELD,
                           on_all(C.RISING_FAST, "fan_min", "valve_max"),
                           state=EnvelopeState((NOW - 60.0, 36.0), (NOW - 10.0, 38.0))),
    "rack near limit": EnvCase({R.RACK_INLET_TEMP: [22.0, 25.5]}, HELD,
                               on_all(C.RACK_NEAR_LIMIT, "fan_min", "valve_max")),
    "rack over limit": EnvCase({R.RACK_INLET_TEMP: [22.0, 27.5]}, (1.0, 0.6, 1.0, True, True),
                               on_all(C.RACK_NEAR_LIMIT, "fan_min", "valve_max")),
    "rack unwatched": EnvCase({R.RACK_INLET_TEMP: [22.0, None]}, FULL, {}),
    "racks unwatched": EnvCase({R.RACK_INLET_TEMP: [None, None]}, WORST,
                               on_all(C.INPUT_UNKNOWN)),
    "rack unwatched, supply lost": EnvCase(
        {R.RACK_INLET_TEMP: [22.0, None], R.COOLANT_SUPPLY_TEMP: None}, WORST,
        on_all(C.INPUT_UNKNOWN)),
    "flow low": EnvCase({R.COOLANT_FLOW: 2.0}, WORST, on_all(C.FLOW_LOW), params=FLOW_MIN),
    "flow unknown": EnvCase({}, WORST, on_all(C.INPUT_UNKNOWN), params=FLOW_MIN),
    "flow unknown, no minimum": EnvCase({}, FULL, {}),
    "plc fallback": EnvCase({R.PLC_FALLBACK: 1.0}, WORST, on_all(C.PLC_FALLBACK)),
    "hp fault": EnvCase({R.HP_FAULT: 1.0}, HP_OUT, on_all(C.HP_FAULT, *RECOVERY)),
    "hp trip code": EnvCase({R.HP_TRIP_CODE: 12.0}, HP_OUT, on_all(C.HP_TRIP_CODE, *RECOVERY)),
    "hp trip code, fault unknown": EnvCase({R.HP_TRIP_CODE: 12.0, R.HP_FAULT: None}, HP_OUT,
                                           on_all(C.HP_TRIP_CODE, *RECOVERY)),
    "hp lockout": EnvCase({R.HP_LOCKOUT: 1.0}, HP_OUT, on_all(C.HP_LOCKOUT, *RECOVERY)),
    "hp out of contact": EnvCase({R.HP_FAULT: None}, (0.0, 0.6, 1.0, False, True),
                                 on_all(C.HP_OUT_OF_CONTACT, "valve_max", "hp_start")),
    "hp running unknown": EnvCase({R.HP_RUNNING: None}, (0.0, 1.0, 1.0, False, True),
                                  {"hp_start": C.INPUT_UNKNOWN}),
    "valve not following": EnvCase(
        {R.VALVE_RECOVERY_ACTUAL: 0.1}, WORST, on_all(C.VALVE_NOT_FOLLOWING),
        state=EnvelopeState(SETTLED.anchor_old, SETTLED.anchor_new, valve_off_since=NOW - 361)),
    "valve still on its way": EnvCase(
        {R.VALVE_RECOVERY_ACTUAL: 0.1}, FULL, {},
        state=EnvelopeState(SETTLED.anchor_old, SETTLED.anchor_new, valve_off_since=NOW - 359)),
    # A valve declared with flow through the evaporator cannot close the recovery branch:
    # the heat pump is that flow's cooling and keeps its permission to run and start.
    "valve stuck on recovery": EnvCase(
        {R.VALVE_RECOVERY_ACTUAL: 0.9}, STUCK_OPEN, on_all(C.VALVE_NOT_FOLLOWING, *DRY),
        state=replace(SETTLED, valve_off_since=NOW - 361)),
    "valve stuck on recovery, supply unknown": EnvCase(
        {R.VALVE_RECOVERY_ACTUAL: 0.9, R.COOLANT_SUPPLY_TEMP: None}, STUCK_OPEN,
        on_all(C.INPUT_UNKNOWN, *DRY), state=replace(SETTLED, valve_off_since=NOW - 361)),
    "valve stuck on recovery, supply at limit": EnvCase(
        {R.VALVE_RECOVERY_ACTUAL: 0.9, R.COOLANT_SUPPLY_TEMP: 45.0}, STUCK_OPEN,
        on_all(C.SUPPLY_AT_LIMIT, *DRY), state=replace(SETTLED, valve_off_since=NOW - 361)),
    "valve stuck on recovery, hp fault": EnvCase(
        {R.VALVE_RECOVERY_ACTUAL: 0.9, R.HP_FAULT: 1.0}, STUCK_OPEN,
        {"fan_min": C.VALVE_NOT_FOLLOWING, "valve_max": C.HP_FAULT},
        state=replace(SETTLED, valve_off_since=NOW - 361)),
    "valve stuck while its command moves away": EnvCase(
        {R.VALVE_RECOVERY_ACTUAL: 0.3}, STUCK_OPEN, on_all(C.VALVE_NOT_FOLLOWING, *DRY),
        state=replace(SETTLED, valve_off_since=NOW - 361, valve_from=(0.25, 1.0))),
    "valve feedback lost while declared": EnvCase(
        {R.VALVE_RECOVERY_ACTUAL: None}, STUCK_OPEN, on_all(C.VALVE_NOT_FOLLOWING, *DRY),
        state=replace(SETTLED, alarms=(R.VALVE_RECOVERY,))),
    "supply at limit, valve still passing flow": EnvCase(
        {R.COOLANT_SUPPLY_TEMP: 45.0, R.VALVE_RECOVERY_ACTUAL: 0.6}, STUCK_OPEN,
        on_all(C.SUPPLY_AT_LIMIT, *DRY)),
    "slow valve on its way": EnvCase(
        {R.VALVE_RECOVERY_ACTUAL: 0.3}, FULL, {},
        state=replace(SETTLED, valve_off_since=NOW - 361, valve_from=(0.1, 1.0))),
    "valve following again, alarm held": EnvCase(
        {R.VALVE_RECOVERY_ACTUAL: 0.6}, HP_OUT, on_all(C.VALVE_NOT_FOLLOWING, *RECOVERY),
        state=replace(SETTLED, alarms=(R.VALVE_RECOVERY,), valve_ok_since=NOW - 3599)),
    "valve followed long enough": EnvCase(
        {R.VALVE_RECOVERY_ACTUAL: 0.6}, FULL, {},
        state=replace(SETTLED, alarms=(R.VALVE_RECOVERY,), valve_ok_since=NOW - 3600)),
    "fan not following": EnvCase(
        {R.DRYCOOLER_FAN_ACTUAL: 0.9}, (1.0, 1.0, 1.0, True, True),
        {"fan_min": C.FAN_NOT_FOLLOWING},
        state=EnvelopeState(SETTLED.anchor_old, SETTLED.anchor_new, fan_off_since=NOW - 61)),
    "capacity not following": EnvCase(
        {R.HP_RUNNING: 1.0, R.HP_CAPACITY_ACTUAL: 0.0}, (0.0, 0.6, 1.0, False, True),
        on_all(C.CAPACITY_NOT_FOLLOWING, "valve_max", "hp_start"),
        state=EnvelopeState(SETTLED.anchor_old, SETTLED.anchor_new, cap_off_since=NOW - 301)),
    "supply lost, ridden through": EnvCase(
        {R.COOLANT_SUPPLY_TEMP: None}, (0.3, 0.6, 1.0, False, True),
        on_all(C.INPUT_LOST_HELD, "fan_min", "valve_max", "hp_start"),
        state=EnvelopeState(supply_seen=(NOW - 100.0, 30.0), it_seen=100.0), params=RIDE),
    "supply lost past its rise": EnvCase(
        {R.COOLANT_SUPPLY_TEMP: None}, WORST, on_all(C.INPUT_UNKNOWN),
        state=EnvelopeState(supply_seen=(NOW - 800.0, 35.0), it_seen=100.0), params=RIDE),
    # Two layers on one bound: the tightest value wins; on a tie the earlier layer is named.
    "supply unknown and plc fallback": EnvCase(
        {R.COOLANT_SUPPLY_TEMP: None, R.PLC_FALLBACK: 1.0}, WORST, on_all(C.INPUT_UNKNOWN)),
    "band and hp fault": EnvCase(
        {R.COOLANT_SUPPLY_TEMP: 43.5, R.HP_FAULT: 1.0}, (0.5, 0.0, 0.0, False, False),
        {"fan_min": C.SUPPLY_IN_BAND, **on_all(C.HP_FAULT, *RECOVERY)}),
}


def healthy(**over: object) -> Snapshot:
    """A site at rest: supply 38 degC, heat pump on and healthy, everything else fine."""
    values: dict[str, object] = {
        R.COOLANT_SUPPLY_TEMP: 38.0, R.RACK_INLET_TEMP: [22.0, 23.0], R.HP_RUNNING: 0.0,
        R.HP_FAULT: 0.0, R.HP_TRIP_CODE: 0.0, R.IT_POWER: 100.0,
    }  # fmt: skip
    values.update(over)
    return Snapshot.from_values(NOW, values)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", ENVELOPE_CASES.values(), ids=ENVELOPE_CASES.keys())
def test_envelope_layer(case: EnvCase) -> None:
    inputs, _ = validate(healthy(**case.inputs), ValidationState(), case.params, NOW)
    r = envelope(inputs, PREV, case.state, case.params, NOW)
    b = r.bounds
    assert (b.fan_min, b.valve_max, b.cap_max, b.hp_start, b.hp_run) == pytest.approx(case.bounds)
    assert {x.name: x.cause for x in r.limits} == case.causes
    assert all(x.layer is Layer.ENVELOPE for x in r.limits)
    assert r.stop == next((x for x in r.limits if x.name == "hp_run"), None)


ENVELOPE_CAUSES = {
    C.INPUT_UNKNOWN, C.INPUT_LOST_HELD, C.SUPPLY_IN_BAND, C.SUPPLY_AT_LIMIT, C.RISE_UNKNOWN,
    C.RISING_FAST, C.RACK_NEAR_LIMIT, C.FLOW_LOW, C.PLC_FALLBACK, C.HP_TRIP_CODE, C.HP_FAULT,
    C.HP_LOCKOUT, C.HP_OUT_OF_CONTACT, C.VALVE_NOT_FOLLOWING, C.FAN_NOT_FOLLOWING,
    C.CAPACITY_NOT_FOLLOWING,
}  # fmt: skip


def test_every_envelope_cause_has_a_row() -> None:
    """A new layer, or a new way for one to act, gets its own row in the table above."""
    named = {cause for case in ENVELOPE_CASES.values() for cause in case.causes.values()}
    assert named == ENVELOPE_CAUSES
    assert all(layer.__doc__ for layer in LAYERS)


def test_an_unknown_input_names_its_role_and_verdict() -> None:
    inputs, _ = validate(healthy(**{R.RACK_INLET_TEMP: [None, None]}), ValidationState(), P, NOW)
    (fan, *_) = envelope(inputs, PREV, SETTLED, P, NOW).limits
    assert (fan.cause, fan.role, fan.verdict) == (C.INPUT_UNKNOWN, R.RACK_INLET_TEMP,
                                                  "point 0: no value; point 1: no value")


# --- heat-pump sequencer ----------------------------------------------------------------

SP = SequencerParams()  # min on 600 s, min off 300 s, 3 starts an hour, 2 resets an hour
ANY = device_bounds()
NO_START = ANY.tighten(hp_start=False)
NO_RUN = ANY.tighten(hp_run=False)
STOP = Limit("hp_run", False, Layer.ENVELOPE, C.PLC_FALLBACK, "plc in local fallback")


def st(state: HpState, since: float = 0.0, *, on: float | None = None,
       off: float | None = None, starts: tuple[float, ...] = (), resets: tuple[float, ...] = (),
       reset_until: float = float("-inf"), next_reset: float = float("-inf")) -> SeqState:
    return SeqState(state, since, on, off, starts, resets, reset_until, next_reset)


def hp(running: float | None = 0.0, **flags: float | None) -> dict[str, float]:
    """What the heat pump reports; a flag set to None is not reported at all."""
    values: dict[str, float | None] = {R.HP_RUNNING: running, R.HP_FAULT: 0.0}
    values.update({k.replace("__", "."): v for k, v in flags.items()})
    return {k: v for k, v in values.items() if v is not None}


class SeqCase(NamedTuple):
    before: SeqState
    want: bool
    seen: dict[str, float]
    enable: bool
    reset: bool
    after: HpState
    events: tuple[Cause, ...] = ()
    limits: tuple[Cause, ...] = ()
    bounds: Bounds = ANY
    operator_reset: bool = False


OFF, STARTING, RUNNING = HpState.OFF, HpState.STARTING, HpState.RUNNING
STOPPING, TRIPPED, LOCKED_OUT = HpState.STOPPING, HpState.TRIPPED, HpState.LOCKED_OUT
ON_LONG = st(RUNNING, 100.0, on=100.0)
ON_SHORT = st(RUNNING, 900.0, on=900.0)
"""Running since 100 s before NOW: inside its 600 s minimum on time."""
FAULT = {"hp__fault": 1.0}

SEQUENCER_CASES = {
    # off
    "off, not wanted": SeqCase(st(OFF, off=0.0), False, hp(), False, False, OFF),
    "off, wanted: start": SeqCase(st(OFF, off=0.0), True, hp(), True, False, STARTING,
                                  (C.HEAT_WANTED,)),
    "off, wanted, min off time": SeqCase(st(OFF, 900.0, off=900.0), True, hp(), False, False,
                                         OFF, limits=(C.MIN_OFF_TIME,)),
    "off, wanted, starts used": SeqCase(st(OFF, off=0.0, starts=(100.0, 200.0, 300.0)), True,
                                        hp(), False, False, OFF, limits=(C.STARTS_USED,)),
    "off, wanted, own timer": SeqCase(st(OFF, off=0.0), True, hp(hp__min_off_active=1.0),
                                      False, False, OFF, limits=(C.HP_OWN_MIN_OFF,)),
    "off, wanted, envelope forbids": SeqCase(st(OFF, off=0.0), True, hp(), False, False, OFF,
                                             bounds=NO_START),
    # starting
    "starting, confirmed": SeqCase(st(STARTING, 990.0, on=990.0), True, hp(1.0), True, False,
                                   RUNNING, (C.RUNNING_CONFIRMED,)),
    "starting, waiting": SeqCase(st(STARTING, 990.0, on=990.0), True, hp(), True, False,
                                 STARTING),
    "starting, timed out": SeqCase(st(STARTING, 870.0, on=870.0), True, hp(), False, False,
                                   TRIPPED, (C.START_TIMEOUT,)),
    "starting, own timer": SeqCase(st(STARTING, 990.0, on=990.0, starts=(990.0,)), True,
                                   hp(hp__min_off_active=1.0), False, False, OFF,
                                   (C.HP_OWN_MIN_OFF,)),
    # running
    "running, wanted": SeqCase(ON_LONG, True, hp(1.0), True, False, RUNNING),
    "running, out of contact": SeqCase(ON_LONG, True, hp(None, hp__fault=None), True, False,
                                       RUNNING),
    "running, min on time": SeqCase(ON_SHORT, False, hp(1.0), True, False, RUNNING,
                                    limits=(C.MIN_ON_TIME,)),
    "running, not wanted: stop": SeqCase(ON_LONG, False, hp(1.0), False, False, STOPPING,
                                         (C.NO_HEAT_WANTED,)),
    "running, safety stop": SeqCase(ON_SHORT, True, hp(1.0), False, False, STOPPING,
                                    (C.PLC_FALLBACK,), bounds=NO_RUN),
    "running, feedback lost": SeqCase(ON_LONG, True, hp(0.0), True, False, STARTING,
                                      (C.RUNNING_LOST,)),
    "running, fault": SeqCase(ON_SHORT, True, hp(1.0, **FAULT), False, False, TRIPPED,
                              (C.HP_FAULT,)),
    "running, trip code": SeqCase(ON_SHORT, True, hp(1.0, hp__trip_code=7.0), False, False,
                                  TRIPPED, (C.HP_TRIP_CODE,)),
    "running, lockout": SeqCase(ON_SHORT, True, hp(1.0, hp__lockout=1.0), False, False,
                                LOCKED_OUT, (C.HP_LOCKOUT,)),
    # stopping
    "stopping, confirmed": SeqCase(st(STOPPING, 990.0, off=990.0), False, hp(), False, False,
                                   OFF, (C.STOP_CONFIRMED,)),
    "stopping, timed out": SeqCase(st(STOPPING, 870.0, off=870.0), False, hp(1.0), False,
                                   False, OFF, (C.STOP_TIMEOUT,)),
    # tripped
    "tripped, cooling down": SeqCase(st(TRIPPED, 900.0, next_reset=1500.0), True, hp(**FAULT),
                                     False, False, TRIPPED),
    "tripped, automatic reset": SeqCase(st(TRIPPED, 300.0, next_reset=900.0), True,
                                        hp(**FAULT), False, True, TRIPPED, (C.AUTO_RESET,)),
    "tripped, reset pulse on": SeqCase(st(TRIPPED, 300.0, reset_until=1001.0), True, hp(),
                                       False, True, TRIPPED),
    "tripped, reset succeeded": SeqCase(st(TRIPPED, 300.0, reset_until=999.0), True, hp(),
                                        False, False, OFF, (C.RESET_SUCCEEDED,)),
    "tripped, resets used": SeqCase(st(TRIPPED, 300.0, resets=(200.0, 500.0)), True,
                                    hp(**FAULT), False, False, LOCKED_OUT, (C.RESETS_USED,)),
    # locked out
    "locked out, waiting": SeqCase(st(LOCKED_OUT, 500.0), True, hp(), False, False,
                                   LOCKED_OUT),
    "locked out, operator reset": SeqCase(st(LOCKED_OUT, 500.0), True, hp(), False, True,
                                          LOCKED_OUT, (C.OPERATOR_RESET,),
                                          operator_reset=True),
    "locked out, reset cleared it": SeqCase(st(LOCKED_OUT, 500.0, reset_until=999.0), True,
                                            hp(), False, False, OFF, (C.OPERATOR_RESET,)),
    "locked out, reset did not": SeqCase(st(LOCKED_OUT, 500.0, reset_until=999.0), True,
                                         hp(**FAULT), False, False, LOCKED_OUT,
                                         (C.RESET_FAILED,)),
}


@pytest.mark.parametrize("case", SEQUENCER_CASES.values(), ids=SEQUENCER_CASES.keys())
def test_sequencer_step(case: SeqCase) -> None:
    out = sequence(case.want, Layer.OPTIMISER, case.bounds, case.seen, case.before, SP, NOW,
                   case.operator_reset, STOP if not case.bounds.hp_run else None)
    assert (out.enable, out.reset, out.state.state) == (case.enable, case.reset, case.after)
    assert tuple(e.cause for e in out.events) == case.events
    assert tuple(x.cause for x in out.limits) == case.limits


WAIT_CASES = {
    "stop inside the minimum on time": (ON_SHORT, False, 500.0, C.MIN_ON_TIME),
    "stop after it": (ON_LONG, False, None, None),
    "start inside the minimum off time": (st(OFF, 900.0, off=900.0), True, 200.0,
                                          C.MIN_OFF_TIME),
    "start with the starts used": (st(OFF, 0.0, off=0.0, starts=(200.0, 300.0, 400.0)), True,
                                   2800.0, C.STARTS_USED),
    "start with both: the longer": (st(OFF, 900.0, off=900.0, starts=(-2500.0, 0.0, 10.0)),
                                    True, 200.0, C.MIN_OFF_TIME),
    "start with both: the starts": (st(OFF, 900.0, off=900.0, starts=(0.0, 10.0, 20.0)),
                                    True, 2600.0, C.STARTS_USED),
    "start when free": (st(OFF, 0.0, off=0.0), True, None, None),
}


@pytest.mark.parametrize("case", WAIT_CASES.values(), ids=WAIT_CASES.keys())
def test_protection_wait_is_when_the_sequencer_switches(case: tuple) -> None:
    """The wait an operator's lease is told of is the sequencer's own: one cycle before it
    ends the heat pump is held, at its end it switches."""
    before, run, seconds, cause = case
    wait = protection_wait(before, run, SP, NOW)
    assert (None if wait is None else (round(wait.seconds, 6), wait.cause)) == (
        None if seconds is None else (seconds, cause))
    seen = hp(1.0 if before.enabled else 0.0)
    at = NOW + (0.0 if wait is None else wait.seconds)
    if wait is not None:
        held = sequence(run, Layer.OPERATOR, ANY, seen, before, SP, at - 0.1)
        assert held.enable is before.enabled
    switched = sequence(run, Layer.OPERATOR, ANY, seen, before, SP, at)
    assert switched.enable is run


def test_a_safety_stop_names_the_limit_that_forbids_running() -> None:
    out = sequence(True, Layer.OPTIMISER, NO_RUN, hp(1.0), ON_SHORT, SP, NOW, False, STOP)
    (stop,) = out.events
    assert (stop.layer, stop.cause, stop.new) == (Layer.ENVELOPE, C.PLC_FALLBACK, "stopping")
    assert stop.reason == "safety stop: plc in local fallback"

