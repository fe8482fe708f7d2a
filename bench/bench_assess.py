"""Wall time of ``heatd assess`` on the demo site over a year (target < 120 s), with one
process and with one per CPU, beside a single co-simulated year of the same plant and
control (the baseline: what ``hil score`` would cost over the year), in the same run.

    .venv/bin/python bench/bench_assess.py [--hours 8760] [--dt 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from heatd.hil.cosim import heatd_controller, simulate
from heatd.hil.plant_params import load_params
from heatd.hil.scenario import Scenario, ScenarioSpec
from heatd.hil.score import site_control

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "config" / "demo-site.yaml"
TARGET_S = 120.0


def single_run(hours: float, dt: float) -> float:
    params = load_params(None)
    scenario = Scenario(ScenarioSpec(name="year", start_hour=0, duration_h=hours, seed=1),
                        params, 1)
    started = time.perf_counter()
    simulate(scenario, heatd_controller(site_control(params, DEMO)), dt=dt)
    return time.perf_counter() - started


def assess(hours: float, dt: float, jobs: int, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "heatd.cli", "assess", str(DEMO), "--hours",
                    str(hours), "--dt", str(dt), "--jobs", str(jobs), "--no-progress",
                    "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=8760.0)
    parser.add_argument("--dt", type=float, default=10.0)
    parser.add_argument("--out", default="out/bench-assess")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    baseline = single_run(args.hours, args.dt)
    one = assess(args.hours, args.dt, 1, Path(args.out))
    many = assess(args.hours, args.dt, cpus, Path(args.out))
    print(f"{args.hours:g} h at dt {args.dt:g} s (load average {os.getloadavg()[0]:.1f})")
    print(f"  one co-simulated run (baseline)   {baseline:7.1f} s")
    print(f"  heatd assess, 1 process           {one:7.1f} s  ({one / baseline:.2f}x)")
    print(f"  heatd assess, {cpus} processes       {many:7.1f} s  ({many / baseline:.2f}x)"
          f"  target < {TARGET_S:g} s: {'met' if many < TARGET_S else 'NOT met'}")


if __name__ == "__main__":
    main()
