"""Setpoint writes against a real Modbus server: written once, read back and verified,
refused outside their bounds, alarmed and retried while the device does not answer; kept
true against another client and a device restart; the safe state forced and clamped; the
heartbeat never held back by another output's minimum interval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import pytest
from pymodbus.client import AsyncModbusTcpClient

from heatd.config_loader import parse_site
from heatd.devices import BoundDevice, build_devices
from heatd.drivers.modbus import Table
from heatd.hil.rig.modbus import SimServer, unit
from heatd.hil.rig.waiting import read_online, until
from heatd.writer import OutOfBounds, SetpointWriter

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
      valve: {{table: holding, address: 1, data_type: uint16, unit: "%", scale: 0.1,
               writable: true, write_min: 0, write_max: 100}}
      beat: {{table: holding, address: 5, data_type: uint16, writable: true}}
roles:
  drycooler.fan: fans.speed
  hp.enable: fans.enable
  valve.recovery: fans.valve
  plc.heartbeat: fans.beat
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
    await asyncio.sleep(0.3)  # a window for a write or an alarm that must not come
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
        await until(partial(read_online, devices["fans"]))  # polling finds it back
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
    await until(partial(read_online, fans))
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


@dataclass
class Rig:
    server: SimServer
    writer: SetpointWriter
    fans: BoundDevice
    alarms: list[tuple[str, dict]]


@pytest.fixture
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    """A writer on a polled, online device; writer options by indirect parametrisation."""
    options = getattr(request, "param", {})
    server = SimServer([unit(1)])
    await server.start()
    site = parse_site(SITE.format(port=server.port), "site.yaml")
    devices = build_devices(site)
    alarms: list[tuple[str, dict]] = []
    writer = SetpointWriter(site, devices, lambda name, d: alarms.append((name, d)), **options)
    fans = devices["fans"]
    await fans.driver.start()
    await until(partial(read_online, fans))
    writer.start()
    try:
        yield Rig(server, writer, fans, alarms)
    finally:
        await writer.stop()
        await fans.driver.close()
        await server.stop()


@pytest.mark.parametrize("rig", [{"verify_every": 0.3}], indirect=True)
async def test_a_setpoint_changed_by_another_client_is_alarmed_and_written_again(rig) -> None:
    rig.writer.submit("valve.recovery", 0.4)
    assert await rig.writer.flush(3.0)
    assert await rig.server.get(1, Table.HOLDING, 1, 1) == [400]
    other = AsyncModbusTcpClient("127.0.0.1", port=rig.server.port)
    await other.connect()
    try:
        await other.write_register(1, 777, device_id=1)  # a foreign write: 77.7 %
    finally:
        other.close()
    await until(lambda: any(n == "write_mismatch" for n, _ in rig.alarms))
    _, details = next(a for a in rig.alarms if a[0] == "write_mismatch")
    assert details["point"] == "fans.valve" and details["read_back"] == pytest.approx(77.7)
    await until(lambda: rig.writer.status()["valve.recovery"]["verified"])
    assert await rig.server.get(1, Table.HOLDING, 1, 1) == [400]


async def test_every_setpoint_is_asserted_again_after_the_device_restarts(rig) -> None:
    rig.writer.submit("valve.recovery", 0.25)
    rig.writer.submit("hp.enable", True)
    rig.writer.submit("plc.heartbeat", 7)
    assert await rig.writer.flush(3.0)
    port = rig.server.port
    await rig.server.stop()
    fresh = rig.server = SimServer([unit(1)], port=port)  # restarted: every register zero
    await fresh.start()
    await until(partial(read_online, rig.fans))  # the daemon's polling finds it back

    async def restored() -> bool:
        return (await fresh.get(1, Table.HOLDING, 1, 1) == [250]
                and await fresh.get(1, Table.COIL, 0, 1) == [True])

    await until(restored)


async def test_safe_state_is_forced_whatever_the_cache_says_and_clamped(rig) -> None:
    rig.writer.submit("drycooler.fan", 0.9)  # write_max is 100 %: in bounds
    rig.writer.submit("valve.recovery", 0.0)
    assert await rig.writer.flush(3.0)
    sent = rig.fans.driver.stats.requests
    # the device holds these values already; a stop must still send them
    rig.writer.safe_state({"drycooler.fan": 0.9, "valve.recovery": 0.0}, force=True)
    assert await rig.writer.flush(3.0)
    assert rig.fans.driver.stats.requests >= sent + 2
    # a safe value beyond the write bounds is clamped, not refused
    rig.writer.safe_state({"drycooler.fan": 1.5}, force=False)
    assert await rig.writer.flush(3.0)
    assert await rig.server.get(1, Table.HOLDING, 0, 1) == [1000]


@pytest.mark.parametrize("rig", [{"min_interval": 2.0}], indirect=True)
async def test_heartbeat_is_not_held_back_by_another_outputs_min_interval(rig) -> None:
    period, seconds = 0.2, 3.0
    beats: list[float] = []
    count = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        count += 1
        rig.writer.submit("valve.recovery", (count % 10) / 10)  # changes every cycle
        rig.writer.submit("plc.heartbeat", count)
        await asyncio.sleep(period)  # a cycle's period: wall time is what this test is about
        value = (await rig.server.get(1, Table.HOLDING, 5, 1))[0]
        if not beats or value != beats[-1]:
            beats.append(value)
    # the valve is rate-limited to one write per 2 s; the heartbeat goes every cycle
    assert len(beats) >= seconds / period / 2, beats


@pytest.mark.parametrize("rig", [{"verify_every": 0.2}], indirect=True)
async def test_an_offline_device_does_not_spin_its_writer(rig, monkeypatch) -> None:
    """While the device is away, its verified outputs wait for it to come back: the lane
    wakes at its session-check pace, not in a loop that burns a core."""
    rig.writer.submit("valve.recovery", 0.3)
    assert await rig.writer.flush(3.0)
    served = 0
    serve = rig.writer._serve

    async def counting(lane, out):
        nonlocal served
        served += 1
        return await serve(lane, out)

    monkeypatch.setattr(rig.writer, "_serve", counting)
    port = rig.server.port
    await rig.server.stop()
    await until(lambda: not rig.fans.driver.online)
    served = 0
    await asyncio.sleep(1.0)  # a window long enough for many session checks
    while_away = served
    rig.server = SimServer([unit(1)], port=port)  # the fixture stops it
    await rig.server.start()
    # one lane of three outputs, woken every SESSION_CHECK_S: a handful of calls, not
    # the thousands of a loop that never waits
    assert while_away <= 3 * (1.0 / 0.5 + 2), while_away
    await until(partial(read_online, rig.fans))
    server = rig.server

    async def restored() -> bool:  # the restarted device lost it: written again
        return await server.get(1, Table.HOLDING, 1, 1) == [300]

    await until(restored)
