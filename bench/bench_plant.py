"""Plant stepping speed: a whole year at 10 s steps (3.15 M steps), target < 60 s.

Pure stepping: disturbances are precomputed per hour from a year-long Copenhagen scenario
and the actuators alternate between two prebuilt values (the heartbeat toggles), so the
figure is the cost of `heatd.hil.plant.step` alone. `--with-scenario` also calls
`Scenario.disturbances(t)` every step, as a co-simulation would.

    .venv/bin/python bench/bench_plant.py [--hours 8760] [--dt 10] [--with-scenario]
"""

from __future__ import annotations

import argparse
import time

from heatd.hil.plant import Actuators, step, stored_heat_kwh
from heatd.hil.plant_params import compile_params
from heatd.hil.scenario import scenario_from_dict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=8760.0)
    ap.add_argument("--dt", type=float, default=10.0)
    ap.add_argument("--with-scenario", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    sc = scenario_from_dict(
        {"name": "year", "weather": "copenhagen", "start_hour": 0, "duration_h": args.hours}
    )
    hourly = [sc.disturbances(h * 3600.0) for h in range(int(args.hours) + 1)]
    params = compile_params(sc.params)
    print(f"scenario load + hourly precompute: {time.perf_counter() - t0:.2f} s")

    acts = (Actuators(0.5, True, 0.6, False, 0.5, 0), Actuators(0.5, True, 0.6, False, 0.5, 1))
    steps = round(args.hours * 3600.0 / args.dt)
    per_hour = 3600.0 / args.dt
    state = start = sc.initial_state()
    dt = args.dt
    t0 = time.perf_counter()
    if args.with_scenario:
        dist = sc.disturbances
        for k in range(steps):
            state = step(state, acts[k & 1], dist(k * dt), dt, params)
    else:
        for k in range(steps):
            state = step(state, acts[k & 1], hourly[int(k / per_hour)], dt, params)
    elapsed = time.perf_counter() - t0

    heat_in = state.it_energy_kwh + state.hp_electricity_kwh
    heat_out = state.heat_delivered_to_dh_kwh + state.heat_rejected_drycooler_kwh
    stored = stored_heat_kwh(state, params) - stored_heat_kwh(start, params)
    what = "step + Scenario.disturbances" if args.with_scenario else "pure plant step"
    print(f"{what}: {steps} steps of {dt:g} s ({args.hours:g} h) in {elapsed:.2f} s")
    print(f"  {steps / elapsed:,.0f} steps/s, {elapsed / steps * 1e6:.2f} us/step")
    print(f"  a year of 10 s steps at this cost: {3_153_600 * elapsed / steps:.1f} s")
    print(f"  energy balance error: {heat_in - heat_out - stored:.3e} kWh "
          f"of {state.it_energy_kwh:,.0f} kWh IT")  # fmt: skip


if __name__ == "__main__":
    main()
