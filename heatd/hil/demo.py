"""``make demo``: the demo site end to end on one machine, in about two minutes.

Starts a private mosquitto, serves ``config/demo-site.yaml`` from the plant simulator
(accelerated), runs ``heatd run`` against both as a separate process, shows a live view
of what heatd publishes, then stops heatd cleanly and prints the KPIs of the run with a
plot. Everything listens on free ports of 127.0.0.1, so it runs beside a real broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from heatd.config_loader import load_site
from heatd.hil.cosim import TRACE_KEYS, Run, record_sample
from heatd.hil.demo_screen import Decisions, LiveScreen, view
from heatd.hil.kpi import Accumulator, heat_available_kw, ideal_stores, kpi_config, sample_between
from heatd.hil.plant_params import compile_params
from heatd.hil.plots import PLOT_EXTRA, can_plot, plot_run
from heatd.hil.scenario import load_scenario
from heatd.hil.sensors import rack_offsets
from heatd.hil.serve import PlantServer
from heatd.hil.siteports import accelerated_copy, free_port
from heatd.logs import configure_logging
from heatd.scaffold import shipped


class Broker:
    """A throw-away mosquitto on a free local port (no persistence, no auth)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self._conf = workdir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "allow_anonymous true",
                 f"log_dest file {workdir / 'mosquitto.log'}"]
        if os.geteuid() == 0:
            lines.append("user root")
        self._conf.write_text("\n".join(lines) + "\n")
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Broker:
        binary = shutil.which("mosquitto", path=os.environ.get("PATH", "") + ":/usr/sbin")
        if binary is None:
            raise SystemExit("mosquitto is not installed (make demo installs it)")
        self._proc = await asyncio.create_subprocess_exec(
            binary, "-c", str(self._conf),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        for _ in range(200):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return self
            await asyncio.sleep(0.02)
        raise SystemExit("mosquitto did not start")

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            await self._proc.wait()


def demo_site(workdir: Path, broker_port: int, speed: float) -> Path:
    """The demo site on free ports, publishing to the demo broker, with heatd's control
    timers scaled to the plant's speed (DESIGN.md, "Time")."""
    demo = workdir / "demo-site.yaml"  # the installed package's copy, source tree or not
    demo.write_text(shipped("config/demo-site.yaml").read_text(encoding="utf-8"),
                    encoding="utf-8")
    return accelerated_copy(demo, workdir / "site.yaml", speed, {
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "full_refresh": 10.0},
        "runtime": {"cycle_period": 0.2},
    })


class Recorder:
    """Samples the live plant once a second into KPIs and a trace for the plot."""

    def __init__(self, sim: PlantServer) -> None:
        self.sim = sim
        params = sim.scenario.params
        self.compiled = compile_params(params)
        self.rack_top = max(rack_offsets(params), default=0.0)
        self.acc = Accumulator(kpi_config(params), ideal_stores(sim.plant.state, params))
        self.trace: dict[str, list[float]] = {k: [] for k in TRACE_KEYS}
        self.start = self.last = sim.plant.state

    def sample(self) -> None:
        old, new = self.last, self.sim.plant.state
        dt = new.t - old.t
        if dt <= 0:
            return
        dist = self.sim.scenario.disturbances(new.t)
        x = sample_between(old, new, dt, dist.dh_demand_kw, dist.it_power_kw, not dist.hp_fault,
                           self.rack_top)
        self.acc.add(x)
        record_sample(self.trace, new, x,
                      heat_available_kw(new, self.compiled, self.acc.config.lift_ref))
        self.last = new

    def run(self, scenario: str) -> Run:
        return Run(scenario, "heatd (live)", self.sim.scenario.seed, 1.0, self.start.t,
                   self.last.t - self.start.t, self.acc.result(), self.last, self.trace, 0)


async def run_demo(seconds: float, speed: float, scenario: str, out: Path) -> int:
    """The demo in ``out`` (a directory that exists): plant, broker and heatd together."""
    workdir = Path(tempfile.mkdtemp(prefix="heatd-demo-"))
    async with Broker(workdir) as broker:
        site_path = demo_site(workdir, broker.port, speed)
        site = load_site(site_path)
        sim = PlantServer(site, load_scenario(scenario), speed=speed, status_interval_s=1e9,
                          record_dir=out / "record", ptys=True)
        async with sim:
            log = log_file(out)
            try:
                heatd = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "heatd.cli", "run", str(site_path),
                    stdout=log, stderr=asyncio.subprocess.STDOUT)
            finally:
                os.close(log)  # heatd has its own copy
            print(f"mosquitto on 127.0.0.1:{broker.port}; watch with:\n"
                  f"  mosquitto_sub -p {broker.port} -t 'heatd/demo/#' -v\n"
                  f"heatd log: {out / 'heatd.log'}\n")
            recorder = Recorder(sim)
            last: dict[str, Any] = {}
            decisions = Decisions()
            try:
                async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                    await client.subscribe("heatd/demo/#")
                    watcher = asyncio.create_task(_collect(client, last, decisions, sim))
                    await _live(last, decisions, sim, recorder, seconds)
                    watcher.cancel()
            finally:
                # the simulator shares this event loop: wait without blocking it, so it
                # can still take the safe state heatd writes on its way out
                with contextlib.suppress(ProcessLookupError):  # unless it has exited
                    heatd.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(heatd.wait(), 10)
            run = recorder.run(scenario)
    png = plot_run(run, out / "demo.png", recorder.acc.config) if can_plot() else None
    _summary(run, code, png, decisions)
    return 0 if code == 0 else 1


def log_file(out: Path) -> int:
    """A descriptor of ``out/heatd.log``, for heatd's output."""
    return os.open(out / "heatd.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)


async def _collect(client: aiomqtt.Client, last: dict[str, Any], decisions: Decisions,
                   sim: PlantServer) -> None:
    """The latest message per topic, and every heat-pump decision from the events."""
    async for message in client.messages:
        with contextlib.suppress(ValueError):
            raw = message.payload if isinstance(message.payload, bytes) else b""
            last[message.topic.value] = decoded = json.loads(raw)
            if message.topic.value == "heatd/demo/events":
                decisions.take(decoded, sim.plant.state.t / 3600)


async def _live(last: dict[str, Any], decisions: Decisions, sim: PlantServer,
                recorder: Recorder, seconds: float) -> None:
    screen = LiveScreen(sys.stdout, sys.stdout.isatty(), shutil.get_terminal_size().columns - 1)
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        await asyncio.sleep(1.0)
        recorder.sample()
        state = sim.plant.state
        head = (f"heatd demo  {elapsed:5.0f}/{seconds:.0f} s   plant time "
                f"{state.t / 3600:5.2f} h (x{sim.speed:g})")
        screen.show(view(last.get("heatd/demo/control/state", {}),
                         last.get("heatd/demo/cdu/state", {}),
                         last.get("heatd/demo/heatpump/state", {}), decisions, head,
                         state.heat_delivered_to_dh_kwh / 1000), elapsed)


def _summary(run: Run, code: int, png: Path | None, decisions: Decisions) -> None:
    k = run.kpis
    ratio = "-" if k.reuse_ratio is None else f"{k.reuse_ratio:.3f}"
    cop = "-" if k.seasonal_cop is None else f"{k.seasonal_cop:.2f}"
    print(f"\nheatd stopped with exit code {code} (safe state written, status offline)\n")
    print(f"KPIs over {k.duration_h:.2f} plant hours:")
    rows = [
        ("supply over its limit", f"{k.supply_over_limit_s:.0f} s (max supply "
                                  f"{k.max_supply_c:.1f} degC)"),
        ("IT heat reused", f"{k.it_heat_reused_mwh * 1000:.0f} kWh, {ratio} of the ideal"),
        ("heat delivered", f"{k.heat_delivered_mwh * 1000:.0f} kWh"),
        ("heat-pump electricity", f"{k.hp_electricity_mwh * 1000:.0f} kWh, seasonal COP {cop}"),
        ("heat-pump starts", f"{k.hp_starts} ({k.short_cycles} short cycles)"),
        ("net CO2 avoided", f"{k.net_co2_t * 1000:.0f} kg (after heat-pump and fan power)"),
        ("plot", str(png) if png is not None else PLOT_EXTRA),
    ]
    for label, value in rows:
        print(f"  {label:<22} {value}")
    print(f"\nheat-pump decisions ({len(decisions.lines)}), with heatd's reasons:")
    for line in decisions.lines or ["none: the heat pump kept its state"]:
        print(f"  {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--speed", type=float, default=30.0)
    parser.add_argument("--scenario", default="winter_week")
    parser.add_argument("--out", default="out/demo")
    args = parser.parse_args(argv)
    configure_logging("warning")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return asyncio.run(run_demo(args.seconds, args.speed, args.scenario, out))


if __name__ == "__main__":
    sys.exit(main())
