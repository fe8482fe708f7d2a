"""Cost of one control step, and its ratio to the rule-based baseline, in the same run.

Drives both controllers through the same pre-built, realistic snapshots (a full site:
every role bound, eight rack inlet sensors, slowly varying values, a heat pump that
follows its enable), so only the step itself is timed. ``--replay`` also times heatd's
step on the snapshots of a co-simulated run (the readings a 12-hour winter co-simulation
fed heatd, in the co-simulator's own form), each step on a fresh snapshot. ``--quiet``
also times it with every temperature read to 0.1 K: most readings stay the same from one
cycle to the next, the busy path of the frozen judgement.

    .venv/bin/python bench/bench_control.py [--steps N] [--repeat R] [--replay] [--quiet]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

from heatd.control import baseline
from heatd.control.core import step
from heatd.control.params import ControlParams
from heatd.control.signals import SampledSignals, Signal, Snapshot
from heatd.control.state import initial_state

TARGET_US = 50.0


def snapshots(n: int, t0: float) -> list[Snapshot]:
    """A plausible stretch of a fully instrumented site, one snapshot per second.

    The valve position feedback is left out: open loop, it could not follow the command,
    and the envelope would (rightly) declare the recovery path broken.
    """
    out = []
    for k in range(n):
        now = t0 + k
        w = math.sin(k / 600.0)
        run = 1.0 if k > 400 else 0.0
        vals = {
            "coolant.supply_temp": 38.5 + 0.8 * w + 0.01 * (k % 5),
            "coolant.return_temp": 31.0 + 0.5 * w,
            "coolant.flow": 20.0,
            "it.power": 80.0 + 10.0 * w,
            "it.energy": 1e5 + k * 0.02,
            "hp.running": run,
            "hp.fault": 0.0,
            "hp.trip_code": 0.0,
            "hp.lockout": 0.0,
            "hp.power": 15.0 * run,
            "hp.heat": 55.0 * run,
            "hp.heat_energy": 1e5 + k * 0.015,
            "dh.supply_temp": 70.0,
            "dh.return_temp": 45.0,
            "dh.demand": 60.0 + 20.0 * w,
            "storage.top_temp": 65.0,
            "storage.bottom_temp": 50.0,
            "outdoor.temp": 5.0 + w,
            "plc.fallback": 0.0,
            "drycooler.fan.actual": 0.5,
            "hp.capacity.actual": 0.5 * run,
        }
        sig: dict[str, tuple[Signal, ...]] = {
            r: (Signal(v, True, now, None),) for r, v in vals.items()
        }
        sig["rack.inlet_temp"] = tuple(
            Signal(22.0 + 0.2 * i + 0.3 * w + 0.001 * (k % 3), True, now, None) for i in range(8)
        )
        out.append(Snapshot(now, sig))
    return out


def quantised(snaps: list[Snapshot], quantum: float) -> list[Snapshot]:
    """The same snapshots with every temperature read to ``quantum``."""
    def read(role: str, sig: Signal) -> Signal:
        if role.endswith("temp") and type(sig.value) is float:
            return replace(sig, value=round(sig.value / quantum) * quantum)
        return sig
    return [Snapshot(s.now, {r: tuple(read(r, x) for x in points)
                             for r, points in s.signals.items()}) for s in snaps]


def quiet_us(steps: int, repeat: int) -> float:
    """Best-run microseconds per step of heatd's core on 0.1 K readings."""
    t0 = 1_700_000_000.0
    snaps, params = quantised(snapshots(steps, t0), 0.1), ControlParams()
    return min(time_steps(step, initial_state(t0), params, snaps) for _ in range(repeat))


def time_steps(fn: Callable[..., Any], state: Any, params: Any, snaps: list[Snapshot]) -> float:
    """Mean microseconds per step over the whole sequence, state threaded through."""
    t = time.perf_counter()
    for snap in snaps:
        state = fn(snap, state, params, snap.now).state
    return (time.perf_counter() - t) / len(snaps) * 1e6


def measure(steps: int = 20_000, repeat: int = 5) -> dict[str, float]:
    """Best-run microseconds per step of heatd's core and of the baseline controller."""
    t0 = 1_700_000_000.0
    snaps = snapshots(steps, t0)
    params, bparams = ControlParams(), baseline.BaselineParams()
    core_us, base_us = [], []
    for _ in range(repeat):  # interleaved, so both see the same machine state
        core_us.append(time_steps(step, initial_state(t0), params, snaps))
        base_us.append(time_steps(baseline.step, baseline.initial_state(t0), bparams, snaps))
    return {"core_us": min(core_us), "baseline_us": min(base_us)}


def cosim_readings(hours: float = 12.0) -> tuple[ControlParams, list[tuple[float, dict[str, Any]]]]:
    """heatd's params for the winter scenario, and the readings a co-simulation of it fed
    heatd's step, one (time, readings) per 10 s step."""
    from heatd.hil.cosim import heatd_controller, simulate
    from heatd.hil.scenario import load_scenario
    from heatd.hil.score import site_control

    sc = load_scenario("winter_week")
    params = site_control(sc.params)
    seen: list[tuple[float, dict[str, Any]]] = []

    def recording(snap: Snapshot, state: Any, p: ControlParams, now: float) -> Any:
        seen.append((now, dict(cast(SampledSignals, snap.signals).readings)))
        return step(snap, state, p, now)

    simulate(sc, replace(heatd_controller(params), step=recording), dt=10.0,
             duration_s=hours * 3600.0)
    return params, seen


def replay_us(params: ControlParams, seen: list[tuple[float, dict[str, Any]]],
              repeat: int) -> float:
    """Best-run microseconds per step on fresh snapshots of the recorded readings (a
    snapshot keeps the Signals a step made from it)."""
    best = []
    for _ in range(repeat):
        snaps = [Snapshot(now, SampledSignals(now, dict(r))) for now, r in seen]
        best.append(time_steps(step, initial_state(snaps[0].now), params, snaps))
    return min(best)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--replay", action="store_true",
                    help="also time the step on a co-simulated run's snapshots")
    ap.add_argument("--quiet", action="store_true",
                    help="also time the step on readings to 0.1 K")
    args = ap.parse_args()
    figures = measure(args.steps, args.repeat)
    core, base = figures["core_us"], figures["baseline_us"]
    print(f"steps per run      {args.steps} x {args.repeat} runs (best run reported)")
    print(f"control step       {core:7.2f} us   (target <= {TARGET_US:g} us: "
          f"{'met' if core <= TARGET_US else 'MISSED'})")
    print(f"baseline step      {base:7.2f} us")
    print(f"ratio core/base    {core / base:7.2f}")
    if args.replay:
        params, seen = cosim_readings()
        print(f"co-simulated run   {replay_us(params, seen, args.repeat):7.2f} us   "
              f"({len(seen)} steps of a winter co-simulation, best of {args.repeat})")
    if args.quiet:
        print(f"0.1 K readings     {quiet_us(args.steps, args.repeat):7.2f} us")


if __name__ == "__main__":
    main()
