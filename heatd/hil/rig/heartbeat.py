"""A site with a silent unit on the PLC's own link, run by the real daemon in-process, and
the heartbeat as the PLC sees it: the time of every heartbeat write that reaches the
server. Shared by tests/test_heartbeat.py and bench/bench_heartbeat.py.

Three units share one TCP gateway or one RS-485 line: the PLC (heartbeat, recovery valve,
fan), the sensors, and the heat pump, which falls silent. The heat pump has several poll
groups and a short backoff, so without a priority lane and a circuit breaker its
timeouts hold the line most of the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heatd.config_loader import load_site
from heatd.drivers.modbus import Table
from heatd.hil.rig.modbus import SimServer, pty_pair, unit
from heatd.hil.rig.waiting import until
from heatd.runtime import Daemon

PLC, SENSORS, HEAT_PUMP = 1, 2, 3
HEARTBEAT_ADDRESS = 0
HEARTBEAT_POINT = "table: holding, address: 0, data_type: uint16"
"""The heartbeat point's table, address and type (tests bind other kinds of point)."""
VALVE_ADDRESS = 1

SITE = """\
site: {{id: hb}}
runtime: {{cycle_period: {cycle}, write_min_interval: {min_interval}}}
control: {control}
poll_groups:
  fast: {{interval: 0.25}}
  a: {{interval: 0.25}}
  b: {{interval: 0.25}}
  c: {{interval: 0.25}}
devices:
  plc:
    {link}
    unit_id: 1
    address_base: 0
    timeout: {timeout}
    backoff: {{min: 0.1, max: 0.2}}
    points:
      heartbeat: {{{heartbeat}, writable: true, poll_group: fast}}
      valve: {{table: holding, address: 1, data_type: uint16, unit: "%", scale: 0.1,
               writable: true, write_min: 0, write_max: 100, poll_group: fast}}
      fan: {{table: holding, address: 2, data_type: uint16, unit: "%", scale: 0.1,
             writable: true, write_min: 0, write_max: {fan_max}, poll_group: fast}}
  sensors:
    {link}
    unit_id: 2
    address_base: 0
    timeout: {timeout}
    points:
      supply: {{table: holding, address: 0, data_type: int16, scale: 0.1, unit: degC,
                poll_group: fast, max_age: {max_age}}}
      flow: {{table: holding, address: 1, data_type: uint16, scale: 0.1, unit: "m3/h",
              poll_group: fast}}
  hp:
    {link}
    unit_id: 3
    address_base: 0
    timeout: {timeout}
    retries: {retries}
    backoff: {{min: 0.05, max: 0.1}}
    points:
      running: {{table: coil, address: 0, data_type: bool, poll_group: a}}
      power: {{table: holding, address: 0, data_type: uint16, unit: kW, poll_group: b}}
      heat: {{table: holding, address: 5, data_type: uint16, unit: kW, poll_group: c}}
      enable: {{table: coil, address: 1, data_type: bool, writable: true, poll_group: fast}}
roles:
  plc.heartbeat: plc.heartbeat
  valve.recovery: plc.valve
  drycooler.fan: plc.fan
  coolant.supply_temp: sensors.supply
  coolant.flow: sensors.flow
  hp.running: hp.running
  hp.power: hp.power
  hp.heat: hp.heat
  hp.enable: hp.enable
"""


def heartbeat_times(server: SimServer, since: float = 0.0) -> list[float]:
    """When each heartbeat write reached the server (monotonic), from ``since`` on."""
    return [r.at for r in server.writes(PLC, HEARTBEAT_ADDRESS) if r.at >= since]


def worst_gap(server: SimServer, since: float = 0.0) -> float:
    """The longest interval between two heartbeat writes from ``since`` on."""
    times = heartbeat_times(server, since)
    return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))


class RecordingDaemon(Daemon):
    """The daemon, keeping every alarm it raises."""

    alarms: list[tuple[str, dict[str, Any]]]

    def _alarm(self, name: str, details: dict[str, Any]) -> None:
        self.__dict__.setdefault("alarms", []).append((name, details))
        super()._alarm(name, details)


@dataclass
class Rig:
    server: SimServer
    daemon: RecordingDaemon
    cycle: float
    timeout: float
    loop: asyncio.Task[None]

    async def stop(self) -> None:
        """A clean stop, as on SIGTERM: the cycle ends, then the daemon's own shutdown."""
        if not self.loop.done():
            self.daemon.request_stop()
            await self.loop
            await self.daemon._shutdown()


def _units() -> list:
    return [unit(u, size=100) for u in (PLC, SENSORS, HEAT_PUMP)]


@contextlib.asynccontextmanager
async def running(tmp: Path, *, serial: bool, cycle: float = 0.5, timeout: float = 0.5,
                  min_interval: float = 0.0, fan_max: float = 100, control: str = "{}",
                  max_age: float = 1.0, heartbeat: str = HEARTBEAT_POINT,
                  retries: int = 0) -> AsyncIterator[Rig]:
    """The daemon running the site against a real server (TCP, or RTU over a pty pair)."""
    async with contextlib.AsyncExitStack() as stack:
        if serial:
            sim_end, line = await stack.enter_async_context(pty_pair(tmp))
            server = SimServer(_units(), serial=sim_end)
            link = (f"protocol: modbus_rtu\n    serial_port: {line}\n    baudrate: 115200\n"
                    "    parity: N")
        else:
            server = SimServer(_units())
            link = f"protocol: modbus_tcp\n    host: 127.0.0.1\n    port: {server.port}"
        await server.start()
        stack.push_async_callback(server.stop)
        await server.set(SENSORS, Table.HOLDING, 0, [350, 200])  # 35.0 degC, 20 m3/h
        path = tmp / "site.yaml"
        path.write_text(SITE.format(cycle=cycle, min_interval=min_interval, timeout=timeout,
                                    fan_max=fan_max, link=link, control=control,
                                    max_age=max_age, heartbeat=heartbeat,
                                    retries=retries))
        daemon = RecordingDaemon(path, load_site(path))
        daemon.alarms = []
        await daemon._start_io()
        rig = Rig(server, daemon, cycle, timeout,
                  asyncio.create_task(daemon._cycle_loop(), name="cycle"))
        stack.push_async_callback(rig.stop)
        yield rig


async def heartbeat_with_silent_unit(tmp: Path, *, serial: bool, seconds: float,
                                     cycle: float = 0.5, timeout: float = 0.5,
                                     retries: int = 0) -> tuple[float, int]:
    """Worst heartbeat interval (s) and heartbeat writes while the heat pump (with
    ``retries``) is silent."""
    async with running(tmp, serial=serial, cycle=cycle, timeout=timeout,
                       retries=retries) as rig:
        await until_beats(rig, 3)
        rig.server.faults.silent.add(HEAT_PUMP)
        since = time.monotonic()
        await asyncio.sleep(seconds)
        return worst_gap(rig.server, since), len(heartbeat_times(rig.server, since))


async def until_beats(rig: Rig, count: int, timeout: float = 15.0) -> None:
    """Wait for ``count`` heartbeat writes at the server."""
    await until(lambda: len(heartbeat_times(rig.server)) >= count, timeout,
                what=f"{count} heartbeat writes")
