"""Property tests: cooling priority and heat-pump protection hold for any input sequence.

Random sequences of snapshots (bad, stale, NaN, out-of-range and missing points included,
random time steps, random heat-pump feedback and faults, random operator commands) drive
the real control core. An independent oracle reads the raw snapshot to decide when the
cooling guarantee must bite; the decisions are then checked against the one before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from heatd.control import (
    ControlParams,
    Decision,
    Mode,
    Signal,
    Snapshot,
    State,
    initial_state,
    reset_heat_pump,
    set_mode,
    set_override,
    step,
)
from heatd.control import roles as R

PARAMS = ControlParams.model_validate(
    {
        "validation": {"stale_after_s": 10.0, "frozen_after_s": None},
        "envelope": {"rise_window_s": 10.0, "valve_mismatch_s": 5.0},
        "sequencer": {
            "min_on_s": 20.0, "min_off_s": 10.0, "max_starts_per_hour": 2,
            "starts_window_s": 100.0, "start_timeout_s": 8.0, "stop_timeout_s": 8.0,
            "reset_cooldown_s": 5.0, "resets_window_s": 60.0, "reset_pulse_s": 1.0,
        },
        "optimiser": {"start_delay_s": 0.0, "stop_delay_s": 0.0},
    }
)  # fmt: skip
LIMIT = PARAMS.envelope.supply_limit_c
SEQ = PARAMS.sequencer

value = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.0, max_value=1.0),
)
rare_bad = st.sampled_from([1.0, None])


def mostly(common: st.SearchStrategy, rare: st.SearchStrategy, odds: int = 8) -> st.SearchStrategy:
    """``common`` about ``odds`` times as often as ``rare`` (one_of would split them evenly)."""
    return st.sampled_from([False] * odds + [True]).flatmap(lambda r: rare if r else common)



@dataclass
class Segment:
    """A stretch of plant behaviour; sequences of segments reach every regime and its edges."""

    steps: int
    dt: float
    supply: list[float | None]
    drift: float
    supply_age: float
    flags: dict[str, float | None]
    kw: dict[str, float | None]
    racks: list[float | None] | None
    echo_running: bool
    command: tuple | None


supply_level = mostly(
    st.floats(min_value=30.0, max_value=41.0),  # normal
    st.one_of(
        st.floats(min_value=41.0, max_value=45.0),  # inside the margin
        st.sampled_from([LIMIT - 0.01, LIMIT, LIMIT + 0.01]),
        st.floats(min_value=45.0, max_value=55.0),  # over the limit
        st.sampled_from([None, math.nan, 500.0]),
    ),
    3,
)

commands = st.one_of(
    st.none(),
    st.none(),
    st.none(),
    st.tuples(st.just("mode"), st.sampled_from(list(Mode)), st.sampled_from([None, 30.0])),
    st.tuples(
        st.just("override"),
        st.sampled_from([R.VALVE_RECOVERY, R.DRYCOOLER_FAN, R.HP_ENABLE, R.HP_CAPACITY]),
        st.floats(0.0, 1.0),
        st.floats(1.0, 60.0),
    ),
    st.tuples(st.just("reset")),
)
healthy = st.just(0.0)

segments = st.builds(
    Segment,
    steps=st.integers(1, 40),
    dt=st.sampled_from([1.0, 1.0, 1.0, 2.0, 30.0]) | st.floats(0.1, 5.0),
    supply=mostly(st.lists(supply_level, min_size=1, max_size=2), st.just([])),
    drift=st.sampled_from([0.0, 0.0, 0.01, -0.01, 0.2]),
    supply_age=st.sampled_from([0.0, 0.0, 0.0, 0.0, 3.0, 60.0]),
    flags=st.fixed_dictionaries(
        {
            R.HP_FAULT: mostly(healthy, rare_bad),
            R.HP_LOCKOUT: mostly(healthy, rare_bad, 16),
            R.HP_TRIP_CODE: mostly(healthy, st.just(7.0)),
            R.PLC_FALLBACK: mostly(healthy, rare_bad),
        }
    ),
    kw=st.fixed_dictionaries(
        {
            R.DH_DEMAND: mostly(st.floats(30, 200), st.floats(0, 10) | value, 2),
            R.IT_POWER: mostly(st.floats(50, 200), st.floats(0, 200) | value, 3),
            R.HP_HEAT: st.floats(0, 200) | value,
            R.HP_POWER: st.floats(0, 50) | value,
            R.STORAGE_TOP_TEMP: mostly(st.floats(75, 90), st.floats(40, 90) | value, 3),
        }
    ),
    racks=mostly(
        st.none() | st.lists(st.floats(15, 24), min_size=1, max_size=3),
        st.lists(st.one_of(st.floats(15, 35), st.none()), min_size=1, max_size=3),
        3,
    ),
    echo_running=mostly(st.just(True), st.just(False), 4),
    command=commands,
)


def _snapshot(seg: Segment, k: int, now: float, running: float) -> Snapshot:
    sig: dict[str, tuple[Signal, ...]] = {}
    if seg.supply:
        ts = now - seg.supply_age
        sig[R.COOLANT_SUPPLY_TEMP] = tuple(
            Signal.bad("timeout", ts) if v is None else Signal(v + seg.drift * k, True, ts)
            for v in seg.supply
        )
    for role, v in (*seg.flags.items(), *seg.kw.items()):
        sig[role] = (Signal.bad("timeout", now) if v is None else Signal(v, True, now),)
    sig[R.HP_RUNNING] = (Signal(running, True, now),)
    if seg.racks is not None:
        sig[R.RACK_INLET_TEMP] = tuple(
            Signal.bad("timeout", now) if v is None else Signal(v, True, now) for v in seg.racks
        )
    return Snapshot(now, sig)


def _oracle_supply(snap: Snapshot, now: float) -> float | None:
    """Worst usable supply reading, judged straight from the raw snapshot."""
    lo, hi = R.DEFAULT_RANGES[R.COOLANT_SUPPLY_TEMP]
    good = [
        s.value
        for s in snap.signals.get(R.COOLANT_SUPPLY_TEMP, ())
        if s.good and s.value is not None and lo <= s.value <= hi
        and now - s.ts <= PARAMS.validation.stale_after_s
    ]  # fmt: skip
    return max(good) if good else None


def _apply(state: State, cmd: tuple | None, now: float) -> State:
    if cmd is None:
        return state
    if cmd[0] == "mode":
        return set_mode(state, cmd[1], now, ttl_s=cmd[2])
    if cmd[0] == "override":
        return set_override(state, cmd[1], cmd[2], now, ttl_s=cmd[3])
    return reset_heat_pump(state, now)


def _check_device_ranges(d: Decision) -> None:
    sp = d.setpoints
    assert 0.0 <= sp.valve <= 1.0
    assert 0.0 <= sp.fan <= 1.0
    assert isinstance(sp.hp_enable, bool) and isinstance(sp.hp_reset, bool)
    if sp.hp_enable:
        assert SEQ.capacity_min <= sp.hp_capacity <= SEQ.capacity_max
    else:
        assert sp.hp_capacity == 0.0


def _early_stop_excused(d: Decision) -> bool:
    """A stop before the minimum on time is allowed only for safety, a trip or a lock-out."""
    return any(
        e.kind == "hp_state"
        and (e.new in ("tripped", "locked_out") or e.reason.startswith("safety stop"))
        for e in d.events
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segments, min_size=1, max_size=12))
def test_cooling_priority_and_hp_protection_hold_for_any_sequence(seq: list[Segment]) -> None:
    now = 1_000_000.0
    state = initial_state(now)
    prev = state.setpoints
    running = 0.0
    on_at: float | None = None
    off_at: float | None = None  # found stopped: how long ago is unknown
    starts: list[float] = []
    at_risk_while_recovering = 0
    for seg in seq:
        state = _apply(state, seg.command, now)
        for k in range(seg.steps):
            now += seg.dt
            snap = _snapshot(seg, k, now, running)
            d = step(snap, state, PARAMS, now)
            sp = d.setpoints
            _check_device_ranges(d)

            supply = _oracle_supply(snap, now)
            if supply is None or supply >= LIMIT:
                at_risk_while_recovering += prev.extraction > 0 or prev.valve > 0
                assert sp.valve <= prev.valve, "valve opened while cooling is at risk"
                assert sp.extraction <= prev.extraction, "extraction raised while at risk"
                assert sp.fan >= prev.fan, "dry cooler slowed while cooling is at risk"
            if supply is None:
                assert sp.fan == 1.0 and sp.valve == 0.0 and not sp.hp_enable
            if supply is not None and supply >= LIMIT:
                assert sp.fan == 1.0

            if sp.hp_enable and not prev.hp_enable:
                assert off_at is None or now - off_at >= SEQ.min_off_s, "min off time violated"
                starts.append(now)
                assert sum(1 for t in starts if now - t < SEQ.starts_window_s) <= (
                    SEQ.max_starts_per_hour
                ), "too many starts per window"
                on_at = now
            if prev.hp_enable and not sp.hp_enable:
                assert on_at is not None
                if now - on_at < SEQ.min_on_s:
                    assert _early_stop_excused(d), "min on time violated without a safety reason"
                off_at = now

            running = float(sp.hp_enable) if seg.echo_running else float(not sp.hp_enable)
            prev, state = sp, d.state
    target(float(len(starts)), label="heat-pump starts")
    target(float(at_risk_while_recovering), label="at-risk steps while recovering")


@settings(max_examples=100)
@given(
    base=st.floats(30.0, 40.0),
    rate=st.floats(0.02, 0.2),
    warmup=st.integers(20, 60),
    ramp=st.integers(1, 60),
)
def test_rising_fast_never_grows_recovery(base: float, rate: float, warmup: int, ramp: int) -> None:
    """Supply climbing faster than allowed, towards the margin band within the rise horizon
    (below the limit): the recovery share may only shrink and the dry cooling only grow.
    The compressor may load up: it cools the loop too."""
    now = 0.0
    state = initial_state(now)
    running = 0.0
    for _ in range(warmup):  # steady, healthy: the controller gets going
        now += 1.0
        snap = _healthy(now, base, running)
        d = step(snap, state, PARAMS, now)
        state, running = d.state, float(d.setpoints.hp_enable)
    prev = d.setpoints
    t = 0.0
    for _ in range(ramp):
        now += 1.0
        t += 1.0
        supply = base + rate * t
        d = step(_healthy(now, supply, running), state, PARAMS, now)
        env = PARAMS.envelope
        heading_for_band = supply + rate * env.rise_horizon_s >= LIMIT - env.supply_margin_k
        # from two windows into the ramp both anchors lie on it: the measured rate is exact
        if (t >= 2 * env.rise_window_s and supply < LIMIT - 3 and rate * 60 > 1.0
                and heading_for_band):
            assert d.setpoints.valve <= prev.valve
            assert d.setpoints.fan >= prev.fan
            assert any(x.reason == "supply rising fast" for x in d.limits)
        state, prev, running = d.state, d.setpoints, float(d.setpoints.hp_enable)


def _healthy(now: float, supply: float, running: float) -> Snapshot:
    return Snapshot.from_values(
        now,
        {R.COOLANT_SUPPLY_TEMP: supply, R.HP_RUNNING: running, R.HP_FAULT: 0.0,
         R.IT_POWER: 100.0, R.DH_DEMAND: 80.0, R.HP_HEAT: 60.0 * running},
    )


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from([*sorted(R.ALL_ROLES), "no.such.role"]),
        st.lists(
            st.builds(
                Signal,
                value=st.one_of(st.none(), st.floats(), st.booleans(), st.integers()),
                good=st.booleans(),
                ts=st.floats(),
                reason=st.none() | st.text(max_size=5),
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
)
def test_no_snapshot_raises(signals: dict[str, tuple[Signal, ...]], now: float) -> None:
    state = initial_state(now)
    for k in range(3):
        d = step(Snapshot(now + k, signals), state, PARAMS, now + k)
        _check_device_ranges(d)
        state = d.state


def test_a_warm_up_far_below_the_band_does_not_stop_recovery() -> None:
    """0.02 K/s at 20 degC would take 18 minutes to reach the band: not a reason to hold."""
    now, state, running = 0.0, initial_state(0.0), 0.0
    for i in range(80):
        now += 1.0
        d = step(_healthy(now, 20.0 + 0.02 * i, running), state, PARAMS, now)
        state, running = d.state, float(d.setpoints.hp_enable)
    assert d.cooling_margin is not None and d.cooling_margin > 20
    assert not any(x.reason == "supply rising fast" for x in d.limits)
    # and the same rise close to the band is held
    for i in range(30):
        now += 1.0
        d = step(_healthy(now, 38.0 + 0.02 * i, running), state, PARAMS, now)
        state, running = d.state, float(d.setpoints.hp_enable)
    assert any(x.reason == "supply rising fast" for x in d.limits)
