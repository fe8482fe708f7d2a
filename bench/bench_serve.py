"""Served plant pace: the highest --speed at which `heatd hil serve` keeps real-time pace.

The demo site is served on free ports while a client polls every point of it once a second
with heatd's own drivers (as the daemon would) and writes the heartbeat. For each
requested speed the server runs for a few wall seconds; the figure is plant seconds
advanced per wall second (and its ratio to the request), plus the CPU share of one core
the whole process used. The baseline is the pure plant stepped the way the server steps
it (1 s substeps, scenario disturbances every substep), with no servers at all.

    .venv/bin/python bench/bench_serve.py [--seconds 4] [--speeds 1,10,100,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from heatd.config_loader import load_site
from heatd.devices import build_devices
from heatd.hil.liveplant import LivePlant
from heatd.hil.serve import PlantServer, build_scenario
from heatd.hil.siteports import with_free_ports

DEMO = Path(__file__).resolve().parent.parent / "config" / "demo-site.yaml"


def pure_plant_rate(plant_seconds: float = 20_000.0) -> float:
    """Plant seconds per wall second of LivePlant.advance alone (1 s substeps)."""
    plant = LivePlant(build_scenario("winter_week", 0, None))
    start = time.perf_counter()
    plant.advance(plant_seconds)
    return plant_seconds / (time.perf_counter() - start)


async def poll(site_file: Path, stop: asyncio.Event) -> None:
    """Read every point once a second and bump the heartbeat, like the daemon."""
    site = load_site(site_file)
    devices = build_devices(site)
    for device in devices.values():
        await device.driver.start()
    heartbeat_device = devices["plc"]
    heartbeat = heartbeat_device.points["heartbeat"]
    count = 0
    try:
        while not stop.is_set():
            for device in devices.values():
                for group in device.groups.values():
                    await device.driver.read(group)
            count += 1
            with contextlib.suppress(Exception):
                await heartbeat_device.driver.write(heartbeat, count % 65536)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        for device in devices.values():
            await device.driver.close()


async def measure(speeds: list[float], seconds: float) -> list[tuple[float, float, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        site_file = Path(tmp) / "site.yaml"
        with_free_ports(DEMO, site_file)
        site = load_site(site_file)
        server = PlantServer(site, build_scenario("winter_week", 0, None),
                             duration_s=1e9, status_interval_s=1e9, ptys=True)
        stop = asyncio.Event()
        async with server:
            client = asyncio.create_task(poll(site_file, stop))
            await asyncio.sleep(2.0)  # connect, subscribe, settle
            for speed in speeds:
                server.speed = speed
                await asyncio.sleep(0.5)
                t0, wall0, cpu0 = server.plant.t, time.perf_counter(), time.process_time()
                await asyncio.sleep(seconds)
                wall = time.perf_counter() - wall0
                achieved = (server.plant.t - t0) / wall
                rows.append((speed, achieved, (time.process_time() - cpu0) / wall))
            stop.set()
            await client
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="wall seconds per speed")
    ap.add_argument("--speeds", default="1,10,50,100,200,500,1000,5000,20000,50000,100000")
    args = ap.parse_args()
    speeds = [float(s) for s in args.speeds.split(",")]
    rate = pure_plant_rate()
    print(f"pure plant (1 s substeps + scenario): {rate:,.0f} plant s per wall s")
    rows = asyncio.run(measure(speeds, args.seconds))
    print(f"{'speed':>8} {'achieved':>10} {'ratio':>7} {'cpu':>6} {'of pure':>8}")
    kept = 0.0
    for speed, achieved, cpu in rows:
        ratio = achieved / speed
        if ratio >= 0.98:
            kept = max(kept, speed)
        print(f"{speed:8.0f} {achieved:10.1f} {ratio:7.3f} {cpu:6.0%} {speed / rate:8.2%}")
    print(f"highest speed that keeps pace (ratio >= 0.98): {kept:.0f}")


if __name__ == "__main__":
    main()
