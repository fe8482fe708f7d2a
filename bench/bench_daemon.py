"""heatd as it runs on the demo site: cycle start jitter, sensor-to-actuator latency, CPU
and resident memory.

Each cycle period runs its own stack from heatd.hil.rig.daemon: a private mosquitto
(MQTT publishing on), the plant simulator serving the demo site over real Modbus TCP,
Modbus RTU (on a pseudo-terminal pair) and OPC UA in this process at real-time speed, and
``heatd run`` as a subprocess.

- Jitter: heatd's own cycle statistics (start lateness over its last 600 cycles, from
  control/state) against a bare fixed-rate loop in a separate process running at the same
  time, with heatd's deadline logic (next_at += period; sleep until next_at; skip missed
  ticks), heatd's event loop (uvloop) and heatd's CycleStats. The machine is shared, so
  the ratio heatd / baseline is the figure to compare across runs.
- Latency: in mode recovery_off, the served coolant supply temperature steps (both
  redundant points, sensor_stuck) to 1 K above the envelope's supply limit; the envelope
  then asks for full dry cooler at once. Measured from the plant tick that serves the step
  (tick 10 ms during this phase) to the fan setpoint write arriving at the Modbus server
  (the dry cooler's RTU line),
  polled every 1 ms. The step is held for poll interval + cycle period + 1 s, then the next
  one waits until the fan has come down from full speed and a random phase has passed.
- CPU % (of one core) and VmRSS of the heatd process from /proc over the jitter window.

For the 100 ms period the site copy also polls the `default` group every 0.1 s.

    .venv/bin/python bench/bench_daemon.py [--seconds 90] [--samples 25] [--periods 1,0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop
from ruamel.yaml import YAML

from heatd.config_loader import load_site
from heatd.cycle_stats import CycleStats
from heatd.hil.rig.daemon import Stack, running_stack
from heatd.hil.rig.waiting import until

DEVICES = ("pdu", "cdu", "drycooler", "dh", "plc", "heatpump")
SUPPLY_SENSOR = "coolant_supply_temp"  # served by cdu.supply_temp_a and cdu.supply_temp_b
FULL_FAN = 0.9995
LATENCY_TICK_S = 0.01
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- baseline: a bare fixed-rate loop, in its own process --------------------------------

async def bare_loop(period: float, seconds: float) -> dict[str, float | int]:
    """heatd's deadline logic (time.monotonic, skip missed ticks) with nothing inside the
    cycle."""
    clock = time.monotonic
    stats = CycleStats(period)
    next_at = clock() + period / 2
    end = next_at + seconds
    while next_at < end:
        await asyncio.sleep(max(0.0, next_at - clock()))
        started = clock()
        stats.record(started - next_at, clock() - started)
        next_at += period
        now = clock()
        if next_at < now:
            next_at += ((now - next_at) // period + 1) * period
    return stats.summary()


def start_baseline(period: float, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, "--baseline-loop", str(period),
                             str(seconds)], stdout=subprocess.PIPE, text=True)


# --- /proc sampling ----------------------------------------------------------------------

def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/pid/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for pid {pid}")


@dataclass
class Usage:
    cpu_pct: float
    rss_mean_mib: float
    rss_max_mib: float


async def sample_usage(pids: list[int], seconds: float) -> list[Usage]:
    """CPU share of one core over the window and VmRSS once a second, per process."""
    ticks0 = [cpu_ticks(p) for p in pids]
    wall0 = time.monotonic()
    rss: list[list[float]] = [[] for _ in pids]
    end = wall0 + seconds
    while (left := end - time.monotonic()) > 0:
        for series, pid in zip(rss, pids, strict=True):
            series.append(rss_mib(pid))
        await asyncio.sleep(min(1.0, left))
    wall = time.monotonic() - wall0
    return [Usage(100.0 * (cpu_ticks(p) - t0) / CLK_TCK / wall, statistics.fmean(r), max(r))
            for p, t0, r in zip(pids, ticks0, rss, strict=True)]


# --- the stack -----------------------------------------------------------------------------

def set_poll_interval(site_path: Path, interval: float) -> None:
    yaml = YAML(typ="rt")
    tree = yaml.load(site_path.read_text())
    tree["poll_groups"]["default"]["interval"] = interval
    with site_path.open("w") as fh:
        yaml.dump(tree, fh)


async def until_running(stack: Stack) -> None:
    last = stack.observer.last
    await stack.until(lambda: last.get(stack.topic("status")) == "online", what="online")
    for device in DEVICES:
        await stack.until(lambda d=device: last.get(stack.topic(f"{d}/availability"))
                          == "online", what=f"{device} online")
    await stack.until(lambda: stack.control().get("cycle", {}).get("cycles", 0) > 3,
                      what="control cycles")


async def fresh_control(stack: Stack) -> dict[str, Any]:
    """A control/state published after now (it is throttled to one a second)."""
    now_ms = time.time() * 1000
    return await stack.until(lambda: stack.control().get("ts", 0) > now_ms
                             and stack.control(), timeout=5, what="fresh control state")


@dataclass
class JitterRun:
    heatd: dict[str, Any]
    baseline: dict[str, Any]
    cycles_before: int
    usage: Usage
    baseline_usage: Usage
    simulator_usage: Usage


async def measure_jitter(stack: Stack, period: float, seconds: float) -> JitterRun:
    """Both loops over the same wall window; CPU and memory of heatd, of the baseline
    (after its imports) and of this process (simulator, observer) over it."""
    assert stack.proc is not None
    child = start_baseline(period, seconds)
    assert child.stdout is not None
    if (await asyncio.to_thread(child.stdout.readline)).strip() != "ready":
        raise RuntimeError("baseline loop did not start")
    cycles_before = int(stack.control()["cycle"]["cycles"])
    usage = await sample_usage([stack.proc.pid, child.pid, os.getpid()], seconds)
    out, _ = await asyncio.to_thread(child.communicate, None, 30)
    if child.returncode != 0:
        raise RuntimeError(f"baseline loop failed ({child.returncode})")
    control = await fresh_control(stack)
    return JitterRun(control["cycle"], json.loads(out), cycles_before, *usage)


async def wait_for(condition: Callable[[], Any], timeout: float) -> float | None:
    """perf_counter when condition() first holds (polled every 1 ms), None on timeout."""
    try:
        await until(condition, timeout, poll=0.001)
    except AssertionError:
        return None
    return time.perf_counter()


@dataclass
class Step:
    """One supply step, in seconds from the plant tick that served it."""

    total: float
    """to the fan write arriving at the Modbus server."""
    seen: float | None
    """to the start of the first cycle whose snapshot held it (cdu/state ``ts``, 1 ms)."""


async def measure_latency(stack: Stack, period: float, poll: float, samples: int
                          ) -> tuple[list[Step], int]:
    """Supply steps and their fan writes; and how many steps got no write while held."""
    reply = await stack.command("mode", {"mode": "recovery_off", "by": "bench"})
    assert reply["accepted"], reply
    sim, last = stack.sim, stack.observer.last
    step_to = load_site(stack.site_path).control.envelope.supply_limit_c + 1.0
    hold = poll + period + 1.0
    cdu_state = stack.topic("cdu/state")

    def stamp_of_step() -> float | None:
        state = last.get(cdu_state) or {}
        stepped = abs((state.get("supply_temp_a") or 0.0) - step_to) < 0.05
        return state["ts"] / 1000 if stepped else None

    sim.tick_s = LATENCY_TICK_S
    steps: list[Step] = []
    missed = 0
    try:
        for _ in range(samples):
            if await wait_for(lambda: sim.plant.command.fan_speed < FULL_FAN, 120) is None:
                raise RuntimeError("the fan did not come down from full speed")
            await asyncio.sleep(random.uniform(0.5, 0.5 + max(period, poll)))
            fault = sim.inject("sensor_stuck", SUPPLY_SENSOR, hold, {"value": step_to})
            served = await wait_for(lambda f=fault: sim.plant.t > f.start_s, 1.0)
            served_wall = time.time()
            written = await wait_for(lambda: sim.plant.command.fan_speed >= FULL_FAN, hold)
            if served is None or written is None:
                missed += 1
            else:
                await wait_for(stamp_of_step, 1.0)
                seen = stamp_of_step()
                steps.append(Step(written - served,
                                  None if seen is None else seen - served_wall))
            await wait_for(lambda f=fault: sim.plant.t >= f.end_s, hold + 5.0)
    finally:
        sim.tick_s = 0.1
    return steps, missed


@dataclass
class SettingResult:
    period: float
    poll: float
    jitter: JitterRun
    latency: list[Step]
    missed: int


async def run_setting(period: float, seconds: float, samples: int) -> SettingResult:
    poll = min(1.0, period)
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        async with running_stack(Path(tmp), scenario="winter_week", speed=1.0,
                                 cycle_period=period, start_daemon=False) as stack:
            if poll != 1.0:
                set_poll_interval(stack.site_path, poll)
            stack.start_daemon()
            await until_running(stack)
            jitter = await measure_jitter(stack, period, seconds)
            latency, missed = await measure_latency(stack, period, poll, samples)
    return SettingResult(period, poll, jitter, latency, missed)


# --- report --------------------------------------------------------------------------------

def ratio(a: float, b: float) -> str:
    return f"{a / b:7.1f}x" if b > 0 else "      -"


def quantile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def print_spread(label: str, seconds: Iterable[float]) -> None:
    ms = sorted(x * 1e3 for x in seconds)
    if ms:
        print(f"  {label:<34} p50 {quantile(ms, 0.5):7.1f}  p99 {quantile(ms, 0.99):7.1f}  "
              f"min {ms[0]:7.1f}  max {ms[-1]:7.1f}")


def report(r: SettingResult) -> None:
    j = r.jitter
    poll_note = ("" if r.poll == 1.0
                 else f" (site copy: poll_groups.default.interval = {r.poll:g})")
    window = min(int(j.heatd["cycles"]), 600)
    earlier = max(0, window - (int(j.heatd["cycles"]) - j.cycles_before))
    print(f"\n== cycle period {r.period:g} s, default poll group {r.poll:g} s{poll_note}")
    print(f"jitter (cycle start lateness, ms)   heatd  baseline   ratio   "
          f"[heatd: last {window} cycles, {earlier} of them before the window; "
          f"baseline: {j.baseline['cycles']} cycles]")
    for key in ("p50", "p99", "max"):
        h, b = j.heatd[f"jitter_ms_{key}"], j.baseline[f"jitter_ms_{key}"]
        print(f"  {key:<33}{h:7.3f}  {b:8.3f}  {ratio(h, b)}")
    print(f"  heatd cycle duration p50 {j.heatd['duration_ms_p50']:.3f} ms, "
          f"max {j.heatd['duration_ms_max']:.3f} ms, overruns {j.heatd['overruns']}")
    u, bu, su = j.usage, j.baseline_usage, j.simulator_usage
    print(f"heatd CPU {u.cpu_pct:.2f} % of one core, VmRSS mean {u.rss_mean_mib:.1f} MiB, "
          f"max {u.rss_max_mib:.1f} MiB over the window")
    print(f"  beside it: baseline loop CPU {bu.cpu_pct:.2f} %; simulator + observer process "
          f"CPU {su.cpu_pct:.1f} %, VmRSS {su.rss_max_mib:.0f} MiB")
    print(f"latency supply step -> fan write (ms), {len(r.latency)} steps, {r.missed} missed; "
          f"from the plant tick serving the step ({LATENCY_TICK_S * 1e3:.0f} ms ticks)")
    print_spread("served -> fan write at the server", [x.total for x in r.latency])
    seen = [(x.total, x.seen) for x in r.latency if x.seen is not None]
    print_spread("served -> first cycle seeing it", [s for _, s in seen])
    print_spread("that cycle -> fan write", [t - s for t, s in seen])
    print(f"  components: poll interval {r.poll * 1e3:.0f} ms, cycle period "
          f"{r.period * 1e3:.0f} ms: a step waits 0..poll for the next read, then for the "
          f"next cycle start (0..period after the read), then decide and write (last row)")


async def main_async(args: argparse.Namespace) -> None:
    print(f"heatd on the demo site (winter_week, real time), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; jitter/CPU window {args.seconds:g} s, "
          f"{args.samples} latency steps per period")
    for period in args.periods:
        started = time.monotonic()
        result = await run_setting(period, args.seconds, args.samples)
        report(result)
        print(f"  ({time.monotonic() - started:.0f} s for this period)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0,
                        help="jitter and CPU window per cycle period (default 90)")
    parser.add_argument("--samples", type=int, default=25,
                        help="latency steps per cycle period (default 25)")
    parser.add_argument("--periods", type=lambda s: [float(x) for x in s.split(",")],
                        default=[1.0, 0.1], help="cycle periods in s (default 1,0.1)")
    parser.add_argument("--baseline-loop", nargs=2, type=float, metavar=("PERIOD", "SECONDS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_loop:
        period, seconds = args.baseline_loop
        print("ready", flush=True)
        print(json.dumps(uvloop.run(bare_loop(period, seconds))))
        return
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
