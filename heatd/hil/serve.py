"""``heatd hil serve SITE``: the plant in real time (or --speed N times faster), serving the
site's points over Modbus TCP, Modbus RTU and OPC UA from the same YAML the daemon reads.

Each tick steps the plant by speed x wall dt (substeps of at most 1 s plant time), acts out
the comms faults on the protocol layer, and serves the measured values. Writes to output
points become the plant's actuators as they arrive; the plant's PLC watches the heartbeat
in plant time. A Modbus RTU line is served on a serial port of the simulator's own
(``serial``: the site's port -> the simulator's, two adapters and a cable), or on a
pseudo-terminal pair made in its place (``ptys``); otherwise it is listed as not served.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import structlog

from heatd.config import ModbusRtuDeviceConfig, ModbusTcpDeviceConfig, OpcUaDeviceConfig, SiteConfig
from heatd.config_loader import ConfigError, load_site
from heatd.hil.faults import Fault
from heatd.hil.liveplant import LivePlant, scenario_for_site
from heatd.hil.modbus_server import ModbusEndpoint, SerialServerLine, WireWrite
from heatd.hil.opcua_server import NodeWrite, OpcUaEndpoint
from heatd.hil.plant_params import ParamsError, load_params
from heatd.hil.pointmap import Binding, bind_site, rack_count, site_devices_of, unbound
from heatd.hil.ptys import PtyPair, pty_problem
from heatd.hil.recorder import Recorder
from heatd.hil.scenario import Scenario, ScenarioError, load_scenario
from heatd.hil.sensors import sensor_names

log = structlog.get_logger(__name__)

Endpoint = ModbusEndpoint | OpcUaEndpoint
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})


class PlantServer:
    """The served plant: endpoints per port, the live plant, faults, records, status.

    Use as ``async with PlantServer(...) as sim:`` (serving and ticking in the background)
    or ``await sim.start(); await sim.run(); await sim.stop()``.
    """

    def __init__(
        self,
        site: SiteConfig,
        scenario: Scenario,
        *,
        speed: float = 1.0,
        duration_s: float | None = None,
        tick_s: float = 0.1,
        max_lag_s: float = 1.0,
        record_dir: str | Path | None = None,
        record_interval_s: float = 10.0,
        status_interval_s: float = 10.0,
        status_out: IO[str] | None = None,
        serial: Mapping[str, str] | None = None,
        ptys: bool = False,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.site = site
        self.scenario = scenario_for_site(scenario, rack_count(site))
        self.plant = LivePlant(self.scenario)
        self.speed = speed
        self.duration_s = self.scenario.duration_s if duration_s is None else duration_s
        self.tick_s = tick_s
        self.max_lag_s = max_lag_s
        self.status_interval_s = status_interval_s
        self.status_out = status_out
        self.bindings = bind_site(site, set(sensor_names(self.scenario.params)))
        self._sensor_refs = [(ref, b, b.sensor) for ref, b in self.bindings.items() if b.sensor]
        self._groups = site_devices_of(self.bindings)
        self.modbus: list[ModbusEndpoint] = []
        self.opcua: list[OpcUaEndpoint] = []
        self.ptys: list[PtyPair] = []
        self.skipped: list[str] = []
        self._build_endpoints(dict(serial or {}), ptys)
        self.recorder = (Recorder(record_dir, len(self.plant.state.tank_c), record_interval_s)
                         if record_dir is not None else None)
        self.writes_received = 0
        self.paused = False
        """While paused plant time stands still; the servers keep serving and taking writes."""
        self._transitions: dict[Endpoint, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._status_at = (0.0, 0.0)
        self.ticks = 0
        """Ticks done: each stepped the plant (unless paused) and served what it measured."""
        self._ticks_begun = 0
        self._tick_done = asyncio.Condition()

    # -- setup ---------------------------------------------------------------------

    def _build_endpoints(self, serial: dict[str, str], ptys: bool) -> None:
        tcp: dict[int, dict[str, ModbusTcpDeviceConfig]] = {}
        lines: dict[str, dict[str, ModbusRtuDeviceConfig]] = {}
        ua_devices: dict[int, tuple[str, dict[str, OpcUaDeviceConfig]]] = {}
        for name, device in self.site.devices.items():
            if isinstance(device, ModbusTcpDeviceConfig):
                tcp.setdefault(device.port, {})[name] = device
            elif isinstance(device, OpcUaDeviceConfig):
                port = urlsplit(device.endpoint).port or 4840
                ua_devices.setdefault(port, (device.endpoint, {}))[1][name] = device
            else:
                lines.setdefault(device.serial_port, {})[name] = device
        clash = set(tcp) & set(ua_devices)
        if clash:
            raise ValueError(f"port {min(clash)} is both a Modbus TCP and an OPC UA endpoint")
        unknown = set(serial) - set(lines)
        if unknown:
            raise ValueError(f"--serial {min(unknown)}: no Modbus RTU device of the site is on "
                             "that port")
        for port, devices in tcp.items():
            self.modbus.append(
                ModbusEndpoint(port, devices, self.bindings, self._modbus_write))
        for path, rtu in lines.items():
            first = next(iter(rtu.values()))
            if path in serial:
                place = SerialServerLine.serving(serial[path], first)
            elif ptys:
                place = SerialServerLine.serving(self._pty_for(path, first).sim_end, first)
            else:
                self.skipped.extend(f"{name} (Modbus RTU on {path})" for name in rtu)
                continue
            self.modbus.append(ModbusEndpoint(place, rtu, self.bindings, self._modbus_write))
        for url, servers in ua_devices.values():
            self.opcua.append(OpcUaEndpoint(url, servers, self.bindings, self._opcua_write))

    def _pty_for(self, path: str, device: ModbusRtuDeviceConfig) -> PtyPair:
        problem = pty_problem(device)
        if problem is None and os.path.realpath(path).startswith("/dev/"):
            problem = (f"{path}: not making a pseudo terminal in /dev; point the site file "
                       "at another path, or connect real adapters with --serial")
        if problem is not None:
            raise ValueError(problem)
        pair = PtyPair(path)
        self.ptys.append(pair)
        return pair

    @property
    def endpoints(self) -> list[Endpoint]:
        return [*self.modbus, *self.opcua]

    def outputs(self) -> dict[str, float | bool | int]:
        """The engineering value of every output point: what the plant is commanded."""
        command = self.plant.command
        out: dict[str, float | bool | int] = {}
        for ref, b in self.bindings.items():
            if b.actuator is not None:
                value = getattr(command, b.actuator)
                out[ref] = value * b.factor if isinstance(value, float) else value
        return out

    async def start(self) -> None:
        """Listen on every port; logs which port serves which devices."""
        outputs = self.outputs()
        for pair in self.ptys:
            await pair.start()
            log.info("serial line on a pseudo-terminal pair", heatd_opens=pair.link,
                     simulator_serves=pair.sim_end)
        for endpoint in self.endpoints:
            await endpoint.start(outputs)
            log.info("serving", endpoint=endpoint.describe())
        remote = sorted(name for name, d in self.site.devices.items()
                        if _host_of(d) not in LOCAL_HOSTS
                        and not isinstance(d, ModbusRtuDeviceConfig))
        if remote:
            log.warning("served on 127.0.0.1, not on the hosts the site names "
                        "(heatd.hil.siteports.with_free_ports writes a local copy)", devices=remote)
        for skipped in self.skipped:
            log.warning("not served: give the line a port with --serial, or --pty",
                        device=skipped)
        missing = unbound(self.bindings)
        if missing:
            log.warning("points without a plant value (served as 0)", points=missing)
        await self._publish(time.time())

    async def stop(self) -> None:
        self._stop.set()
        for task in self._transitions.values():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for endpoint in self.endpoints:
            await endpoint.stop()
        for pair in self.ptys:
            await pair.stop()
        if self.recorder is not None:
            self.recorder.close()

    async def __aenter__(self) -> PlantServer:
        await self.start()
        self._task = asyncio.create_task(self.run(), name="plant-server")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.stop()

    def request_stop(self) -> None:
        self._stop.set()

    def inject(self, kind: str, target: str, duration_s: float = math.inf,
               params: dict[str, float] | None = None) -> Fault:
        """Start a sensor or comms fault now (plant time), for duration_s plant seconds."""
        return self.plant.inject(kind, target, duration_s, params)

    async def ticked(self, n: int = 1, timeout: float = 10.0) -> None:
        """Return once ``n`` ticks begun after this call are done: a pause, a fault or a
        write made before the call is then stepped into the plant and on the wire, so a
        test waits for the plant instead of sleeping for it."""
        target = self._ticks_begun + n
        await self.tick_until(lambda: self.ticks >= target, timeout)

    async def tick_until(self, condition: Callable[[], object], timeout: float = 10.0) -> None:
        """Return at the end of the first tick after which ``condition()`` holds (plant
        time reached, an actuator moved): what the plant then is, the servers serve.
        TimeoutError after ``timeout`` wall seconds."""
        async with asyncio.timeout(timeout), self._tick_done:
            while True:
                if self._stop.is_set():
                    raise RuntimeError("the plant server has stopped ticking")
                await self._tick_done.wait()
                if condition():
                    return

    # -- the loop ------------------------------------------------------------------

    async def run(self) -> None:
        """Tick until the duration has passed in plant time or a stop is requested."""
        loop = asyncio.get_running_loop()
        last = next_tick = loop.time()
        self._status_at = (last, self.plant.t)
        try:
            while not self._stop.is_set() and self.plant.t < self.duration_s:
                next_tick += self.tick_s
                delay = next_tick - loop.time()
                if delay < 0:  # overloaded: do not burst to catch up, fall behind instead
                    next_tick, delay = loop.time(), 0.0
                await asyncio.sleep(delay)
                self._ticks_begun += 1
                now = loop.time()
                dt, last = min(now - last, self.max_lag_s), now
                if not self.paused:
                    self.plant.advance(min(self.speed * dt, self.duration_s - self.plant.t))
                await self._publish(time.time())
                self.ticks += 1
                async with self._tick_done:
                    self._tick_done.notify_all()
                if now - self._status_at[0] >= self.status_interval_s:
                    self._print_status(now)
        finally:
            self._stop.set()  # whoever waits for a tick hears that none will come
            async with self._tick_done:
                self._tick_done.notify_all()
        self._print_status(loop.time())  # where the run ended

    async def _publish(self, wall: float) -> None:
        faults = self.plant.active_faults()
        self._act_out_comms(faults)
        readings = self.plant.readings(faults)
        values: dict[str, float | None] = {
            ref: b.served(readings.get(sensor)) for ref, b, sensor in self._sensor_refs
        }
        for endpoint in self.modbus:
            await endpoint.update(values)
        for ua_endpoint in self.opcua:
            await ua_endpoint.update(values, wall)
        if self.recorder is not None and self.recorder.truth(
            wall, self.plant.state, self.plant.command, faults
        ):
            self.recorder.flush()

    def _devices_of(self, target: str) -> set[str]:
        """A fault target names a site device, or a plant device (pdu, cdu, heatpump...)
        whose sensors some site devices serve."""
        if target in self.site.devices:
            return {target}
        return self._groups.get(target, set())

    def _act_out_comms(self, faults: list[Fault]) -> None:
        lost: set[str] = set()
        down: set[str] = set()
        for f in faults:
            if f.kind == "comms_loss":
                lost |= self._devices_of(f.target)
            elif f.kind == "server_restart":
                down |= self._devices_of(f.target)
        for modbus_endpoint in self.modbus:
            for name in modbus_endpoint.devices:
                modbus_endpoint.set_silent(name, name in lost)
        for ua_endpoint in self.opcua:
            for name in ua_endpoint.devices:
                ua_endpoint.set_offline(name, name in lost)
        for endpoint in self.endpoints:
            want_down = any(name in down for name in endpoint.devices)
            busy = self._transitions.get(endpoint)
            if busy is not None and not busy.done():
                continue
            if want_down and endpoint.running:
                self._transitions[endpoint] = asyncio.create_task(
                    self._transition(endpoint, "stopping", endpoint.stop()))
            elif not want_down and not endpoint.running:
                self._transitions[endpoint] = asyncio.create_task(
                    self._transition(endpoint, "starting", endpoint.start(self.outputs())))

    async def _transition(self, endpoint: Endpoint, what: str,
                          action: Coroutine[Any, Any, None]) -> None:
        """Stop or start one server in the background (an OPC UA start takes a second or
        two); a start that fails is retried on the next tick."""
        log.info(f"server restart: {what}", endpoint=endpoint.where, t=round(self.plant.t))
        try:
            await action
        except OSError as exc:
            log.warning(f"server restart: {what} failed", endpoint=endpoint.where,
                        error=str(exc))

    # -- writes --------------------------------------------------------------------

    def _apply(self, binding: Binding | None, value: Any) -> str:
        if binding is None or binding.actuator is None or value is None:
            return ""
        self.plant.command_write(binding.actuator, binding.actuator_value(value))
        return binding.actuator

    def _modbus_write(self, w: WireWrite) -> None:
        actuator = self._apply(w.binding, w.value)
        self._record("modbus", w.device, w.binding, actuator,
                     f"{w.table.value}:{w.address}", list(w.raw), w.value)

    def _opcua_write(self, w: NodeWrite) -> None:
        actuator = self._apply(w.binding, w.value)
        self._record("opcua", w.device, w.binding, actuator, w.node_id, w.raw, w.value)

    def _record(self, protocol: str, device: str, binding: Binding | None, actuator: str,
                address: str, raw: object, value: object) -> None:
        self.writes_received += 1
        if self.recorder is not None:
            self.recorder.write(time.time(), self.plant.t, protocol, device,
                                binding.point if binding else "", (binding.role or "")
                                if binding else "", actuator, address, raw, value)

    # -- status --------------------------------------------------------------------

    def status_line(self, achieved: float | None = None) -> str:
        s, c = self.plant.state, self.plant.command
        hours, rest = divmod(int(s.t), 3600)
        pace = f" x{achieved:.1f}" if achieved is not None else ""
        hp = f"on {s.hp_capacity:.0%}" if s.hp_running else ("TRIP" if s.hp_trip_code else "off")
        faults = ",".join(f.kind for f in self.plant.active_faults()) or "-"
        return (f"t={hours:d}:{rest // 60:02d}:{rest % 60:02d}{pace} "
                f"supply={s.supply_temp_c:.1f}C valve={s.valve_position:.2f}"
                f"(cmd {c.valve_recovery:.2f}) HP={hp} fan={s.fan_speed:.2f} "
                f"fallback={'YES' if s.plc_fallback else 'no'} faults={faults}")

    def _print_status(self, now: float) -> None:
        wall0, t0 = self._status_at
        achieved = (self.plant.t - t0) / (now - wall0) if now > wall0 else None
        self._status_at = (now, self.plant.t)
        print(self.status_line(achieved), file=self.status_out or sys.stdout, flush=True)


def _host_of(
    device: ModbusTcpDeviceConfig | ModbusRtuDeviceConfig | OpcUaDeviceConfig,
) -> str | None:
    if isinstance(device, ModbusTcpDeviceConfig):
        return device.host
    if isinstance(device, OpcUaDeviceConfig):
        return urlsplit(device.endpoint).hostname
    return None


def build_scenario(name: str, seed: int | None, plant: str | None) -> Scenario:
    """The named scenario, with the plant parameters of `plant` when given."""
    scenario = load_scenario(name, seed)
    if plant is None:
        return scenario
    return scenario_for_site(scenario, 0, load_params(plant, scenario.spec.site_overrides))


async def serve(server: PlantServer) -> None:
    """Serve until the duration passes or SIGINT/SIGTERM."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.request_stop)
    await server.start()
    try:
        await server.run()
    finally:
        await server.stop()


def main(args: argparse.Namespace) -> int:
    try:
        site = load_site(args.site)
        scenario = build_scenario(args.scenario, args.seed, args.plant)
        server = PlantServer(site, scenario, speed=args.speed, duration_s=args.duration,
                             record_dir=args.record, status_interval_s=5.0,
                             serial=dict(args.serial or ()), ptys=args.pty)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (ScenarioError, ParamsError, ValueError) as exc:
        print(f"heatd hil serve: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(serve(server))
    except OSError as exc:
        print(f"heatd hil serve: {exc}", file=sys.stderr)
        return 1
    return 0

