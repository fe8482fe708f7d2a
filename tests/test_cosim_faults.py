"""The co-simulation looks the active faults up only when the set can change: between two
changes it must hold exactly the faults active at every step."""

from __future__ import annotations

import math

from heatd.hil.cosim import _faults_at
from heatd.hil.faults import Fault


def test_active_faults_hold_until_the_next_change() -> None:
    faults = (
        Fault(0, "sensor_nan", "outdoor_temp", 30.0, 95.0),
        Fault(1, "sensor_dropout", "dh_demand", 55.0, math.inf),
        Fault(2, "comms_loss", "heatpump", 95.0, 120.0),
        Fault(3, "sensor_stuck", "coolant_flow", 12.5, 12.5),
    )
    active: list[Fault] = []
    change = -math.inf
    lookups = 0
    for k in range(40):
        t = k * 5.0
        if t >= change:
            active, change = _faults_at(faults, t)
            lookups += 1
        assert active == [f for f in faults if f.start_s <= t < f.end_s], t
        assert change > t
    assert lookups == 6  # at 0, 15 (past 12.5), 30, 55, 95 and 120
    assert change == math.inf


def test_no_faults_is_one_lookup() -> None:
    assert _faults_at((), 0.0) == ([], math.inf)
