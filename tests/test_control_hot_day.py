"""A hot day: the dry cooler at full fans cannot carry the IT heat, and the heat pump is
the cooling that is left. Once the fans are full with the supply over its setpoint and
not falling, the heat pump keeps its recovery share and loads with the cooling demand,
also inside the margin band and at the limit, where the recovery is otherwise driven
down; a heat pump that is out, out of contact, on a hot evaporator inlet or without a
sink for its condenser is not counted on, and an unknown supply is the worst case."""

from __future__ import annotations

import pytest

from heatd.control import roles as R
from heatd.control.core import Decision, step
from heatd.control.events import Cause
from heatd.control.params import ControlParams
from heatd.control.signals import Snapshot
from heatd.control.state import State, initial_state

P = ControlParams.model_validate({"validation": {"frozen_after_s": None}})
"""The defaults; the readings here are scripted, and would be judged frozen."""
ENV, OPT = P.envelope, P.optimiser
SHARE = ENV.cooling_recovery_share
BAND = ENV.supply_limit_c - ENV.supply_margin_k
DT = 2.0

WARM: dict[str, object] = {
    R.COOLANT_SUPPLY_TEMP: 40.0, R.COOLANT_RETURN_TEMP: 45.0, R.RACK_INLET_TEMP: [22.0],
    R.IT_POWER: 200.0, R.DH_DEMAND: 80.0, R.STORAGE_TOP_TEMP: 70.0, R.HP_FAULT: 0.0,
    R.HP_TRIP_CODE: 0.0, R.HP_LOCKOUT: 0.0, R.PLC_FALLBACK: 0.0,
}  # fmt: skip
"""A summer afternoon: the heat pump serving the network, the loop at its setpoint."""


class Rig:
    """The control core on scripted readings, its heat pump answering its enable."""

    def __init__(self) -> None:
        self.state: State = initial_state(0.0)
        self.now = 0.0
        self.running = False
        self.d: Decision[State] | None = None

    def once(self, values: dict[str, object]) -> Decision[State]:
        self.now += DT
        given = {R.HP_RUNNING: float(self.running), **values}
        d = step(Snapshot.from_values(self.now, given), self.state, P, self.now)  # type: ignore[arg-type]
        self.state, self.running, self.d = d.state, d.setpoints.hp_enable, d
        return d

    def run(self, values: dict[str, object], seconds: float) -> Decision[State]:
        end = self.now + seconds
        d = self.once(values)
        while self.now < end:
            d = self.once(values)
        return d


def _saturated(rig: Rig, supply: float = 43.5, **more: object) -> Decision[State]:
    """Recovering, then a loop that warms into the band until the fans are full; the
    supply rising still, so the heat pump is taken on as soon as they are."""
    rig.run(WARM, 900.0)
    assert rig.running
    d = rig.once({**WARM, R.COOLANT_SUPPLY_TEMP: supply})
    while d.setpoints.fan < 1.0:
        assert rig.now < 3000.0, "fans never full"
        supply += 0.001
        d = rig.once({**WARM, R.COOLANT_SUPPLY_TEMP: supply, **more})
    return d


@pytest.mark.parametrize("supply", [BAND + 1.5, ENV.supply_limit_c])
def test_a_saturated_dry_cooler_leaves_the_heat_pump_its_flow_and_loads_it(
        supply: float) -> None:
    """In the band and at the limit: the valve stays at the recovery share (not driven to
    the dry cooler), the compressor loads to full with the cooling demand, and the limit
    names the heat pump as cooling."""
    rig = Rig()
    _saturated(rig, supply)
    hot = {**WARM, R.COOLANT_SUPPLY_TEMP: supply}
    d = rig.run(hot, 300.0)
    assert d.setpoints.fan == 1.0
    assert d.setpoints.hp_enable
    assert d.setpoints.valve >= SHARE - 1e-9, d.setpoints
    assert d.setpoints.hp_capacity == pytest.approx(1.0), d.setpoints
    assert any(x.verdict == "heat pump cooling" for x in d.limits if x.name == "valve_max")


def test_the_heat_pump_stays_a_cooling_path_until_the_dry_cooler_has_room() -> None:
    """Taken on, it stays while the fans are near full: a reading under the setpoint,
    which kicks them off full for a cycle, does not end it; once the cooling loop has
    brought them down to half, the dry cooler has room again and it ends."""
    rig = Rig()
    _saturated(rig)
    rig.run({**WARM, R.COOLANT_SUPPLY_TEMP: 43.5}, 120.0)
    d = rig.once({**WARM, R.COOLANT_SUPPLY_TEMP: OPT.supply_setpoint_c - 0.5})
    assert d.setpoints.fan < 1.0 and rig.state.env.hp_cooling
    assert d.setpoints.valve >= SHARE - 1e-9
    while d.setpoints.fan >= 0.5:
        assert rig.now < 20000.0, "fans never down to half"
        d = rig.once({**WARM, R.COOLANT_SUPPLY_TEMP: OPT.supply_setpoint_c - 0.5})
        assert rig.state.env.hp_cooling
    rig.once({**WARM, R.COOLANT_SUPPLY_TEMP: OPT.supply_setpoint_c - 0.5})
    assert not rig.state.env.hp_cooling


OUT = {
    "tripped": {R.HP_TRIP_CODE: 3.0},
    "faulted": {R.HP_FAULT: 1.0},
    "locked out": {R.HP_LOCKOUT: 1.0},
}


@pytest.mark.parametrize("name", sorted(OUT))
def test_a_heat_pump_that_is_out_gets_nothing(name: str) -> None:
    rig = Rig()
    _saturated(rig)
    d = rig.run({**WARM, R.COOLANT_SUPPLY_TEMP: 44.0, **OUT[name]}, 30.0)
    assert d.bounds.valve_max == 0.0 and not d.bounds.hp_run, d.bounds
    assert d.setpoints.valve == 0.0 and not d.setpoints.hp_enable
    assert d.setpoints.fan == 1.0


def test_a_heat_pump_out_of_contact_gets_no_more_flow_and_no_start() -> None:
    rig = Rig()
    _saturated(rig)
    before = rig.run({**WARM, R.COOLANT_SUPPLY_TEMP: 44.0}, 60.0).setpoints.valve
    d = rig.run({**WARM, R.COOLANT_SUPPLY_TEMP: 44.0, R.HP_FAULT: None}, 30.0)
    assert d.setpoints.valve <= before
    assert not rig.state.env.hp_cooling


def test_a_stopped_heat_pump_out_of_contact_is_not_started() -> None:
    rig = Rig()
    cold_store = {**WARM, R.DH_DEMAND: 0.0, R.STORAGE_TOP_TEMP: 68.0, R.HP_FAULT: None}
    d = rig.run({**cold_store, R.COOLANT_SUPPLY_TEMP: 44.0}, 600.0)
    assert not d.setpoints.hp_enable and d.setpoints.valve == 0.0


@pytest.mark.parametrize("ret", [OPT.evaporator_inlet_max_c, None])
def test_an_evaporator_inlet_too_hot_or_unknown_is_no_cooling_path(ret: float | None) -> None:
    """The return at the heat pump's evaporator limit (or not known): recovery is driven
    down across the band as before, and at the limit the compressor idles."""
    rig = Rig()
    _saturated(rig)
    limit = {**WARM, R.COOLANT_SUPPLY_TEMP: ENV.supply_limit_c, R.COOLANT_RETURN_TEMP: ret}
    d = rig.run(limit, 120.0)
    assert d.setpoints.valve == 0.0
    assert not d.setpoints.hp_enable or d.setpoints.hp_capacity <= P.sequencer.capacity_min
    assert not rig.state.env.hp_cooling


def test_a_condenser_without_a_sink_is_no_cooling_path() -> None:
    """No network demand and the storage full: the heat pump cannot hand its heat on."""
    rig = Rig()
    _saturated(rig)
    full = {**WARM, R.COOLANT_SUPPLY_TEMP: ENV.supply_limit_c, R.DH_DEMAND: 0.0,
            R.STORAGE_TOP_TEMP: OPT.storage_full_c + 1.0}
    d = rig.run(full, 120.0)
    assert d.setpoints.valve == 0.0
    assert not rig.state.env.hp_cooling


def test_an_unknown_supply_is_the_worst_case() -> None:
    rig = Rig()
    _saturated(rig)
    rig.run({**WARM, R.COOLANT_SUPPLY_TEMP: 44.0}, 60.0)
    assert rig.state.env.hp_cooling
    lost = {**WARM, R.COOLANT_SUPPLY_TEMP: None, R.COOLANT_RETURN_TEMP: None}
    d = rig.run(lost, 30.0)
    assert (d.setpoints.fan, d.setpoints.valve, d.setpoints.hp_enable) == (1.0, 0.0, False)
    assert not rig.state.env.hp_cooling


def test_a_falling_supply_does_not_take_the_heat_pump_on() -> None:
    """Fans full with the supply in the band but falling: the dry cooler is catching up,
    and recovery is driven down across the band as before."""
    rig = Rig()
    rig.run(WARM, 900.0)
    supply = 44.9
    no_sink = {R.DH_DEMAND: 0.0, R.STORAGE_TOP_TEMP: OPT.storage_full_c + 1.0}
    d = rig.run({**WARM, R.COOLANT_SUPPLY_TEMP: supply, **no_sink}, 300.0)
    assert d.setpoints.fan == 1.0 and not rig.state.env.hp_cooling
    for _ in range(300):  # a sink again, the supply falling
        supply -= 0.004
        d = rig.once({**WARM, R.COOLANT_SUPPLY_TEMP: supply})
        assert not rig.state.env.hp_cooling
    assert d.setpoints.valve <= 1.0 - (supply - BAND) / ENV.supply_margin_k + 1e-9


def test_a_valve_following_again_after_a_seizure_does_not_stop_the_cooling_heat_pump() -> None:
    """A valve that follows again after a seizure keeps recovery out for an hour; not
    while the heat pump is the cooling beside a saturated dry cooler."""
    rig = Rig()
    _saturated(rig)
    hot = {**WARM, R.COOLANT_SUPPLY_TEMP: 43.5}
    d = rig.run(hot, 120.0)
    seized = {**hot, R.VALVE_RECOVERY_ACTUAL: 0.9}
    while R.VALVE_RECOVERY not in rig.state.env.alarms:
        assert rig.now < 10000.0, "seizure never declared"
        d = rig.once(seized)
    assert d.setpoints.hp_enable
    for _ in range(150):  # following again: the alarm holds for valve_clear_s
        d = rig.once({**hot, R.VALVE_RECOVERY_ACTUAL: d.setpoints.valve})
        assert rig.state.env.valve_ok_since is not None
        assert d.setpoints.hp_enable, d.limits
        assert d.bounds.hp_run


def test_a_start_for_cooling_waits_out_the_minimum_off_time() -> None:
    """The sink gone, the heat pump stops for want of heat; back at once, the heat pump
    is wanted for cooling at once, but starts only once its minimum off time has run."""
    rig = Rig()
    _saturated(rig)
    hot = {**WARM, R.COOLANT_SUPPLY_TEMP: 44.0}
    no_sink = {**hot, R.DH_DEMAND: 0.0, R.STORAGE_TOP_TEMP: OPT.storage_full_c + 1.0}
    while rig.running:
        assert rig.now < 20000.0, "the heat pump never stopped"
        rig.once(no_sink)
    off_at, refused = rig.now, False
    while not rig.running:
        assert rig.now < off_at + 2 * P.sequencer.min_off_s, "never started for cooling"
        d = rig.once(hot)
        assert rig.state.env.hp_cooling
        refused |= any(x.cause is Cause.MIN_OFF_TIME for x in d.limits)
    assert refused, "not wanted for cooling while off"
    assert rig.now - off_at >= P.sequencer.min_off_s


def test_starts_for_cooling_keep_within_the_heat_pumps_start_budget() -> None:
    """The sink comes and goes: each time it is back the heat pump is wanted for cooling
    at once, yet no window of ``starts_window_s`` holds more than ``max_starts_per_hour``
    starts, and the budget is seen to bite (a start refused for it)."""
    seq = P.sequencer
    rig = Rig()
    _saturated(rig)
    hot = {**WARM, R.COOLANT_SUPPLY_TEMP: 44.0}
    no_sink = {**hot, R.DH_DEMAND: 0.0, R.STORAGE_TOP_TEMP: OPT.storage_full_c + 1.0}
    starts: list[float] = []
    budget_bit = False
    while rig.now < 4 * seq.starts_window_s:
        while rig.running:
            rig.once(no_sink)
        while not rig.running:
            d = rig.once(hot)
            budget_bit |= any(x.cause is Cause.STARTS_USED for x in d.limits)
        starts.append(rig.now)
    assert budget_bit, "the start budget never bit: the test did not reach it"
    for first in starts:
        within = [t for t in starts if first <= t < first + seq.starts_window_s]
        assert len(within) <= seq.max_starts_per_hour, (first, within)
