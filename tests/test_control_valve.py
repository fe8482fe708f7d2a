"""The recovery valve as the control core sees it through its feedback: a seized valve is
an alarm that keeps whatever cooling the valve still allows (with the valve stuck on the
recovery side, that is the heat pump), a slow valve on its way is no alarm, and a valve
that sticks now and then cannot cycle the compressor with its alarm."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from heatd.control import roles as R
from heatd.control.commands import set_mode
from heatd.control.core import Decision, step
from heatd.control.events import Cause, Event, Layer
from heatd.control.params import ControlParams
from heatd.control.signals import Snapshot
from heatd.control.state import Mode, State, initial_state

P = ControlParams.model_validate({"validation": {"frozen_after_s": None}})
"""The defaults; the readings here are scripted, and would be judged frozen."""
ENV, SEQ, OPT = P.envelope, P.sequencer, P.optimiser
DT = 2.0

Valve = Callable[[float, float, float], float]
"""(now, position, command) -> the position after one step."""


def moving(stroke_s: float, dead_s: float = 0.0) -> Valve:
    """A working valve: full stroke in ``stroke_s``, answering a command ``dead_s`` late."""
    queue: list[tuple[float, float]] = []

    def move(now: float, position: float, command: float) -> float:
        queue.append((now, command))
        while len(queue) > 1 and queue[1][0] <= now - dead_s:
            queue.pop(0)
        most = DT / stroke_s
        return position + max(-most, min(most, queue[0][1] - position))

    return move


def seized(when: Callable[[float], bool], working: Valve) -> Valve:
    """``working``, except that it does not move while ``when(now)``."""
    return lambda now, position, command: position if when(now) else working(now, position,
                                                                              command)


def breakaway(stick_s: float, working: Valve) -> Valve:
    """``working``, except that it moves only once its command has been off its position
    for ``stick_s`` (a valve that sticks at each start of a move), every time."""
    off_since: list[float | None] = [None]

    def move(now: float, position: float, command: float) -> float:
        if abs(command - position) < 1e-9:
            off_since[0] = None
        elif off_since[0] is None:
            off_since[0] = now
        since = off_since[0]
        return working(now, position, command) if since is None or now - since >= stick_s \
            else position

    return move


@dataclass
class Run:
    decisions: list[Decision[State]] = field(default_factory=list)
    positions: list[float] = field(default_factory=list)

    @property
    def events(self) -> list[Event]:
        return [e for d in self.decisions for e in d.events]

    def starts(self) -> list[float]:
        return [e.ts for e in self.events if e.kind == "hp_state" and e.new == "starting"]

    def stops(self) -> list[Event]:
        return [e for e in self.events if e.kind == "hp_state" and e.new == "stopping"]


def drive(seconds: float, valve: Valve, supply: Callable[[float], float],
          demand: float = 80.0, position: float = 0.0, running: bool = False,
          params: ControlParams = P,
          command: tuple[float, Callable[[State, float], State]] | None = None) -> Run:
    """The core against a site whose heat pump does as it is told, whose supply follows
    ``supply`` and whose valve feedback comes from ``valve``; ``command`` is an operator's,
    given at its time."""
    state = initial_state(0.0)
    out = Run()
    now = 0.0
    for _ in range(int(seconds / DT)):
        now += DT
        if command is not None and command[0] <= now:
            state, command = command[1](state, now), None
        values = {
            R.COOLANT_SUPPLY_TEMP: supply(now), R.COOLANT_RETURN_TEMP: supply(now) + 6.0,
            R.RACK_INLET_TEMP: [22.0], R.IT_POWER: 100.0, R.DH_DEMAND: demand,
            R.HP_RUNNING: float(running), R.HP_FAULT: 0.0, R.HP_TRIP_CODE: 0.0,
            R.VALVE_RECOVERY_ACTUAL: position, R.DRYCOOLER_FAN_ACTUAL: state.setpoints.fan,
        }  # fmt: skip
        d = step(Snapshot.from_values(now, values), state, params, now)  # type: ignore[arg-type]
        state, running = d.state, d.setpoints.hp_enable
        position = valve(now, position, d.setpoints.valve)
        out.decisions.append(d)
        out.positions.append(position)
    return out


def _seized_after(t0: float) -> Valve:
    return seized(lambda now: now >= t0, moving(90.0))


def test_a_valve_seized_on_recovery_keeps_the_heat_pump_as_the_cooling() -> None:
    """The heat pump runs with the valve fully on recovery; the valve seizes there and the
    supply climbs over its setpoint: the heat pump keeps running and its capacity takes
    the cooling demand, the valve is still asked to close and the fans run full, and the
    alarm names the valve."""
    t0 = 1800.0
    r = drive(4 * 3600.0, _seized_after(t0),
              lambda now: 38.0 if now < t0 else min(38.0 + (now - t0) * 0.002, 41.5))
    assert r.positions[int(t0 / DT)] == 1.0
    (alarm,) = [e for e in r.events if e.kind == "actuator"]
    assert (alarm.subject, alarm.new, alarm.cause) == (
        R.VALVE_RECOVERY, "not following", Cause.VALVE_NOT_FOLLOWING)
    assert r.stops() == [] and len(r.starts()) == 1
    after = [d for d in r.decisions if d.state.last_now and d.state.last_now >= alarm.ts]
    assert all(d.setpoints.hp_enable for d in after)
    assert all(d.setpoints.fan == 1.0 and d.setpoints.valve == 0.0 for d in after[30:])
    assert r.decisions[-1].setpoints.hp_capacity == SEQ.capacity_max
    assert {(x.name, x.cause, x.verdict) for x in after[-1].limits} == {
        ("fan_min", Cause.VALVE_NOT_FOLLOWING, "recovery flow"),
        ("valve_max", Cause.VALVE_NOT_FOLLOWING, "recovery flow")}


def test_safe_mode_keeps_the_heat_pump_behind_a_valve_stuck_on_recovery() -> None:
    """The operator's safe state is the worst case: with the valve stuck with flow through
    the evaporator, it keeps the heat pump too."""
    t0 = 1800.0
    r = drive(2 * 3600.0, _seized_after(t0), lambda now: 38.0 if now < t0 else 41.5,
              command=(t0 + 1200.0, lambda state, now: set_mode(state, Mode.SAFE, now)))
    assert r.decisions[-1].mode == Mode.SAFE
    assert r.stops() == [] and r.decisions[-1].setpoints.hp_enable
    assert (r.decisions[-1].setpoints.fan, r.decisions[-1].setpoints.valve) == (1.0, 0.0)


def test_a_stopped_heat_pump_behind_a_valve_stuck_on_recovery_is_started_for_cooling() -> None:
    """No heat is wanted, the heat pump is off and the valve, found on the recovery side,
    does not move: with the supply above its setpoint the heat pump is the only cooling
    and is started for it, by the envelope."""
    r = drive(1800.0, seized(lambda now: True, moving(90.0)), lambda now: 41.0,
              demand=0.0, position=1.0)
    starts = [e for e in r.events if e.kind == "hp_state" and e.new == "starting"]
    assert len(starts) == 1 and starts[0].layer is Layer.ENVELOPE
    assert starts[0].ts >= ENV.valve_mismatch_s
    assert r.decisions[-1].setpoints.hp_enable and r.stops() == []


def test_a_valve_seized_on_the_dry_cooler_side_closes_recovery() -> None:
    """A valve stuck with no flow through the evaporator leaves the heat pump nothing to
    cool: the worst case as before, the heat pump stopped."""
    r = drive(3600.0, seized(lambda now: True, moving(90.0)), lambda now: 38.0)
    assert r.decisions[-1].setpoints.valve == 0.0 and not r.decisions[-1].setpoints.hp_enable
    (stop,) = r.stops()
    assert stop.cause is Cause.VALVE_NOT_FOLLOWING


def test_a_slow_valve_on_its_way_is_no_alarm_and_costs_no_start() -> None:
    """A working valve with a 600 s stroke and 30 s dead time lags the command by more
    than the tolerance for longer than ``valve_mismatch_s``, but keeps moving toward it."""
    r = drive(4 * 3600.0, moving(600.0, 30.0), lambda now: 38.0)
    assert [e for e in r.events if e.kind == "actuator"] == []
    assert len(r.starts()) == 1 and r.stops() == []
    assert r.positions[-1] == 1.0


def test_a_valve_that_sticks_now_and_then_cannot_cycle_the_compressor() -> None:
    """A valve that sticks for 400 s at the start of every move: each start meets it stuck
    on the dry-cooler side on its way to recovery. Its alarm holds until the valve has
    followed for ``valve_clear_s``, so the heat pump starts about once per that, where an
    alarm cleared as soon as the valve followed would start it at the limit of the starts
    per hour, each run cut inside its minimum on time."""
    def sticky() -> Valve:
        return breakaway(400.0, moving(90.0))

    r = drive(4 * 3600.0, sticky(), lambda now: 38.0)
    starts = r.starts()
    assert len(starts) <= 1 + 4 * 3600.0 / ENV.valve_clear_s
    assert all(b - a >= ENV.valve_clear_s for a, b in pairwise(starts))
    unlatched = P.model_copy(update={"envelope": ENV.model_copy(update={"valve_clear_s": 1.0})})
    cycling = drive(4 * 3600.0, sticky(), lambda now: 38.0, params=unlatched).starts()
    assert len(cycling) >= len(starts) + 4  # what the latch saves


FAST = P.model_copy(update={
    "envelope": ENV.model_copy(update={"valve_mismatch_s": 20.0}),
    "optimiser": OPT.model_copy(update={"start_delay_s": 0.0}),
})
UPSETS: dict[str, dict[str, object]] = {
    "supply unknown": {R.COOLANT_SUPPLY_TEMP: None},
    "supply in band": {R.COOLANT_SUPPLY_TEMP: 43.5},
    "supply at limit": {R.COOLANT_SUPPLY_TEMP: 45.0},
    "supply over limit": {R.COOLANT_SUPPLY_TEMP: 50.0},
    "rack unknown": {R.RACK_INLET_TEMP: [None]},
    "rack near limit": {R.RACK_INLET_TEMP: [26.5]},
    "plc fallback": {R.PLC_FALLBACK: 1.0},
    "valve feedback lost": {R.VALVE_RECOVERY_ACTUAL: None},
    "no heat wanted": {R.DH_DEMAND: 0.0},
}
"""Whatever may go wrong besides the valve, the heat pump itself left healthy."""


@settings(max_examples=40, deadline=None)
@given(
    position=st.floats(0.2, 1.0),
    upsets=st.lists(st.lists(st.sampled_from(sorted(UPSETS)), max_size=3), min_size=1,
                    max_size=30),
    dt=st.sampled_from([0.5, 2.0, 10.0]),
)
def test_whatever_else_goes_wrong_a_valve_stuck_on_recovery_keeps_the_heat_pump_on(
        position: float, upsets: list[list[str]], dt: float) -> None:
    """A running heat pump behind a valve seized with flow through its evaporator is never
    stopped by the envelope: once the valve is declared the fans run full, the valve is
    asked to close, and the heat pump runs on, whatever else goes wrong meanwhile."""
    state, now, running, feedback = initial_state(0.0), 0.0, False, 0.0
    healthy: dict[str, object] = {
        R.COOLANT_SUPPLY_TEMP: 38.0, R.COOLANT_RETURN_TEMP: 44.0, R.RACK_INLET_TEMP: [22.0],
        R.IT_POWER: 100.0, R.DH_DEMAND: 80.0, R.HP_FAULT: 0.0, R.HP_TRIP_CODE: 0.0,
        R.PLC_FALLBACK: 0.0,
    }  # fmt: skip

    def once(values: dict[str, object], dt: float = 2.0) -> Decision[State]:
        nonlocal state, now, running
        now += dt
        snap = Snapshot.from_values(now, {**values, R.HP_RUNNING: float(running)})  # type: ignore[arg-type]
        d = step(snap, state, FAST, now)
        state, running = d.state, d.setpoints.hp_enable
        return d

    while now < 600.0:  # started, the valve following it onto recovery
        d = once({**healthy, R.VALVE_RECOVERY_ACTUAL: feedback})
        feedback = d.setpoints.valve
    assert running and feedback > 0.9
    # at the limit, the return over the evaporator's limit (so the heat pump is no cooling
    # path the valve is left open for), the valve is asked to close: it does not
    seized = {**healthy, R.VALVE_RECOVERY_ACTUAL: position, R.COOLANT_SUPPLY_TEMP: 45.0,
              R.COOLANT_RETURN_TEMP: 51.0}
    while R.VALVE_RECOVERY not in state.env.alarms:
        assert now < 600.0 + 10 * FAST.envelope.valve_mismatch_s
        once(seized)
    for names in upsets:
        values = {**seized, R.COOLANT_SUPPLY_TEMP: 41.0}
        for name in names:
            values.update(UPSETS[name])
        d = once(values, dt)
        assert d.setpoints.hp_enable, f"heat pump stopped: {names}"
        assert (d.setpoints.fan, d.setpoints.valve) == (1.0, 0.0), names
        assert d.bounds.hp_run and d.bounds.cap_max == 1.0, names
