"""Modes, leases, bumpless transfer, events; the baseline; the purity of the core."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heatd.control import baseline
from heatd.control import roles as R
from heatd.control.commands import clear_override, set_mode, set_override
from heatd.control.core import step
from heatd.control.events import Cause
from heatd.control.params import ControlParams
from heatd.control.sequencer import HpState
from heatd.control.signals import Signal, Snapshot
from heatd.control.state import Mode, initial_state

P = ControlParams.model_validate(
    {
        "sequencer": {"min_on_s": 60.0, "min_off_s": 10.0},
        "optimiser": {"start_delay_s": 0.0, "stop_delay_s": 0.0},
        "envelope": {"rise_window_s": 10.0},
    }
)


def snap(now: float, supply: float = 38.0, running: float = 0.0, **over: float | None) -> Snapshot:
    values = {
        R.COOLANT_SUPPLY_TEMP: supply + 0.01 * (now % 3), R.HP_RUNNING: running,
        R.HP_FAULT: 0.0, R.IT_POWER: 100.0, R.DH_DEMAND: 80.0, R.HP_HEAT: 60.0 * running,
    }  # fmt: skip
    values.update({k.replace("__", "."): v for k, v in over.items()})
    return Snapshot.from_values(now, values)


def drive(state, t0: float, seconds: int, **over: float | None):
    out = []
    for k in range(1, seconds + 1):
        now = t0 + k
        d = step(snap(now, running=float(state.setpoints.hp_enable), **over), state, P, now)
        out.append(d)
        state = d.state
    return out


def test_safe_mode_forces_the_safe_state_and_says_who_asked() -> None:
    ds = drive(initial_state(0.0), 0.0, 40)
    assert ds[-1].setpoints.hp_enable
    state = set_mode(ds[-1].state, Mode.SAFE, 40.0)
    d = drive(state, 40.0, 1)[0]
    assert (d.setpoints.fan, d.setpoints.valve, d.setpoints.hp_enable) == (1.0, 0.0, False)
    assert d.mode == "safe"
    assert any(e.kind == "mode" and e.new == "safe" and e.layer == "operator" for e in d.events)
    assert any(x.layer == "operator" and x.cause is Cause.SAFE_MODE for x in d.limits)
    stop = next(e for e in d.events if e.kind == "hp_state")
    assert (stop.layer, stop.new, stop.cause) == ("operator", "stopping", Cause.SAFE_MODE)


def test_recovery_off_winds_down_the_heat_pump_respecting_min_on_time() -> None:
    ds = drive(initial_state(0.0), 0.0, 20)  # found stopped, started at t=1
    state = set_mode(ds[-1].state, Mode.RECOVERY_OFF, 20.0)
    ds = drive(state, 20.0, 80)
    off = next(d for d in ds if not d.setpoints.hp_enable)
    assert off.state.last_now >= 1.0 + P.sequencer.min_on_s
    assert ds[-1].setpoints.valve == 0.0 and ds[-1].hp_state == HpState.OFF
    assert all(d.mode == "recovery_off" for d in ds)


def test_manual_mode_holds_operator_setpoints_inside_the_envelope() -> None:
    ds = drive(initial_state(0.0), 0.0, 40)
    state = set_mode(ds[-1].state, Mode.MANUAL, 40.0, ttl_s=600.0)
    state = set_override(state, R.DRYCOOLER_FAN, 0.0, 40.0, ttl_s=600.0)
    ds = drive(state, 40.0, 200)
    assert ds[-1].setpoints.fan == 0.0
    # supply at the limit: the envelope overrules the operator at once
    d = step(snap(241.0, supply=45.5, running=1.0), ds[-1].state, P, 241.0)
    assert d.setpoints.fan == 1.0 and d.mode == "manual"


def test_leases_expire_back_to_automatic_with_an_event() -> None:
    state = set_override(initial_state(0.0), R.DRYCOOLER_FAN, 1.0, 0.0, ttl_s=30.0)
    state = set_mode(state, Mode.RECOVERY_OFF, 0.0, ttl_s=50.0)
    ds = drive(state, 0.0, 60)
    assert all(d.setpoints.fan == 1.0 for d in ds[:29])
    lease_end = [e for d in ds for e in d.events if e.kind == "lease" and e.cause is Cause.EXPIRED]
    assert [(e.subject, e.ts) for e in lease_end] == [(R.DRYCOOLER_FAN, 30.0)]
    mode_end = [e for d in ds for e in d.events if e.kind == "mode" and e.cause is Cause.EXPIRED]
    assert [(e.new, e.ts) for e in mode_end] == [("auto", 50.0)]
    assert ds[-1].mode == "auto" and ds[31].setpoints.fan < 1.0


def test_lease_and_limit_events_carry_the_value_as_the_value_it_is() -> None:
    """A stop of the heat pump is false in its lease, limit and clear events alike, a fan
    share the number it is: they were ``"0"``, ``"0.0"`` and ``"set"``, and ``"0.9"``."""
    state = set_override(initial_state(0.0), R.HP_ENABLE, False, 0.0, ttl_s=30.0)
    state = set_override(state, R.DRYCOOLER_FAN, 0.9, 0.0, ttl_s=5.0)
    ds = drive(state, 0.0, 10)
    state = clear_override(ds[-1].state, R.HP_ENABLE, 10.0)
    events = [e for d in ds for e in d.events] + list(state.pending)
    told = [(e.kind, e.subject, e.old, e.new) for e in events if e.kind in ("lease", "limit")
            and e.subject.removeprefix("override:") in (R.HP_ENABLE, R.DRYCOOLER_FAN)]
    assert told == [("lease", R.HP_ENABLE, None, False), ("lease", R.DRYCOOLER_FAN, None, 0.9),
                    ("limit", "override:hp.enable", None, False),
                    ("limit", "override:drycooler.fan", None, 0.9),
                    ("lease", R.DRYCOOLER_FAN, 0.9, None), ("lease", R.HP_ENABLE, False, None)]
    assert all(type(e.new) in (bool, float, str, type(None)) for e in events)


def test_override_commands_are_validated() -> None:
    s = initial_state(0.0)
    with pytest.raises(ValueError):
        set_override(s, R.PLC_HEARTBEAT, 1.0, 0.0, ttl_s=10.0)
    with pytest.raises(ValueError):
        set_override(s, R.VALVE_RECOVERY, 1.5, 0.0, ttl_s=10.0)
    with pytest.raises(ValueError):
        set_override(s, R.VALVE_RECOVERY, 0.5, 0.0, ttl_s=0.0)
    assert clear_override(s, R.VALVE_RECOVERY, 0.0) is s


def test_transfer_from_manual_to_auto_is_bumpless() -> None:
    """Outputs continue from where manual left them; no step beyond one rate-limited move."""
    ds = drive(initial_state(0.0), 0.0, 120)
    state = set_mode(ds[-1].state, Mode.MANUAL, 120.0)
    state = set_override(state, R.DRYCOOLER_FAN, 0.6, 120.0, ttl_s=900.0)
    manual_last = drive(state, 120.0, 300, coolant__supply_temp=38.0)[-1]
    assert manual_last.setpoints.fan == 0.6
    state = clear_override(set_mode(manual_last.state, Mode.AUTO, 420.0), R.DRYCOOLER_FAN, 420.0)
    auto = drive(state, 420.0, 60, coolant__supply_temp=38.0)
    # the loop resumes from 0.6 and moves only by its integral action (supply 1.8 K below
    # setpoint): far less than the rate limit a jump back to its old output would show
    op = P.optimiser
    loop_step = op.cool_kp * 1.8 / op.cool_ti_s + 1e-9
    assert loop_step < op.fan_down_per_s / 2
    for a, b in itertools.pairwise([manual_last, *auto]):
        assert abs(b.setpoints.fan - a.setpoints.fan) <= loop_step
    assert auto[-1].setpoints.fan >= 0.6 - len(auto) * loop_step


def test_decision_summary_is_what_the_daemon_publishes() -> None:
    d = step(Snapshot.from_values(1.0, {R.COOLANT_SUPPLY_TEMP: None}), initial_state(0.0), P, 1.0)
    s = d.summary()
    assert s["mode"] == "auto" and s["cooling_margin"] is None and s["hp_state"] == "off"
    assert s["setpoints"][R.DRYCOOLER_FAN] == 1.0
    assert {"name": "valve_max", "value": 0.0, "layer": "envelope", "cause": "input_unknown",
            "role": R.COOLANT_SUPPLY_TEMP,
            "reason": "coolant.supply_temp unknown (no value)"} in s["limits"]  # fmt: skip
    assert R.HP_FAULT in s["missing"] and s["invalid"] == {R.COOLANT_SUPPLY_TEMP: "no value"}


# --- baseline ---------------------------------------------------------------------------


def _bms(seconds: int, t0: float, state: baseline.BaselineState, bp: baseline.BaselineParams,
         **values: float | None) -> list:
    """Scan the baseline once a second on constant inputs."""
    out = []
    for k in range(1, seconds + 1):
        d = baseline.step(snap(t0 + k, **values), state, bp, t0 + k)  # type: ignore[arg-type]
        out.append(d)
        state = d.state
    return out


def test_baseline_opens_recovery_only_while_the_heat_pump_runs_and_closes_over_its_band() -> None:
    bp = baseline.BaselineParams()
    s = baseline.initial_state(0.0)
    d = baseline.step(snap(1.0, supply=35.0, dh__demand=40.0), s, bp, 1.0)
    assert d.setpoints.hp_enable and d.setpoints.valve == 0.0  # not yet running
    assert d.setpoints.hp_capacity == pytest.approx(0.4)
    d = baseline.step(snap(2.0, supply=35.0, running=1.0, dh__demand=40.0), d.state, bp, 2.0)
    assert d.setpoints.valve == 1.0
    d = baseline.step(snap(3.0, supply=40.0, running=1.0, dh__demand=40.0), d.state, bp, 3.0)
    assert d.setpoints.valve == pytest.approx(0.5, abs=0.01)  # half way over 38 -> 42
    d = baseline.step(snap(4.0, supply=42.5, running=1.0, dh__demand=40.0), d.state, bp, 4.0)
    assert d.setpoints.valve == 0.0 and d.setpoints.hp_enable


def test_baseline_keeps_minimum_on_and_off_times_and_demand_hysteresis() -> None:
    bp = baseline.BaselineParams()
    ds = _bms(10, 0.0, baseline.initial_state(0.0), bp, running=1.0, dh__demand=40.0)
    assert ds[-1].setpoints.hp_enable
    ds = _bms(100, 10.0, ds[-1].state, bp, running=1.0, dh__demand=20.0)
    assert all(d.setpoints.hp_enable for d in ds)  # 20 kW is inside the hysteresis
    ds = _bms(100, 110.0, ds[-1].state, bp, running=1.0, dh__demand=5.0)
    assert all(d.setpoints.hp_enable for d in ds)  # minimum on time
    ds = _bms(500, 210.0, ds[-1].state, bp, running=1.0, dh__demand=5.0)
    assert not ds[-1].setpoints.hp_enable
    off_at = next(d for d in ds if not d.setpoints.hp_enable).state.changed_at
    ds = _bms(400, 710.0, ds[-1].state, bp, dh__demand=80.0)
    on_at = next(d for d in ds if d.setpoints.hp_enable).state.changed_at
    assert on_at - off_at == pytest.approx(bp.min_off_s, abs=1.0)


def test_baseline_interlock_sends_everything_to_the_dry_cooler_and_latches() -> None:
    bp = baseline.BaselineParams()
    ds = _bms(5, 0.0, baseline.initial_state(0.0), bp, running=1.0, dh__demand=40.0)
    d = _bms(1, 5.0, ds[-1].state, bp, supply=43.2, running=1.0, dh__demand=40.0)[0]
    assert (d.setpoints.valve, d.setpoints.fan, d.setpoints.hp_enable) == (0.0, 1.0, False)
    d = _bms(1, 6.0, d.state, bp, supply=38.0, running=1.0, dh__demand=40.0,
             coolant__return_temp=51.5)[0]
    assert (d.setpoints.valve, d.setpoints.fan) == (0.0, 1.0)  # the evaporator inlet is hot
    d = _bms(1, 7.0, d.state, bp, supply=41.0, coolant__return_temp=45.0)[0]
    assert d.setpoints.fan == 1.0  # latched until 3 K back under
    d = _bms(1, 8.0, d.state, bp, supply=39.0, coolant__return_temp=45.0)[0]
    assert d.setpoints.fan < 1.0
    d = _bms(1, 9.0, d.state, bp, coolant__supply_temp=None)[0]
    assert d.setpoints.fan < 1.0  # a BMS keeps the last good value...
    fresh = baseline.step(snap(1.0, coolant__supply_temp=None), baseline.initial_state(0.0),
                          bp, 1.0)
    assert fresh.setpoints.fan == 1.0 and fresh.setpoints.valve == 0.0  # ...or has none


def test_baseline_resets_a_trip_after_its_cool_down_a_few_times_an_hour() -> None:
    bp = baseline.BaselineParams()
    ds = _bms(5, 0.0, baseline.initial_state(0.0), bp, running=1.0)
    tripped = _bms(1900, 5.0, ds[-1].state, bp, hp__trip_code=3.0, hp__fault=1.0)
    assert not any(d.setpoints.hp_enable for d in tripped)
    pulses = [d.state.resets[-1] for d in tripped if d.setpoints.hp_reset]
    assert sorted(set(pulses)) == [6.0 + bp.reset_cooldown_s, 6.0 + 2 * bp.reset_cooldown_s]


@settings(max_examples=200)
@given(
    st.dictionaries(
        st.sampled_from(sorted(R.ALL_ROLES)),
        st.lists(
            st.builds(Signal, value=st.one_of(st.none(), st.floats(), st.booleans()),
                      good=st.booleans(), ts=st.floats(), reason=st.none()),
            max_size=2,
        ).map(tuple),
    )
)
def test_baseline_never_crashes(signals: dict[str, tuple[Signal, ...]]) -> None:
    s = baseline.initial_state(0.0)
    for k in range(2):
        d = baseline.step(Snapshot(float(k), signals), s, baseline.BaselineParams(), float(k))
        assert 0.0 <= d.setpoints.valve <= 1.0 and 0.0 <= d.setpoints.fan <= 1.0
        s = d.state


# --- purity -----------------------------------------------------------------------------

CONTROL = Path(__file__).resolve().parent.parent / "heatd" / "control"
ALLOWED_TOP = {"__future__", "collections", "dataclasses", "enum", "functools", "itertools",
               "math", "typing", "types", "pydantic", "heatd"}  # fmt: skip


def test_control_core_is_pure() -> None:
    """No I/O, no clock, no asyncio: only the stdlib pieces above, pydantic and itself."""
    for path in CONTROL.glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    assert node.func.id not in {"open", "print", "input"}, path.name
                continue
            for name in names:
                assert name.split(".")[0] in ALLOWED_TOP, f"{path.name} imports {name}"
                assert not name.startswith("heatd.") or name.startswith("heatd.control"), name


def test_only_the_envelope_holds_the_bounds_key() -> None:
    """Later layers can narrow Bounds but never make their own."""
    for path in CONTROL.glob("*.py"):
        text = path.read_text()
        if path.name not in ("bounds.py", "envelope.py"):
            assert "_ENVELOPE_KEY" not in text, path.name
        if path.name != "bounds.py":
            assert "_ADMIT_KEY" not in text, path.name
