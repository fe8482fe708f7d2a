"""Acquisition over real servers: the point image follows the devices, a dead device turns
its points bad (never zero) and comes back by itself, and the others keep their rate."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from pathlib import Path

import pytest
from asyncua import ua

from heatd.acquisition import Acquisition
from heatd.config_loader import parse_site
from heatd.devices import point_limits
from heatd.drivers.modbus import Table
from heatd.drivers.reading import Quality
from heatd.hil.rig.modbus import SimServer, unit
from heatd.hil.rig.waiting import until
from heatd.hil.siteports import free_port
from heatd.points import PointImage
from heatd.probe import probe

from opcua_servers import start_server

SITE = """\
site: {{id: t}}
poll_groups:
  default: {{interval: 0.1}}
devices:
  racks:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {port_a}
    unit_id: 1
    address_base: 1
    timeout: 0.2
    backoff: {{min: 0.1, max: 0.3}}
    points:
      power: {{table: input, address: 1, data_type: float32, order: CDAB, unit: kW}}
      inlet: {{table: input, address: 3, data_type: int16, scale: 0.1, unit: degC,
               range: [-10, 60]}}
  fans:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {port_a}
    unit_id: 2
    address_base: 0
    timeout: 0.2
    backoff: {{min: 0.1, max: 0.3}}
    points:
      speed: {{table: holding, address: 10, data_type: uint16, unit: "%"}}
      fault: {{table: holding, address: 11, data_type: bit, bit: 3}}
  pump:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {port_b}
    unit_id: 1
    address_base: 0
    timeout: 0.2
    backoff: {{min: 0.1, max: 0.3}}
    points:
      running: {{table: coil, address: 0, data_type: bool}}
"""


def site_for(port_a: int, port_b: int):
    return parse_site(SITE.format(port_a=port_a, port_b=port_b), "site.yaml")


async def test_image_follows_devices_and_survives_a_dead_one() -> None:
    gateway = SimServer([unit(1), unit(2)])
    pump = SimServer([unit(1)])
    await gateway.start()
    await pump.start()
    # 21.5 kW as float32 word-swapped (CDAB) at protocol address 0, inlet 23.4 degC
    await gateway.set(1, Table.INPUT, 0, [0x0000, 0x41AC, 234])
    await gateway.set(2, Table.HOLDING, 10, [55, 0b1000])
    await pump.set(1, Table.COIL, 0, [True])
    site = site_for(gateway.port, pump.port)
    image = PointImage(point_limits(site))
    changes: list[tuple[str, bool]] = []
    acq = Acquisition(site, image, on_availability=lambda d, up: changes.append((d, up)))
    try:
        await acq.start()
        # every device polls on its own schedule: wait until each has answered once
        await until(lambda: all(
            r.quality is Quality.GOOD for r in image.snapshot(time.monotonic()).readings.values()),
            timeout=10)
        snap = image.snapshot(time.monotonic())
        assert snap["racks.power"].value == 21.5
        assert abs(snap["racks.inlet"].value - 23.4) < 1e-9
        assert snap["fans.speed"].value == 55 and snap["fans.fault"].value is True
        assert snap["pump.running"].value is True

        await pump.stop()
        await until(lambda: image.snapshot(time.monotonic())["pump.running"].quality is Quality.BAD)
        dead = image.snapshot(time.monotonic())["pump.running"]
        assert dead.value is None and dead.reason in ("disconnected", "timeout")
        assert ("pump", False) in changes
        before = acq.polls[("racks", "default")]
        await asyncio.sleep(2.0)
        # the gateway's devices kept polling (10 Hz nominal) while the pump was dead; polls
        # waiting behind the pump's 0.2 s timeouts would manage at most about 7 in 2 s
        assert acq.polls[("racks", "default")] - before >= 10
        assert image.snapshot(time.monotonic())["racks.power"].quality is Quality.GOOD

        await pump.start()
        await pump.set(1, Table.COIL, 0, [True])
        await until(lambda: image.snapshot(time.monotonic())["pump.running"].quality
                    is Quality.GOOD, timeout=10)
        assert changes[-1] == ("pump", True)
    finally:
        await acq.stop()
        await gateway.stop()
        await pump.stop()


async def test_probe_prints_plan_raw_and_values(tmp_path: Path) -> None:
    gateway = SimServer([unit(1), unit(2)])
    await gateway.start()
    await gateway.set(1, Table.INPUT, 0, [0x0000, 0x41AC, 0xFF9C])
    await gateway.set(2, Table.HOLDING, 10, [55, 0])
    site = site_for(gateway.port, free_port())  # the pump's port has nobody behind it
    out = io.StringIO()
    try:
        status = await probe(site, None, out)
    finally:
        await gateway.stop()
    text = out.getvalue()
    rows = [" ".join(line.split()) for line in text.splitlines()]
    assert status == 2  # the pump did not answer
    assert "device racks (modbus_tcp): online" in text
    assert "unit 1 input        0..2     (3 registers, 2 points): power, inlet" in text
    assert "power 0000 41AC 21.5 kW good" in rows
    assert "inlet FF9C -10 degC good" in rows
    assert "speed 0037 55 % good" in rows
    assert "device pump (modbus_tcp): offline (connection refused)" in rows
    assert "running - - bad:disconnected" in rows



OPCUA_SITE = """\
site: {{id: t}}
devices:
  loop:
    protocol: opcua
    endpoint: opc.tcp://127.0.0.1:{port}
    mode: {mode}
    publishing_interval: 0.1
    timeout: 0.5
    backoff: {{min: 0.1, max: 0.3}}
    points:
      supply: {{node_id: "ns=2;s=Loop.SupplyTemp", unit: degC, range: [0, 90], max_age: 0.5}}
      running: {{node_id: "ns=2;s=HP.Running"}}
"""


@pytest.mark.parametrize("mode", ["subscription", "polling"])
async def test_opcua_device_feeds_the_image_and_stays_fresh(mode: str) -> None:
    server = await start_server()
    site = parse_site(OPCUA_SITE.format(port=server.port, mode=mode), "site.yaml")
    image = PointImage(point_limits(site))
    acq = Acquisition(site, image)
    try:
        await acq.start()
        # subscribed, the two points' first values may come in separate notifications
        await until(lambda: all(r.quality is Quality.GOOD
                                for r in image.snapshot(time.monotonic()).readings.values()))
        assert image.snapshot(time.monotonic())["loop.supply"].value == 35.5
        assert image.snapshot(time.monotonic())["loop.running"].value is True
        # an unchanged value stays fresh well past its max_age (0.5 s) while the link lives
        await asyncio.sleep(1.2)
        assert image.snapshot(time.monotonic())["loop.supply"].quality is Quality.GOOD
        await server.set("Loop.SupplyTemp", 41.0)
        await until(lambda: image.snapshot(time.monotonic())["loop.supply"].value == 41.0)
        await server.set_status("Loop.SupplyTemp", ua.StatusCodes.BadSensorFailure, 41.0)
        await until(lambda: image.snapshot(time.monotonic())["loop.supply"].quality is Quality.BAD)
        assert image.snapshot(time.monotonic())["loop.supply"].reason == "BadSensorFailure"
        await server.stop()
        await until(lambda: not acq.online("loop"))
        assert image.snapshot(time.monotonic() + 1)["loop.running"].quality is not Quality.GOOD
    finally:
        await acq.stop()
        with contextlib.suppress(Exception):
            await server.stop()
