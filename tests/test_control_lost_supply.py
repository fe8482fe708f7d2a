"""A lost coolant supply reading: the worst case with its fans floored by the return."""

from __future__ import annotations

import pytest

from heatd.control import roles as R
from heatd.control.bounds import device_bounds
from heatd.control.envelope import EnvelopeState, envelope
from heatd.control.params import ControlParams
from heatd.control.signals import Snapshot
from heatd.control.validate import ValidationState, validate

P = ControlParams()
W = 25.0
"""The loop's heat capacity rate, kW/K: 100 kW of IT warm it by 4 K."""


def loop(now: float, supply: float | None = 35.0, it: float | None = 100.0,
         **over: object) -> Snapshot:
    """A loop in balance: the return is the supply plus IT / W, readings never sit still."""
    wobble = 0.05 * (now % 3)
    sup = 35.0 + wobble
    values: dict[str, object] = {
        R.COOLANT_SUPPLY_TEMP: None if supply is None else supply + wobble,
        R.COOLANT_RETURN_TEMP: sup + (100.0 if it is None else it) / W,
        R.COOLANT_FLOW: W / 4.18, R.IT_POWER: it,
        R.HP_RUNNING: 1.0, R.HP_FAULT: 0.0, R.HP_TRIP_CODE: 0.0,
        R.DH_DEMAND: 80.0, R.HP_HEAT: 60.0, R.HP_POWER: 17.0,
    }  # fmt: skip
    values.update({k.replace("__", "."): v for k, v in over.items()})
    return Snapshot.from_values(now, values)  # type: ignore[arg-type]


def _worst(ret: float | None):
    snap = loop(100.0, supply=None, it=None, coolant__return_temp=ret)
    inp, _ = validate(snap, ValidationState(), P, 100.0)
    prev = device_bounds().admit(0.5, 0.2, True, 0.6, False, True, 0.2)
    return envelope(inp, prev, EnvelopeState(), P, 100.0).bounds


def test_the_worst_case_for_a_lost_supply_has_its_fans_floored_by_the_return() -> None:
    """The return bounds the supply from above: at or below the coolant's low limit the
    fans may stop, from the margin band up they run full; recovery is out either way."""
    env = P.envelope
    band = env.supply_limit_c - env.supply_margin_k
    for ret, fan in ((env.supply_low_c - 5.0, 0.0), (env.supply_low_c, 0.0),
                     ((env.supply_low_c + band) / 2, 0.5), (band, 1.0), (band + 4.0, 1.0),
                     (None, 1.0)):
        b = _worst(ret)
        assert b.fan_min == pytest.approx(fan), ret
        assert (b.valve_max, b.cap_max, b.hp_start, b.hp_run) == (0.0, 0.0, False, False)


def test_the_low_limit_sits_below_the_band() -> None:
    with pytest.raises(ValueError, match="supply_low_c"):
        ControlParams.model_validate({"envelope": {"supply_low_c": 42.0}})



def _winter_night(control: dict[str, object] | None = None):
    """A January night in Chicago (-16 degC): the supply transmitter drops out for an hour."""
    from heatd.hil.cosim import simulate
    from heatd.hil.kpi import kpi_config
    from heatd.hil.scenario import scenario_from_dict
    from heatd.hil.score import make_controller, site_control

    sc = scenario_from_dict({
        "name": "winter_night_dropout", "weather": "chicago", "start_hour": 384,
        "duration_h": 6, "seed": 3,
        "faults": [{"kind": "sensor_dropout", "target": "coolant_supply_temp",
                    "start_s": 7200, "duration_s": 3600}],
    })  # fmt: skip
    params = site_control(sc.params)
    if control:
        data = params.model_dump()
        for section, values in control.items():
            data[section].update(values)  # type: ignore[call-overload]
        params = ControlParams.model_validate(data, strict=False)
    r = simulate(sc, make_controller("heatd", sc.params, params), kpi=kpi_config(sc.params),
                 trace_points=400)
    assert r.trace is not None
    return r.kpis, min(r.trace["supply_c"])


def test_without_an_estimate_the_worst_case_does_not_chill_the_loop_out_of_range() -> None:
    """The worst case's fans follow the return, so the loop stays inside its transmitters'
    range and the reading that comes back is believed: recovery starts again."""
    kpis, coldest = _winter_night()
    lo = R.DEFAULT_RANGES[R.COOLANT_SUPPLY_TEMP][0]
    assert kpis.supply_over_limit_s == 0.0
    assert coldest > lo + 5.0
    assert kpis.hp_off_h < 1.5  # out for the hour without its reading, no longer
