"""What heatd costs a small gateway before it does any work: resident memory of ``heatd
run`` on a Modbus-only site and on the demo site (Modbus TCP and RTU, OPC UA), and its
start-up time, each beside a baseline measured in the same run.

- RSS (VmRSS, the peak over a few seconds once every device answers): against an idle
  interpreter that has imported only the protocol libraries the site needs (pymodbus and
  aiomqtt; with asyncua for the demo site), and against one that has also imported every
  other library heatd runs on (uvloop, structlog, ruamel.yaml, pydantic with a model
  validated); the difference to the latter is heatd's own code and data.
- Start-up: the wall time of ``heatd check-config`` on the demo site (it runs as
  ``ExecStartPre`` on every start) and of ``import heatd.runtime``, against a bare
  interpreter's start (``python -c pass``); medians of ``--runs``.

    .venv/bin/python bench/bench_footprint.py [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from heatd.hil.rig.broker import Mosquitto
from heatd.hil.rig.daemon import DEMO_SITE, running_stack
from heatd.hil.rig.modbus import SimServer, unit

MODBUS_SITE = """\
site: {{id: lean}}
devices:
  loop:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {port}
    address_base: 0
    points:
      supply_temp: {{table: holding, address: 0, data_type: int16, scale: 0.1, unit: degC}}
      return_temp: {{table: holding, address: 1, data_type: int16, scale: 0.1, unit: degC}}
      fan: {{table: holding, address: 10, data_type: uint16, scale: 0.1, unit: "%",
            writable: true, write_min: 0, write_max: 100}}
      heartbeat: {{table: holding, address: 20, data_type: uint16, writable: true}}
roles:
  coolant.supply_temp: loop.supply_temp
  coolant.return_temp: loop.return_temp
  drycooler.fan: loop.fan
  plc.heartbeat: loop.heartbeat
mqtt: {{host: 127.0.0.1, port: {broker_port}}}
"""
SETTLE_S = 5.0
SAMPLE_S = 3.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for pid {pid}")


async def peak_rss(pid: int) -> float:
    await asyncio.sleep(SETTLE_S)
    peak, end = 0.0, time.monotonic() + SAMPLE_S
    while time.monotonic() < end:
        peak = max(peak, rss_mib(pid))
        await asyncio.sleep(0.2)
    return peak


LIBRARIES = ["uvloop", "structlog", "ruamel.yaml", "pydantic"]
"""The libraries heatd loads besides the protocols'."""

FIRST_MODEL = "class Model(pydantic.BaseModel):\n    x: int\nModel(x=1)\n"
"""pydantic loads its model machinery, and the importlib.metadata its plugin loader
imports, only once a model is built and validated."""


async def idle_with(modules: list[str]) -> float:
    """RSS of an interpreter that imported ``modules`` (with pydantic: and validated a
    model) and waits in an event loop."""
    code = (f"import asyncio, {', '.join(modules)}\n"
            + (FIRST_MODEL if "pydantic" in modules else "")
            + "asyncio.run(asyncio.sleep(60))\n")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    try:
        return await peak_rss(proc.pid)
    finally:
        proc.kill()
        await proc.wait()


async def modbus_only_rss() -> dict[str, float]:
    server = SimServer([unit(1)])
    await server.start()
    try:
        async with Mosquitto() as broker:
            with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
                site = Path(tmp) / "site.yaml"
                site.write_text(MODBUS_SITE.format(port=server.port, broker_port=broker.port))
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "heatd.cli", "run", str(site),
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
                try:
                    heatd = await peak_rss(proc.pid)
                finally:
                    proc.terminate()
                    await proc.wait()
    finally:
        await server.stop()
    protocols = ["pymodbus.client", "aiomqtt"]
    return {"heatd_mib": heatd, "baseline_mib": await idle_with(protocols),
            "libraries_mib": await idle_with([*protocols, *LIBRARIES])}


async def demo_site_rss() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        async with running_stack(Path(tmp), speed=1.0, cycle_period=1.0) as stack:
            await stack.until(lambda: stack.control().get("cycle", {}).get("cycles", 0) > 2,
                              timeout=60, what="control cycles")
            assert stack.proc is not None
            heatd = await peak_rss(stack.proc.pid)
    protocols = ["pymodbus.client", "aiomqtt", "asyncua"]
    return {"heatd_mib": heatd, "baseline_mib": await idle_with(protocols),
            "libraries_mib": await idle_with([*protocols, "sqlite3", *LIBRARIES])}


def wall_s(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def startup(runs: int = 7) -> dict[str, float]:
    """Median wall times of check-config, of the daemon's imports and of a bare
    interpreter, run in turn so a change in the machine's load touches all three."""
    python = sys.executable
    commands = {
        "bare_ms": [python, "-c", "pass"],
        "check_config_ms": [python, "-m", "heatd.cli", "check-config", str(DEMO_SITE)],
        "import_runtime_ms": [python, "-c", "import heatd.runtime"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, args in commands.items():
            times[name].append(wall_s(args))
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


async def measure(runs: int = 7) -> dict[str, dict[str, float]]:
    return {"modbus_only": await modbus_only_rss(), "demo_site": await demo_site_rss(),
            "startup": startup(runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.runs))
    if args.json:
        print(json.dumps(figures))
        return
    for site in ("modbus_only", "demo_site"):
        f = figures[site]
        print(f"RSS {site:<12} heatd {f['heatd_mib']:6.1f} MiB   protocol libraries alone "
              f"{f['baseline_mib']:6.1f} MiB   all libraries {f['libraries_mib']:6.1f} MiB")
    s = figures["startup"]
    print(f"check-config (demo site) {s['check_config_ms']:6.0f} ms   import heatd.runtime "
          f"{s['import_runtime_ms']:6.0f} ms   bare interpreter {s['bare_ms']:5.0f} ms")


if __name__ == "__main__":
    main()
