"""Every headline figure of heatd in one table, each beside a baseline measured in the same
run, with its target; written to ``bench/results.json`` for ``bench/compare.py``.

Rows: one full poll at 100, 500 and 2,000 points against a minimal pymodbus + asyncua loop
(bench_site_poll); cycle start jitter at 1 s and 100 ms against a bare fixed-rate loop,
sensor-to-actuator latency and CPU at 100 ms (bench_daemon, the demo site against the
simulator); one control step against the rule-based baseline (bench_control); a
co-simulated year against the plant alone (bench_cosim); MQTT messages per second against
a bare aiomqtt client (bench_mqtt); resident memory and start-up (bench_footprint).

``--quick`` shortens every measurement for iteration (the co-simulation runs two weeks,
scaled to a year); the table says what was run.

    .venv/bin/python bench/run.py [--quick] [--out bench/results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_control
import bench_cosim
import bench_daemon
import bench_footprint
import bench_mqtt
import bench_site_poll
import structlog
import uvloop
from results import Row, Target, dump, render

HERE = Path(__file__).resolve().parent
POLL_TARGET = Target("ratio", "<=", 1.3)
JITTER_TARGET_MS = 10.0
LATENCY_MARGIN_MS = 100.0
"""Latency target: one poll interval plus one cycle period (a step waits for both at
worst) plus this much for the decision and the write."""


@dataclass(frozen=True)
class Effort:
    poll_rounds: int
    daemon_seconds: float
    latency_samples: int
    control_steps: int
    control_repeat: int
    cosim_hours: float
    mqtt_messages: int
    mqtt_rounds: int
    startup_runs: int


FULL = Effort(200, 90.0, 25, 20_000, 5, 8760.0, 5000, 3, 9)
QUICK = Effort(20, 20.0, 3, 5_000, 3, 336.0, 2000, 1, 3)


def poll_rows(effort: Effort) -> list[Row]:
    rows = []
    for size in (100, 500, 2000):
        f = uvloop.run(bench_site_poll.run(effort.poll_rounds, size))
        rows.append(Row(f"poll, {size} points", "ms", float(f["driver_ms"]),
                        float(f["baseline_ms"]), POLL_TARGET,
                        note=f"{f['requests_per_poll']} requests (minimum "
                             f"{f['minimum_requests']}), median of {effort.poll_rounds}"
                        if size == 2000 else ""))
    return rows


def daemon_rows(effort: Effort) -> list[Row]:
    rows = []
    for period in (1.0, 0.1):
        r = asyncio.run(bench_daemon.run_setting(period, effort.daemon_seconds,
                                                 effort.latency_samples))
        label = f"{period * 1e3:.0f} ms" if period < 1 else f"{period:g} s"
        j = r.jitter
        rows.append(Row(f"jitter p99, {label} cycle", "ms", j.heatd["jitter_ms_p99"],
                        j.baseline["jitter_ms_p99"], Target("value", "<=", JITTER_TARGET_MS),
                        note="baseline: a bare fixed-rate loop on uvloop beside it"
                        if period == 1.0 else ""))
        if period == 0.1:
            latency = [x.total * 1e3 for x in r.latency]
            bound = (r.poll + r.period) * 1e3 + LATENCY_MARGIN_MS
            rows.append(Row(f"latency p99, sensor to actuator, {label} cycle", "ms",
                            bench_daemon.quantile(sorted(latency), 0.99), None,
                            Target("value", "<=", bound),
                            note=f"{len(latency)} steps ({r.missed} missed); target: "
                                 f"poll {r.poll * 1e3:.0f} + cycle {r.period * 1e3:.0f} + "
                                 f"{LATENCY_MARGIN_MS:.0f} ms"))
            rows.append(Row(f"CPU, {label} cycle", "% core", j.usage.cpu_pct,
                            j.baseline_usage.cpu_pct, None,
                            note="the demo site polled every 100 ms, publishing to MQTT; "
                                 "baseline: the bare loop"))
    return rows


def control_rows(effort: Effort) -> list[Row]:
    f = bench_control.measure(effort.control_steps, effort.control_repeat)
    return [Row("control step", "us", f["core_us"], f["baseline_us"],
                Target("value", "<=", bench_control.TARGET_US),
                note="baseline: the rule-based controller")]


def cosim_rows(effort: Effort) -> list[Row]:
    f = bench_cosim.measure(effort.cosim_hours)
    scaled = "" if effort.cosim_hours == 8760 else (
        f"{effort.cosim_hours:g} h run, scaled to a year")
    return [Row("co-sim year at 10 s", "s", f["heatd_year_s"], f["plant_year_s"],
                Target("ratio", "<=", 2.0),
                note="; ".join(x for x in ("baseline: the plant alone", scaled) if x))]


def mqtt_rows(effort: Effort) -> list[Row]:
    f = uvloop.run(bench_mqtt.measure(effort.mqtt_messages, effort.mqtt_rounds))
    return [Row("MQTT throughput", "msg/s", f["heatd_msg_s"], f["bare_msg_s"],
                Target("ratio", ">=", 0.8), better="higher",
                note=f"{effort.mqtt_messages} QoS 1 events; baseline: bare aiomqtt")]


def footprint_rows(effort: Effort) -> list[Row]:
    modbus = asyncio.run(bench_footprint.modbus_only_rss())
    demo = asyncio.run(bench_footprint.demo_site_rss())
    start = bench_footprint.startup(effort.startup_runs)
    return [
        Row("RSS, Modbus-only site", "MiB", modbus["heatd_mib"], modbus["baseline_mib"],
            Target("value", "<=", 40.0),
            note="baseline: pymodbus + aiomqtt imported, idle; with every other library "
                 f"heatd runs on: {modbus['libraries_mib']:.1f} MiB"),
        Row("RSS, demo site (with OPC UA)", "MiB", demo["heatd_mib"], demo["baseline_mib"],
            Target("value", "<=", 60.0),
            note="baseline: pymodbus + aiomqtt + asyncua; with every other library heatd "
                 f"runs on: {demo['libraries_mib']:.1f} MiB"),
        Row("check-config, demo site", "ms", start["check_config_ms"], start["bare_ms"],
            Target("value", "<=", 250.0), note="baseline: python -c pass"),
        Row("import heatd.runtime", "ms", start["import_runtime_ms"], start["bare_ms"], None),
    ]


SECTIONS: dict[str, Callable[[Effort], list[Row]]] = {
    "poll": poll_rows, "daemon": daemon_rows, "control": control_rows, "cosim": cosim_rows,
    "mqtt": mqtt_rows, "footprint": footprint_rows,
}


def _commit() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE,
                          capture_output=True, text=True, check=False)  # no git: "unknown"
    return done.stdout.strip() or "unknown"


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "system": platform.platform(terse=True),
            "load_average": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shortened runs, for iteration")
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append",
                        help="run only these sections (repeatable)")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    # the rigs' servers log every start; the table is the output
    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    effort = QUICK if args.quick else FULL
    started = time.monotonic()
    rows: list[Row] = []
    for name, section in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        print(f"running {name} ...", flush=True)
        with contextlib.redirect_stdout(io.StringIO()):  # servers in this process print
            rows += section(effort)
    meta = {"commit": _commit(), "quick": args.quick, "machine": machine(),
            "effort": effort.__dict__, "seconds": round(time.monotonic() - started)}
    print(f"\nheatd {meta['commit']}, {'QUICK run' if args.quick else 'full run'}, "
          f"{meta['machine']['cpus']} CPUs, load average at the end "
          f"{meta['machine']['load_average']}, {meta['seconds']} s")
    print(render(rows))
    dump(rows, meta, args.out)
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
