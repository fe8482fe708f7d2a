"""Cost of co-simulating a whole year at 10 s steps (target: <= 45 s and at most 2x the
plant alone), and its ratio to the pure plant stepping alone, in the same run.

A year-long Copenhagen scenario (no faults) is stepped four ways over the same hours:
1. the plant alone, with the scenario's disturbances and fixed actuators;
2. the co-simulation with the "none" controller (plant + KPIs, no sensing, no control);
3. the co-simulation with the rule-based baseline;
4. the co-simulation with heatd (sensing, snapshots, control step, actuators, KPIs).
Then the heatd control step alone is timed on fresh snapshots of readings from its own run, so
the report splits the cost into plant, controller and co-simulation glue.

    .venv/bin/python bench/bench_cosim.py [--hours 8760] [--dt 10] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import time

from heatd.control.core import step as control_step
from heatd.control.state import initial_state as control_initial
from heatd.hil.cosim import NO_CONTROLLER, Controller, SnapshotBuilder, simulate
from heatd.hil.plant import Actuators
from heatd.hil.plant import step as plant_step
from heatd.hil.plant_params import compile_params
from heatd.hil.scenario import Scenario, scenario_from_dict
from heatd.hil.score import make_controller, site_control
from heatd.hil.sensors import SensorNoise, sensor_names, true_value_names, true_values

YEAR_STEPS_10S = 3_153_600
TARGET_S = 45.0
TARGET_RATIO = 2.0
REPLAY = 20_000


def plant_only(sc: Scenario, steps: int, dt: float) -> float:
    params = compile_params(sc.params)
    acts = (Actuators(0.8, True, 0.8, False, 0.2, 0), Actuators(0.8, True, 0.8, False, 0.2, 1))
    dist = sc.disturbances
    state = sc.initial_state()
    t0 = time.perf_counter()
    for k in range(steps):
        state = plant_step(state, acts[k & 1], dist(k * dt), dt, params)
    return time.perf_counter() - t0


def cosim(sc: Scenario, ctl: Controller, hours: float, dt: float) -> tuple[float, float]:
    t0 = time.perf_counter()
    run = simulate(sc, ctl, dt=dt, duration_s=hours * 3600.0)
    return time.perf_counter() - t0, run.kpis.it_heat_reused_mwh


def control_alone(sc: Scenario, ctl: Controller, dt: float) -> tuple[float, float]:
    """Microseconds per heatd step on snapshots of a plant it is really controlling, and per
    sensing + snapshot (true values, sensor noise, picked into a Snapshot, as the
    co-simulator does). The step is timed on fresh snapshots: one a control step has read
    keeps the Signals it made, which a real step has to make."""
    names = true_value_names(sc.params)
    pick = SnapshotBuilder(sensor_names(sc.params)).picker(names)
    compiled = compile_params(sc.params)
    state, cstate = sc.initial_state(), control_initial(0.0)
    readings, states = [], []
    for k in range(REPLAY):
        t = k * dt
        values = true_values(state, sc.params)
        d = control_step(pick(values, t), cstate, ctl.params, t)
        cstate, sp = d.state, d.setpoints
        act = Actuators(sp.valve, sp.hp_enable, sp.hp_capacity, sp.hp_reset, sp.fan, k)
        states.append(state)
        state = plant_step(state, act, sc.disturbances(t), dt, compiled)
        readings.append(values)
    snaps = [pick(values, k * dt) for k, values in enumerate(readings)]
    cstate = control_initial(0.0)
    t0 = time.perf_counter()
    for snap in snaps:
        cstate = control_step(snap, cstate, ctl.params, snap.now).state
    step_us = (time.perf_counter() - t0) / len(snaps) * 1e6
    noise = SensorNoise(sc.params, sc.seed, names)
    t0 = time.perf_counter()
    for k, state in enumerate(states):
        values = true_values(state, sc.params)
        if noise.active:
            noise.apply(values)
        pick(values, k * dt)
    sense_us = (time.perf_counter() - t0) / len(states) * 1e6
    return step_us, sense_us


def year_scenario(hours: float) -> Scenario:
    return scenario_from_dict(
        {"name": "year", "weather": "copenhagen", "start_hour": 0, "duration_h": hours}
    )


def measure(hours: float = 8760.0, dt: float = 10.0) -> dict[str, float]:
    """Seconds for the plant alone and for the co-simulation with heatd over ``hours``,
    and both scaled to a year at 10 s steps."""
    sc = year_scenario(hours)
    steps = round(hours * 3600.0 / dt)
    plant_s = plant_only(sc, steps, dt)
    heatd_s, _ = cosim(sc, make_controller("heatd", sc.params, site_control(sc.params)),
                       hours, dt)
    per_year = YEAR_STEPS_10S / steps
    return {"hours": hours, "steps": steps, "plant_s": plant_s, "heatd_s": heatd_s,
            "plant_year_s": plant_s * per_year, "heatd_year_s": heatd_s * per_year}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=8760.0)
    ap.add_argument("--dt", type=float, default=10.0)
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    hours, dt = args.hours, args.dt
    sc = year_scenario(hours)
    steps = round(hours * 3600.0 / dt)
    per_year = YEAR_STEPS_10S / steps

    def report(what: str, seconds: float, plant_s: float) -> None:
        print(
            f"{what:<28}{seconds:8.2f} s  {seconds / steps * 1e6:7.2f} us/step  "
            f"year at 10 s: {seconds * per_year:7.1f} s  x{seconds / plant_s:5.2f} plant"
        )

    print(f"{hours:g} h at dt {dt:g} s: {steps} steps (a year at 10 s is {YEAR_STEPS_10S})")
    plant_s = plant_only(sc, steps, dt)
    report("plant alone", plant_s, plant_s)
    none_s, _ = cosim(sc, NO_CONTROLLER, hours, dt)
    report("co-sim, no controller", none_s, plant_s)
    control = site_control(sc.params)
    if not args.skip_baseline:
        base_s, _ = cosim(sc, make_controller("baseline", sc.params, control), hours, dt)
        report("co-sim, baseline", base_s, plant_s)
    heatd = make_controller("heatd", sc.params, control)
    heatd_s, mwh = cosim(sc, heatd, hours, dt)
    report("co-sim, heatd", heatd_s, plant_s)
    ctl_us, sense_us = control_alone(sc, heatd, dt)
    ctl_s, sense_s = ctl_us * steps / 1e6, sense_us * steps / 1e6
    rest_s = heatd_s - ctl_s - sense_s - none_s
    print(f"  of which, each timed alone: heatd's control step {ctl_us:.1f} us/step "
          f"({ctl_s / heatd_s:.0%}), sensing + snapshot {sense_us:.1f} us/step "
          f"({sense_s / heatd_s:.0%}), plant + KPIs {none_s / heatd_s:.0%}; the other "
          f"{rest_s / heatd_s:.0%} is the same work run interleaved (colder caches) "
          f"and the actuators")  # fmt: skip
    plant_us, heatd_us = plant_s / steps * 1e6, heatd_s / steps * 1e6
    glue_us = heatd_us - plant_us - ctl_us
    print(f"  co-simulation glue (heatd co-sim - plant alone - control step alone): "
          f"{glue_us:.1f} us/step, year at 10 s: {glue_us * YEAR_STEPS_10S / 1e6:.1f} s")
    year = heatd_s * per_year
    ratio = heatd_s / plant_s
    verdict = "met" if year <= TARGET_S and ratio <= TARGET_RATIO else "MISSED"
    print(f"heatd co-simulation of a year at 10 s: {year:.1f} s, x{ratio:.2f} the plant "
          f"(target <= {TARGET_S:g} s and x{TARGET_RATIO:g}: "
          f"{verdict}); heat-pump heat over the run {mwh:,.0f} MWh")  # fmt: skip


if __name__ == "__main__":
    main()
