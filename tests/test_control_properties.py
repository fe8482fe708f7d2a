"""Property tests: cooling priority and heat-pump protection hold for any input sequence.

Random sequences of snapshots (bad, stale, NaN, out-of-range and missing points included,
random time steps, random heat-pump feedback and faults, random operator commands) drive
the real control core. An independent oracle reads the raw snapshot to decide which of the
envelope's severities must bite (supply and rack inlet, heat-pump fault, trip and lockout,
the PLC's fallback) and whether the heat pump may be a cooling path beside a saturated dry
cooler (its contact, its evaporator inlet, its condenser's sink); the decisions are then
checked against the one before. The envelope
runs on its defaults (no ride-through: a lost reading is the worst case), but for one test
of a site that states how fast its loop can rise, where a lost supply is ridden through.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, example, given, settings, target
from hypothesis import strategies as st

from heatd.control import roles as R
from heatd.control.bounds import Setpoints
from heatd.control.commands import reset_heat_pump, set_mode, set_override
from heatd.control.core import Decision, step
from heatd.control.events import Cause, Layer
from heatd.control.params import ControlParams
from heatd.control.signals import Signal, Snapshot
from heatd.control.state import Mode, State, initial_state

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
DELAYED = PARAMS.model_copy(update={"optimiser": PARAMS.optimiser.model_copy(
    update={"start_delay_s": 60.0, "stop_delay_s": 120.0})})
"""The optimiser's default start and stop delays: the heat wanted lags, and the envelope
asks for a start of its own to cool with (with none, heat is always wanted first)."""
ENV = PARAMS.envelope
LIMIT = ENV.supply_limit_c
BAND = LIMIT - ENV.supply_margin_k
RACK_BAND = ENV.rack_inlet_limit_c - ENV.rack_inlet_margin_k
SEQ = PARAMS.sequencer
OPT = PARAMS.optimiser
EVAP_MAX = OPT.evaporator_inlet_max_c
SHARE = ENV.cooling_recovery_share

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
    kw: dict[str, float | str | None]
    """Value, None for a bad point, UNBOUND for a role the site lacks."""
    stale: frozenset[str]
    """Roles whose points are a minute old."""
    racks: list[float | None] | None
    echo_running: bool
    running_lost: bool
    """The heat pump's running feedback is a bad point: out of contact."""
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
UNBOUND = "unbound"
unbound = st.just(UNBOUND)

return_level = mostly(
    mostly(
        st.floats(min_value=38.0, max_value=EVAP_MAX - 0.01),  # an evaporator inlet it takes
        st.sampled_from([EVAP_MAX - 0.01, EVAP_MAX, EVAP_MAX + 0.01])
        | st.floats(min_value=EVAP_MAX, max_value=60.0),  # too hot for the evaporator
        2,
    ),
    st.sampled_from([None, math.nan, math.inf, 500.0]) | unbound,
    4,
)
"""The coolant return: bound on most sites, either side of the evaporator's inlet limit."""

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
            R.DH_DEMAND: mostly(st.floats(30, 200), st.floats(0, 10) | value | unbound, 2),
            R.IT_POWER: mostly(st.floats(50, 200), st.floats(0, 200) | value, 3),
            R.HP_HEAT: st.floats(0, 200) | value,
            R.HP_POWER: st.floats(0, 50) | value,
            R.STORAGE_TOP_TEMP: mostly(st.floats(75, 90),
                                       st.floats(40, 90) | value | unbound, 3),
            R.COOLANT_RETURN_TEMP: return_level,
        }
    ),
    stale=mostly(st.just(frozenset()), st.frozensets(st.sampled_from(
        [R.COOLANT_RETURN_TEMP, R.DH_DEMAND, R.STORAGE_TOP_TEMP, R.HP_FAULT]), min_size=1), 6),
    racks=mostly(
        st.none() | st.lists(st.floats(15, 24), min_size=1, max_size=3),
        st.lists(st.one_of(st.floats(15, 35), st.none()), min_size=1, max_size=3),
        3,
    ),
    echo_running=mostly(st.just(True), st.just(False), 4),
    running_lost=mostly(st.just(False), st.just(True), 16),
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
        ts = now - 60.0 if role in seg.stale else now
        if v is None:
            sig[role] = (Signal.bad("timeout", ts),)
        elif not isinstance(v, str):
            sig[role] = (Signal(v, True, ts),)
    sig[R.HP_RUNNING] = (Signal.bad("timeout", now) if seg.running_lost
                         else Signal(running, True, now),)
    if seg.racks is not None:
        sig[R.RACK_INLET_TEMP] = tuple(
            Signal.bad("timeout", now) if v is None else Signal(v, True, now) for v in seg.racks
        )
    return Snapshot(now, sig)


def _usable(snap: Snapshot, role: str, now: float) -> list[float | None]:
    """Each point of a role, judged straight from the raw snapshot: its value, or None
    when it is bad, out of range or stale."""
    lo, hi = R.DEFAULT_RANGES[role]
    return [
        s.value if (s.good and s.value is not None and lo <= s.value <= hi
                    and now - s.ts <= PARAMS.validation.stale_after_s) else None
        for s in snap.signals.get(role, ())
    ]  # fmt: skip


def _oracle_supply(snap: Snapshot, now: float) -> float | None:
    """Worst usable supply reading (redundant sensors: the good ones count)."""
    good = [v for v in _usable(snap, R.COOLANT_SUPPLY_TEMP, now) if v is not None]
    return max(good) if good else None


def _oracle_flag(snap: Snapshot, role: str, now: float) -> float | str | None:
    """A one-point input: its value, None when unknown, UNBOUND when the site lacks it."""
    if role not in snap.signals:
        return UNBOUND
    return _usable(snap, role, now)[0]


def _oracle_rack(snap: Snapshot, now: float) -> float | str | None:
    """The hottest rack inlet seen; None when more than one rack's reading is unknown (all
    but one must be seen, of two or more), or one is while the supply is unknown; UNBOUND
    when the site has no rack sensors."""
    if R.RACK_INLET_TEMP not in snap.signals:
        return UNBOUND
    racks = _usable(snap, R.RACK_INLET_TEMP, now)
    good = [v for v in racks if v is not None]
    if len(good) < max(1, len(racks) - 1) or (
            len(good) < len(racks) and _oracle_supply(snap, now) is None):
        return None
    return max(good)


def _worst_case(sp: Setpoints, why: str) -> str:
    assert sp.fan == 1.0, f"{why}: dry cooler not at full"
    return _recovery_out(sp, why)


def _recovery_out(sp: Setpoints, why: str) -> str:
    assert sp.valve == 0.0, f"{why}: recovery valve not on the dry-cooler side"
    assert not sp.hp_enable, f"{why}: heat pump not off"
    return why


def _may_cool(snap: Snapshot, prev: Setpoints, now: float) -> bool:
    """Whether the heat pump may be a cooling path beside a saturated dry cooler, by what
    the rule asks of it (envelope.py), read from the raw snapshot: in contact (its fault
    bit and running feedback known) and not faulted, tripped or locked out, its
    evaporator inlet (the return) known and under its limit, a sink for its condenser
    (demand plus storage headroom, an upper bound of the heat target) of at least its
    minimum heat, and the fans left at half or more. Each is needed: where one fails, the
    high limit and the holds bind as they did before the rule."""
    fault, trip = _oracle_flag(snap, R.HP_FAULT, now), _oracle_flag(snap, R.HP_TRIP_CODE, now)
    lockout = _oracle_flag(snap, R.HP_LOCKOUT, now)
    ret = _oracle_flag(snap, R.COOLANT_RETURN_TEMP, now)
    if (not isinstance(fault, float) or fault > 0.5 or (isinstance(trip, float) and trip > 0)
            or (isinstance(lockout, float) and lockout > 0.5)
            or not isinstance(_oracle_flag(snap, R.HP_RUNNING, now), float)
            or not isinstance(ret, float) or ret >= EVAP_MAX):
        return False
    demand, top = _oracle_flag(snap, R.DH_DEMAND, now), _oracle_flag(snap, R.STORAGE_TOP_TEMP, now)
    sink = demand if isinstance(demand, float) else 0.0
    if isinstance(top, float):
        sink += OPT.storage_charge_kw * min(max((OPT.storage_full_c - top) / OPT.storage_band_k,
                                                0.0), 1.0)
    return sink >= SEQ.capacity_min * OPT.hp_nominal_heat_kw and prev.fan >= 0.5


def _started_for_cooling(d: Decision) -> bool:
    """The envelope, not the heat wanted, asked for this start."""
    return any(e.kind == "hp_state" and e.new == "starting" and e.layer is Layer.ENVELOPE
               for e in d.events)


def _check_supply(snap: Snapshot, d: Decision, prev: Setpoints, now: float,
                  cools: bool) -> list[str]:
    """The supply's severities: the worst case while it is unknown and not estimated, the
    margin band and the limit (loosened only where the heat pump ``cools``), and a start
    for cooling only in the band."""
    sp, bit = d.setpoints, []
    supply = _oracle_supply(snap, now)
    ret = _oracle_flag(snap, R.COOLANT_RETURN_TEMP, now)
    estimate = d.estimated.get(R.COOLANT_SUPPLY_TEMP)
    if supply is None and estimate is not None:  # judged as a reading: never over the return
        assert isinstance(ret, float) and estimate <= ret, "supply estimated over the return"
        assert isinstance(_oracle_flag(snap, R.IT_POWER, now), float), (
            "supply estimated without the IT load")
        supply = estimate
        bit.append("supply estimated")
    if supply is None:  # the worst case, the fans floored by the return
        floor = 1.0 if not isinstance(ret, float) else min(max(
            (ret - ENV.supply_low_c) / (BAND - ENV.supply_low_c), 0.0), 1.0)
        assert sp.fan >= floor, "supply unknown: dry cooler under the return's floor"
        bit.append(_recovery_out(sp, "supply unknown"))
    elif supply >= BAND:  # driven down across the band, fans floored from nothing to full
        depth = min((supply - BAND) / ENV.supply_margin_k, 1.0)
        assert sp.fan >= depth, "dry cooler under the floor of the margin band"
        assert sp.fan >= prev.fan, "dry cooler slowed inside the margin band"
        assert sp.valve <= max(min(prev.valve, 1.0 - depth), SHARE if cools else 0.0), (
            "recovery share over the cap of the margin band")
        if depth == 1.0:
            assert sp.fan == 1.0, "supply at its limit: dry cooler not at full"
            if not cools:
                assert sp.extraction <= prev.extraction, "extraction raised at the limit"
                assert prev.hp_enable or not sp.hp_enable, "heat pump started at the limit"
        bit.append("supply in the margin band")
    if _started_for_cooling(d):
        assert cools, "heat pump started for cooling where it cannot cool"
        assert supply is not None and supply >= BAND - 1e-9, (
            "heat pump started for cooling outside the margin band")
        bit.append("heat pump started for cooling")
    return bit


def _check_envelope(snap: Snapshot, d: Decision, prev: Setpoints, now: float) -> list[str]:
    """Every severity of the envelope (heatd/control/envelope.py) that the snapshot calls
    for, judged from the raw snapshot and checked; the ones that did."""
    sp = d.setpoints
    cools = _may_cool(snap, prev, now)
    share = SHARE if cools else 0.0  # what a cooling heat pump keeps through the band
    bit = _check_supply(snap, d, prev, now, cools)
    if d.state.env.hp_cooling:
        assert cools, "heat pump taken as a cooling path where it cannot be one"
        bit.append("heat pump cooling")
    if _oracle_flag(snap, R.HP_RUNNING, now) is None:
        assert prev.hp_enable or not sp.hp_enable, "heat pump started, its running unknown"

    if _oracle_flag(snap, R.PLC_FALLBACK, now) == 1.0:
        bit.append(_worst_case(sp, "plc in local fallback"))

    fault = _oracle_flag(snap, R.HP_FAULT, now)
    if fault is None:  # out of contact: no start, no more flow than a running one had
        assert prev.hp_enable or not sp.hp_enable, "heat pump started while out of contact"
        assert sp.valve <= (prev.valve if prev.hp_enable else 0.0), (
            "more recovery flow while the heat pump is out of contact")
        bit.append("heat pump out of contact")
    elif fault == 1.0:
        bit.append(_recovery_out(sp, "heat pump fault"))
    trip = _oracle_flag(snap, R.HP_TRIP_CODE, now)  # known: whatever the fault bit reads
    if isinstance(trip, float) and trip > 0:
        bit.append(_recovery_out(sp, "heat pump trip code set"))
    if _oracle_flag(snap, R.HP_LOCKOUT, now) == 1.0:
        bit.append(_recovery_out(sp, "heat pump locked out"))

    rack = _oracle_rack(snap, now)
    if rack is None:
        bit.append(_worst_case(sp, "rack inlet unknown"))
    elif isinstance(rack, float) and rack >= RACK_BAND:
        assert sp.valve <= max(prev.valve, share), (
            "recovery share grew with a rack inlet near its limit")
        assert sp.fan >= prev.fan, "dry cooling fell with a rack inlet near its limit"
        assert sp.fan >= min(1.0, (rack - RACK_BAND) / ENV.rack_inlet_margin_k), (
            "dry cooler under the floor of a rack inlet near its limit")
        bit.append("rack inlet near its limit")
    return bit


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


SAFETY_STOPS = frozenset({Cause.INPUT_UNKNOWN, Cause.FLOW_LOW, Cause.PLC_FALLBACK,
                          Cause.HP_TRIP_CODE, Cause.HP_FAULT, Cause.HP_LOCKOUT,
                          Cause.VALVE_NOT_FOLLOWING, Cause.SAFE_MODE})
"""What may withdraw the heat pump's permission to run: the envelope's worst cases, a
heat pump out, the operator's safe mode."""


def _early_stop_excused(d: Decision) -> bool:
    """A stop before the minimum on time is allowed only for safety, a trip or a lock-out."""
    return any(
        e.kind == "hp_state"
        and (e.new in ("tripped", "locked_out")
             or (e.new == "stopping" and e.cause in SAFETY_STOPS))
        for e in d.events
    )


@dataclass
class Protection:
    """The heat pump's own protection, followed over a run: minimum on and off times and
    starts per window, whoever asks for the start (the heat wanted, or the envelope for
    cooling)."""

    on_at: float | None = None
    off_at: float | None = None
    """None: found stopped, how long ago unknown."""
    starts: list[float] = field(default_factory=list)

    def check(self, d: Decision, prev: Setpoints, now: float) -> None:
        sp = d.setpoints
        if sp.hp_enable and not prev.hp_enable:
            assert self.off_at is None or now - self.off_at >= SEQ.min_off_s, (
                "min off time violated")
            self.starts.append(now)
            assert sum(1 for t in self.starts if now - t < SEQ.starts_window_s) <= (
                SEQ.max_starts_per_hour), "too many starts per window"
            self.on_at = now
        if prev.hp_enable and not sp.hp_enable:
            if self.on_at is not None and now - self.on_at < SEQ.min_on_s:
                assert _early_stop_excused(d), "min on time violated without a safety reason"
            self.off_at = now


def _learning_then_gone() -> list[Segment]:
    """A loop that teaches the supply estimate, then a snapshot without the supply role and
    with one dead rack point of two: the estimate must not vouch for the racks."""
    flags: dict[str, float | None] = {R.HP_FAULT: 0.0, R.HP_LOCKOUT: 0.0, R.HP_TRIP_CODE: 0.0,
                                      R.PLC_FALLBACK: 0.0}
    kw: dict[str, float | str | None] = {R.DH_DEMAND: 80.0, R.IT_POWER: 100.0, R.HP_HEAT: 60.0,
                                         R.HP_POWER: 15.0, R.STORAGE_TOP_TEMP: 80.0,
                                         R.COOLANT_RETURN_TEMP: 42.0}
    learn = Segment(40, 30.0, [36.0], 0.01, 0.0, flags, kw, frozenset(), [20.0, 21.0], True,
                    False, None)
    gone = Segment(3, 1.0, [], 0.0, 0.0, flags, kw, frozenset(), [20.0, None], True, False,
                   None)
    return [learn, gone]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segments, min_size=1, max_size=12), st.sampled_from([PARAMS, DELAYED]))
@example(_learning_then_gone(), PARAMS)
def test_cooling_priority_and_hp_protection_hold_for_any_sequence(
        seq: list[Segment], params: ControlParams) -> None:
    _drive(seq, params)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segments, min_size=1, max_size=24), st.sampled_from([PARAMS, DELAYED]))
def test_cooling_priority_and_hp_protection_hold_for_long_sequences(
        seq: list[Segment], params: ControlParams) -> None:
    """The same, deeper: longer histories and many more of them."""
    _drive(seq, params)


def _drive(seq: list[Segment], params: ControlParams) -> None:
    """Run the control core through ``seq``, checking every decision against the oracle
    and the heat pump's protection."""
    now = 1_000_000.0
    state = initial_state(now)
    prev = state.setpoints
    running = 0.0
    guard = Protection()
    bitten_while_recovering: set[str] = set()
    cooling = 0
    for seg in seq:
        state = _apply(state, seg.command, now)
        for k in range(seg.steps):
            now += seg.dt
            snap = _snapshot(seg, k, now, running)
            d = step(snap, state, params, now)
            sp = d.setpoints
            _check_device_ranges(d)

            bit = _check_envelope(snap, d, prev, now)
            cooling += d.state.env.hp_cooling
            if prev.valve > 0 or prev.hp_enable:  # a rule that bites now has work to do
                bitten_while_recovering.update(bit)

            guard.check(d, prev, now)

            running = float(sp.hp_enable) if seg.echo_running else float(not sp.hp_enable)
            prev, state = sp, d.state
    target(float(len(guard.starts)), label="heat-pump starts")
    target(float(len(bitten_while_recovering)), label="envelope rules met while recovering")
    target(float(cooling), label="cycles with the heat pump a cooling path")


Values = dict[str, float | list[float | None] | None]
STEADY: Values = {
    R.COOLANT_SUPPLY_TEMP: 36.0, R.HP_FAULT: 0.0, R.HP_TRIP_CODE: 0.0, R.HP_LOCKOUT: 0.0,
    R.PLC_FALLBACK: 0.0, R.RACK_INLET_TEMP: [22.0], R.IT_POWER: 100.0, R.DH_DEMAND: 80.0,
}  # fmt: skip
"""A healthy site wanting heat: the heat pump is started and the valve opens."""


def _signals(now: float, values: Values, running: float) -> Snapshot:
    """A snapshot of fresh points (None: a bad one; a list: a role with several), with
    the heat pump's feedback following its command."""
    def one(v: float | None) -> Signal:
        return Signal.bad("timeout", now) if v is None else Signal(v, True, now)

    values = {**values, R.HP_RUNNING: running, R.HP_HEAT: 60.0 * running}
    return Snapshot(now, {role: tuple(map(one, v)) if isinstance(v, list) else (one(v),)
                          for role, v in values.items()})


def _recovering(seconds: int, params: ControlParams = PARAMS) -> tuple[float, Decision[State]]:
    """The steady site run for ``seconds``: the heat pump runs and the valve is open."""
    now, state, running = 0.0, initial_state(0.0), 0.0
    for _ in range(seconds):
        now += 1.0
        d = step(_signals(now, STEADY, running), state, params, now)
        state, running = d.state, float(d.setpoints.hp_enable)
    assert d.setpoints.hp_enable and d.setpoints.valve > 0.1, "recovery did not get going"
    return now, d


UPSETS = {
    R.COOLANT_SUPPLY_TEMP: st.none() | st.floats(BAND - 0.5, LIMIT + 2),
    R.HP_FAULT: st.sampled_from([1.0, None]),
    R.HP_TRIP_CODE: st.just(7.0),
    R.HP_LOCKOUT: st.just(1.0),
    R.PLC_FALLBACK: st.just(1.0),
    R.RACK_INLET_TEMP: mostly(st.lists(st.floats(20.0, 35.0), min_size=1, max_size=3),
                              st.lists(st.none() | st.floats(20.0, 35.0), min_size=1,
                                       max_size=3), 2),
}
"""What each randomised input does when it goes wrong."""


def _upset(role: str, upsets: dict[str, st.SearchStrategy] = UPSETS
           ) -> st.SearchStrategy[Values]:
    """``role`` gone wrong, mostly alone (so no stricter rule covers for its own), now and
    then with one other input."""
    others = sorted(set(upsets) - {role})
    other = st.sampled_from(others).flatmap(lambda r: upsets[r].map(lambda v: {r: v}))
    return st.tuples(upsets[role], mostly(st.just({}), other, 3)).map(
        lambda picked: {role: picked[0], **picked[1]})


Lease = tuple[str, float] | None
leases = st.sampled_from([None, (R.VALVE_RECOVERY, 1.0), (R.DRYCOOLER_FAN, 0.0),
                          (R.HP_ENABLE, 1.0)])
"""An operator pushing where a rule holds back: more recovery share, less dry cooling, a
start of the heat pump."""


def _leased(now: float, d: Decision[State], lease: Lease, params: ControlParams
            ) -> tuple[float, State, Setpoints]:
    """The lease from ``now`` on; a lease to start the heat pump comes after another lease
    has stopped it for its minimum off time."""
    state, prev = d.state, d.setpoints
    if lease is None:
        return now, state, prev
    if lease[0] == R.HP_ENABLE:
        state = set_override(state, R.HP_ENABLE, 0.0, now, ttl_s=300.0)
        for _ in range(300):  # it winds its capacity down first
            now += 1.0
            d = step(_signals(now, STEADY, float(prev.hp_enable)), state, params, now)
            state, prev = d.state, d.setpoints
            if not prev.hp_enable:
                break
        assert not prev.hp_enable, "the lease did not stop the heat pump"
        for _ in range(math.ceil(SEQ.min_off_s)):
            now += 1.0
            d = step(_signals(now, STEADY, 0.0), state, params, now)
            state, prev = d.state, d.setpoints
    return now, set_override(state, *lease, now, ttl_s=3600.0), prev


@pytest.mark.parametrize("role", sorted(UPSETS))
@settings(max_examples=80)
@given(
    data=st.data(),
    warmup=st.integers(40, 120),
    steps=st.integers(1, 30),
    dt=st.sampled_from([0.5, 1.0, 5.0]),
    lease=leases,
)
def test_every_envelope_rule_holds_when_it_meets_a_running_recovery(
    role: str, data: st.DataObject, warmup: int, steps: int, dt: float, lease: Lease
) -> None:
    """The other test meets most rules while nothing is recovered, where a broken rule
    hides: here each randomised input goes wrong on a heat pump running with the valve
    open, or stopped, and an operator may push against the rule."""
    upset = data.draw(_upset(role), label="upset")
    now, d = _recovering(warmup)
    now, state, prev = _leased(now, d, lease, PARAMS)
    for _ in range(steps):
        now += dt
        snap = _signals(now, {**STEADY, **upset}, float(prev.hp_enable))
        d = step(snap, state, PARAMS, now)
        _check_device_ranges(d)
        _check_envelope(snap, d, prev, now)
        state, prev = d.state, d.setpoints


HOT: Values = {
    **STEADY, R.COOLANT_SUPPLY_TEMP: OPT.supply_setpoint_c, R.COOLANT_RETURN_TEMP: 45.0,
    R.IT_POWER: 200.0, R.STORAGE_TOP_TEMP: OPT.storage_full_c + 5.0,
}  # fmt: skip
"""A summer afternoon: the network's demand the condenser's only sink, the loop at its
setpoint."""


PROFILES = {"prompt": PARAMS, "delayed": DELAYED}


@functools.cache
def _cooling(profile: str) -> tuple[float, Decision[State]]:
    """The hot site recovering, then its supply warming into the band until the fans are
    full: the heat pump is a cooling path (made once; a State is never changed)."""
    params = PROFILES[profile]
    now, state, running, supply = 0.0, initial_state(0.0), 0.0, BAND + 1.5
    for _ in range(900):
        now += 1.0
        d = step(_signals(now, HOT, running), state, params, now)
        state, running = d.state, float(d.setpoints.hp_enable)
    while not d.state.env.hp_cooling:
        assert now < 5000.0, "the heat pump never became a cooling path"
        now, supply = now + 1.0, supply + 0.001
        d = step(_signals(now, {**HOT, R.COOLANT_SUPPLY_TEMP: supply}, running), state,
                 params, now)
        state, running = d.state, float(d.setpoints.hp_enable)
    assert d.setpoints.hp_enable and d.setpoints.fan == 1.0
    return now, d


COOLING_UPSETS = {
    R.COOLANT_RETURN_TEMP: st.none() | st.floats(EVAP_MAX, EVAP_MAX + 10.0),
    R.DH_DEMAND: st.sampled_from([0.0, None]),  # the storage full: no sink left
    R.COOLANT_SUPPLY_TEMP: st.none() | st.floats(BAND, LIMIT + 2),
    **{role: UPSETS[role] for role in (R.HP_FAULT, R.HP_TRIP_CODE, R.HP_LOCKOUT)},
}
"""What takes the heat pump off as a cooling path, and the supply it cools."""


@pytest.mark.parametrize("role", sorted(COOLING_UPSETS))
@settings(max_examples=40)
@given(data=st.data(), profile=st.sampled_from(sorted(PROFILES)), steps=st.integers(1, 30),
       after=st.integers(0, 40), dt=st.sampled_from([0.5, 1.0, 5.0]),
       supply=st.floats(BAND, LIMIT + 2),
       lease=st.sampled_from([None, (R.VALVE_RECOVERY, 1.0), (R.DRYCOOLER_FAN, 0.0)]))
def test_every_rule_holds_when_it_meets_a_heat_pump_cooling(
    role: str, data: st.DataObject, profile: str, steps: int, after: int, dt: float,
    supply: float, lease: Lease
) -> None:
    """The heat pump a cooling path beside a saturated dry cooler, in the band or at the
    limit, an operator perhaps pushing for more recovery or less dry cooling; then its
    contact, its evaporator inlet, its sink or the supply goes wrong, and clears again:
    the rules hold as the oracle reads them (no start, no more recovery share, the fans
    at least where the band puts them), it is no cooling path while it cannot be one,
    and a start for cooling once the upset clears keeps the heat pump's protection."""
    upset = data.draw(_upset(role, COOLING_UPSETS), label="upset")
    params = PROFILES[profile]
    now, d = _cooling(profile)
    state, prev, guard = d.state, d.setpoints, Protection(on_at=now - SEQ.min_on_s)
    if lease is not None:
        state = set_override(state, *lease, now, ttl_s=3600.0)
    for k in range(steps + after):
        now += dt
        values = {**HOT, R.COOLANT_SUPPLY_TEMP: supply, **(upset if k < steps else {})}
        snap = _signals(now, values, float(prev.hp_enable))
        d = step(snap, state, params, now)
        _check_device_ranges(d)
        _check_envelope(snap, d, prev, now)
        guard.check(d, prev, now)
        state, prev = d.state, d.setpoints


def _riding(rise_k_per_s: float) -> ControlParams:
    """A site that states how fast its loop can rise: a lost supply reading is ridden
    through for at most 100 s. From the steady 36 degC the band (42 degC) is 600 s away at
    0.01 K/s, so the time bound ends the ride; 60 s away at 0.1 K/s, so the rise does."""
    env = ENV.model_copy(update={"blind_rise_k_per_s": rise_k_per_s, "blind_hold_max_s": 100.0})
    return PARAMS.model_copy(update={"envelope": env})


@settings(max_examples=100)
@given(
    warmup=st.integers(40, 120),
    steps=st.integers(1, 60),
    dt=st.sampled_from([0.5, 1.0, 5.0, 30.0]),
    rise=st.sampled_from([0.01, 0.1]),
    it_power=st.sampled_from([80.0, 100.0, 110.0, 115.0]),
    lease=leases,
)
def test_a_lost_supply_is_ridden_through_only_within_its_bounds(
    warmup: int, steps: int, dt: float, rise: float, it_power: float, lease: Lease
) -> None:
    """Ride-through (envelope.py): while the last reading plus the stated rise stays under
    the band, for at most blind_hold_max_s and with no IT growth past blind_it_growth, the
    cooling is held as it was (no more recovery share, no less dry cooling, no start, even
    against an operator's lease); past any bound, the worst case."""
    params = _riding(rise)
    env = params.envelope
    now, d = _recovering(warmup, params)
    now, state, prev = _leased(now, d, lease, params)
    seen_at, seen, it_seen = now, STEADY[R.COOLANT_SUPPLY_TEMP], STEADY[R.IT_POWER]
    assert isinstance(seen, float) and isinstance(it_seen, float)
    lost = {**STEADY, R.COOLANT_SUPPLY_TEMP: None, R.IT_POWER: it_power}
    for _ in range(steps):
        now += dt
        d = step(_signals(now, lost, float(prev.hp_enable)), state, params, now)
        sp = d.setpoints
        _check_device_ranges(d)
        if (now - seen_at <= env.blind_hold_max_s
                and seen + rise * (now - seen_at) < BAND
                and it_power <= it_seen * (1.0 + env.blind_it_growth)):
            assert d.bounds.hp_run, "the worst case where the loss is to be ridden through"
            assert sp.valve <= prev.valve, "recovery share grew while riding through"
            assert sp.fan >= prev.fan, "dry cooling fell while riding through"
            assert prev.hp_enable or not sp.hp_enable, "heat pump started while riding through"
        else:
            _worst_case(sp, "supply unknown past the ride-through")
        state, prev = d.state, sp


@pytest.mark.parametrize("flag", [R.HP_TRIP_CODE, R.HP_LOCKOUT])
def test_a_trip_or_lockout_closes_recovery_while_the_fault_bit_is_unknown(flag: str) -> None:
    """Heat pump out (envelope.py): a trip or lockout closes the recovery valve at once,
    whatever the fault bit reads."""
    now, d = _recovering(60)
    upset = {**STEADY, R.HP_FAULT: None, flag: 1.0}
    d = step(_signals(now + 1.0, upset, 1.0), d.state, PARAMS, now + 1.0)
    assert not d.setpoints.hp_enable
    assert d.setpoints.valve == 0.0


@settings(max_examples=100)
@given(
    base=st.floats(30.0, 40.0),
    rate=st.floats(0.02, 0.2),
    warmup=st.integers(20, 60),
    ramp=st.integers(1, 60),
)
@example(base=35.0, rate=0.02, warmup=22, ramp=50)  # reaches the band's edge exactly
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
        # the controller measures the rate from two readings: a projection landing on the
        # band's edge (within a thousandth of a kelvin) may fall either side of it
        heading_for_band = (supply + rate * env.rise_horizon_s
                            >= LIMIT - env.supply_margin_k + 1e-3)
        # from two windows into the ramp both anchors lie on it: the measured rate is exact
        if (t >= 2 * env.rise_window_s and supply < LIMIT - 3 and rate * 60 > 1.0
                and heading_for_band):
            assert d.setpoints.valve <= prev.valve
            assert d.setpoints.fan >= prev.fan
            assert any(x.cause is Cause.RISING_FAST for x in d.limits)
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
    assert not any(x.cause is Cause.RISING_FAST for x in d.limits)
    # and the same rise close to the band is held
    for i in range(30):
        now += 1.0
        d = step(_healthy(now, 38.0 + 0.02 * i, running), state, PARAMS, now)
        state, running = d.state, float(d.setpoints.hp_enable)
    assert any(x.cause is Cause.RISING_FAST for x in d.limits)
