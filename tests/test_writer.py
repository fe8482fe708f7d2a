"""Setpoint writes against a real Modbus server: written once, read back and verified,
refused outside their bounds, alarmed and retried while the device does not answer."""

from __future__ import annotations

import asyncio

import pytest

from drivers.modbus import Table
from heatd.config_loader import parse_site
from heatd.devices import build_devices
from heatd.writer import OutOfBounds, SetpointWriter

from modbus_servers import SimServer, unit
from waiting import until

SITE = """\
site: {{id: w}}
devices:
  fans:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {port}
    address_base: 0
    timeout: 0.2
    backoff: {{min: 0.05, max: 0.1}}
    points:
      speed: {{table: holding, address: 0, data_type: uint16, unit: "%", scale: 0.1,
               writable: true, write_min: 0, write_max: 100}}
      enable: {{table: coil, address: 0, data_type: bool, writable: true}}
roles:
  drycooler.fan: fans.speed
  hp.enable: fans.enable
"""



async def test_writes_are_verified_bounded_and_retried() -> None:
    server = SimServer([unit(1)])
    await server.start()
    site = parse_site(SITE.format(port=server.port), "site.yaml")
    devices = build_devices(site)
    alarms: list[tuple[str, dict]] = []
    writer = SetpointWriter(site, devices, lambda name, d: alarms.append((name, d)))
    for device in devices.values():
        await device.driver.start()
    writer.start()
    # before the first successful poll the device is not online: writes wait, no alarm
    writer.submit("drycooler.fan", 0.1)
    await asyncio.sleep(0.3)
    assert alarms == [] and writer.status()["drycooler.fan"]["verified"] is False
    for device in devices.values():
        await device.driver.read(tuple(device.points.values()))
    try:
        writer.submit("drycooler.fan", 0.42)  # a fraction; the point carries percent
        writer.submit("hp.enable", True)
        assert await writer.flush(5.0)
        assert await server.get(1, Table.HOLDING, 0, 1) == [420]
        assert await server.get(1, Table.COIL, 0, 1) == [True]
        assert writer.status()["drycooler.fan"] == {"value": 42.0, "verified": True,
                                                     "failures": 0}
        with pytest.raises(OutOfBounds):
            writer.submit("drycooler.fan", 1.5)

        server.faults.silent.add(1)
        writer.submit("drycooler.fan", 0.8)
        await until(lambda: any(name == "write_failed" for name, _ in alarms))
        assert writer.status()["drycooler.fan"]["verified"] is False
        server.faults.silent.clear()
        fans = devices["fans"]
        while not fans.driver.online:  # the daemon's polling finds the device back
            await fans.driver.read(tuple(fans.points.values()))
            await asyncio.sleep(0.05)
        assert await writer.flush(5.0)
        assert await server.get(1, Table.HOLDING, 0, 1) == [800]
        assert [(n, d["role"]) for n, d in alarms] == [("write_failed", "drycooler.fan")], alarms
    finally:
        await writer.stop()
        for device in devices.values():
            await device.driver.close()
        await server.stop()


async def test_min_interval_spaces_writes_of_one_setpoint() -> None:
    server = SimServer([unit(1)])
    await server.start()
    site = parse_site(SITE.format(port=server.port), "site.yaml")
    devices = build_devices(site)
    writer = SetpointWriter(site, devices, lambda *_: None, min_interval=0.5)
    fans = devices["fans"]
    await fans.driver.start()
    while not fans.driver.online:
        await fans.driver.read(tuple(fans.points.values()))
        await asyncio.sleep(0.02)
    writer.start()
    try:
        writer.submit("drycooler.fan", 0.1)
        assert await writer.flush(2.0)
        started = asyncio.get_running_loop().time()
        writer.submit("drycooler.fan", 0.2)
        await until(lambda: writer.status()["drycooler.fan"]["value"] == 20.0)
        assert asyncio.get_running_loop().time() - started >= 0.4
    finally:
        await writer.stop()
        await fans.driver.close()
        await server.stop()
