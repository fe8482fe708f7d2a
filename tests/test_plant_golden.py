"""The plant steps exactly as recorded: every state of eight scripted runs, bit for bit.

The physics tests bound what the plant does; this one pins *how*, so a rewrite of
`heatd.hil.plant.step` for speed or readability cannot drift by a rounding. The runs are
synthetic (formulas, not the weather data) and together reach every branch of the step:
heartbeat loss, the PLC high limit, server throttling, each heat-pump trip and its reset
edge, the unloading heat pump, storage and header, diverting and mixing valves, a lagged
valve, long steps split into substeps, and a network too cold to take heat.

`tests/data/plant_golden.json` keeps, per run, a SHA-256 over the repr of every state and
every 97th state in full (so a failure says which field drifted, and when). Record it again
only when the physics is meant to change, and say so in the commit:

    .venv/bin/python tests/test_plant_golden.py
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from heatd.hil.plant import Actuators, Disturbances, PlantState, initial_state, step
from heatd.hil.plant_params import load_params

GOLDEN = Path(__file__).parent / "data" / "plant_golden.json"
SAMPLE_EVERY = 97


class Run(NamedTuple):
    overrides: dict[str, Any]
    dt: float
    steps: int
    start: dict[str, Any]
    act: Callable[[PlantState, int], Actuators]
    dist: Callable[[int], Disturbances]


def _busy(state: PlantState, k: int) -> Actuators:
    """Runs the heat pump, moves valve and fans, pulses a reset every 30 min and lets the
    heartbeat stall for a minute every 2.5 h."""
    fan = min(max((state.supply_temp_c - 28.0) / 6.0, 0.0), 1.0)
    valve = 0.8 if state.hp_running else 0.1
    capacity = 1.0 if state.tank_c[0] < 72.0 else 0.3
    heartbeat = k if k % 900 >= 6 else k - k % 900
    return Actuators(valve, k % 97 < 80, capacity, k % 180 == 0, fan, heartbeat)


def _restless(state: PlantState, k: int) -> Actuators:
    """Starts the heat pump every 4 minutes (the starts-per-hour trip), fans mostly off."""
    return Actuators(1.0, k % 24 < 16, 1.0, k % 400 == 0, 0.1 if k % 500 < 400 else 1.0, k)


def _seasons(k: int) -> Disturbances:
    return Disturbances(
        it_power_kw=150.0 + 90.0 * math.sin(k / 500.0),
        outdoor_temp_c=10.0 + 15.0 * math.sin(k / 3000.0),
        dh_demand_kw=400.0 + 350.0 * math.sin(k / 700.0),
        dh_return_temp_c=40.0 + 5.0 * math.sin(k / 1100.0),
        hp_fault=1500 <= k % 2000 < 1530,
    )


def _hot(k: int) -> Disturbances:
    """Full IT load on a hot day; the network stops drawing and returns hot water."""
    quiet = k % 3000 >= 1500
    return Disturbances(250.0, 30.0 + 8.0 * math.sin(k / 400.0), 0.0 if quiet else 600.0,
                        84.0 if quiet else 45.0)  # fmt: skip


def _full_storage(k: int) -> Disturbances:
    """A charged tank and a network that takes nothing: the condenser overheats."""
    return Disturbances(200.0, 15.0, 0.0, 83.0)


def _cold_network(k: int) -> Disturbances:
    """A network returning warmer than the tank top, then a huge demand at the flow limit."""
    return Disturbances(180.0, 5.0, 3000.0 if k % 1000 < 500 else 200.0,
                        62.0 + 10.0 * math.sin(k / 150.0))  # fmt: skip


RUNS: dict[str, Run] = {
    "busy": Run({}, 10.0, 4000, {"it_power_kw": 150.0}, _busy, _seasons),
    "header_only": Run({"storage": {"enabled": False}}, 10.0, 3000, {}, _busy, _seasons),
    "carnot_mixing_lagged_long_steps": Run(
        {"heat_pump": {"cop_model": "carnot"}, "storage": {"nodes": 2},
         "valve": {"kind": "mixing", "lag_s": 40.0}},
        25.0, 2000, {"it_power_kw": 150.0}, _busy, _seasons),
    "hot_trips": Run({}, 10.0, 4000, {"it_power_kw": 250.0, "supply_temp_c": 40.0},
                     _restless, _hot),
    "throttling": Run({"plc": {"high_limit_c": 100.0}, "drycooler": {"ua_nominal_kw_k": 0.0}},
                      10.0, 2500, {"it_power_kw": 250.0, "supply_temp_c": 46.0},
                      _restless, _hot),
    "restless": Run({}, 10.0, 2000, {"it_power_kw": 150.0}, _restless, _seasons),
    "full_storage": Run({}, 10.0, 1500, {"it_power_kw": 200.0, "storage_top_c": 83.0,
                                         "storage_bottom_c": 83.0}, _busy, _full_storage),
    "cold_network": Run({"dh": {"accept_band_k": 4.0}}, 10.0, 2000,
                        {"storage_top_c": 60.0, "storage_bottom_c": 50.0}, _busy, _cold_network),
}  # fmt: skip


def trajectory(run: Run) -> Iterator[PlantState]:
    params = load_params(None, run.overrides)
    state = initial_state(params, **run.start)
    for k in range(run.steps):
        state = step(state, run.act(state, k), run.dist(k), run.dt, params)
        yield state


def _plain(state: PlantState) -> list[Any]:
    """The state as JSON would read it back (tuples become lists; floats keep every bit)."""
    return json.loads(json.dumps(list(state)))


def record(run: Run) -> dict[str, Any]:
    digest = hashlib.sha256()
    samples = {}
    for k, state in enumerate(trajectory(run)):
        digest.update(repr(tuple(state)).encode())
        if k % SAMPLE_EVERY == 0:
            samples[str(k)] = _plain(state)
    return {"sha256": digest.hexdigest(), "samples": samples}


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("name", RUNS)
def test_plant_steps_exactly_as_recorded(name: str, golden: dict[str, Any]) -> None:
    expected = golden[name]
    got = record(RUNS[name])
    for k, sample in expected["samples"].items():
        state = dict(zip(PlantState._fields, got["samples"][k], strict=True))
        want = dict(zip(PlantState._fields, sample, strict=True))
        drifted = {f: (state[f], want[f]) for f in PlantState._fields if state[f] != want[f]}
        assert not drifted, f"{name}, step {k}: (got, recorded) {drifted}"
    assert got["sha256"] == expected["sha256"], f"{name}: a state between the samples drifted"


def test_the_runs_reach_every_protection() -> None:
    """Guards the recording's reach: each trip, fallback, high limit and throttling occur."""
    seen: dict[str, set[Any]] = {"trip": set(), "fallback": set(), "overtemp": set()}
    throttled = False
    for run in RUNS.values():
        for state in trajectory(run):
            seen["trip"].add(state.hp_trip_code)
            seen["fallback"].add(state.plc_fallback)
            seen["overtemp"].add(state.plc_overtemp)
            throttled |= state.it_power_kw < run.dist(0).it_power_kw - 1.0 and run.dist is _hot
    assert seen == {"trip": {0, 1, 2, 3, 4}, "fallback": {False, True},
                    "overtemp": {False, True}}  # fmt: skip
    assert throttled


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({name: record(run) for name, run in RUNS.items()}) + "\n")
    print(f"recorded {GOLDEN}")
