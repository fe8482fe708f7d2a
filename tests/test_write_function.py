"""``write_function: fc16``: a device that accepts only Write Multiple Registers gets even
its single registers written with function 16; others keep function 6. Checked on the
wire of a real pymodbus server, against the npm modbus-serial server as a device that
refuses function 6, and in the site file's errors."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import pytest

from heatd.config_loader import ConfigError, parse_site
from heatd.devices import build_devices
from heatd.drivers.base import WriteError
from heatd.drivers.modbus import Table
from heatd.hil.rig.modbus import SimServer, unit
from heatd.hil.rig.waiting import until
from heatd.hil.siteports import free_port

from node_opcua import PEERS, ensure_node_opcua

WRITE_SINGLE_REGISTER, WRITE_MULTIPLE_REGISTERS = 6, 16

SITE = """\
site: {{id: t}}
devices:
  dh:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {port}
    unit_id: 1
    address_base: 0
    write_function: fc16
    points:
      supply_setpoint: {{table: holding, address: 10, data_type: int16, scale: 0.1,
                         unit: degC, writable: true}}
      pump_speed: {{table: holding, address: 11, data_type: uint16, writable: true,
                    write_function: fc6}}
  fans:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {port}
    unit_id: 2
    address_base: 0
    points:
      speed: {{table: holding, address: 0, data_type: uint16, unit: "%", writable: true}}
      limit: {{table: holding, address: 1, data_type: uint16, writable: true,
               write_function: fc16}}
"""


async def _write(server: SimServer, device: str, point: str, value: float) -> int:
    """Write one point through heatd's driver; the function code the server received."""
    site = parse_site(SITE.format(port=server.port), "site.yaml")
    bound = build_devices(site, device)[device]
    try:
        await bound.driver.start()
        await until(lambda: bound.driver.link.connected)  # it connects in the background
        server.received.clear()
        await bound.driver.write(bound.points[point], value)
    finally:
        await bound.driver.close()
    writes = [r.function for r in server.received
              if r.function in (WRITE_SINGLE_REGISTER, WRITE_MULTIPLE_REGISTERS)]
    assert len(writes) == 1, server.received
    return writes[0]


@pytest.fixture
async def server():
    srv = SimServer([unit(1), unit(2)])
    await srv.start()
    yield srv
    await srv.stop()


async def test_fc16_device_writes_one_register_with_function_16(server: SimServer) -> None:
    assert await _write(server, "dh", "supply_setpoint", 72.5) == WRITE_MULTIPLE_REGISTERS
    assert await server.get(1, Table.HOLDING, 10, 1) == [725]


async def test_a_point_may_take_function_6_on_an_fc16_device(server: SimServer) -> None:
    assert await _write(server, "dh", "pump_speed", 40) == WRITE_SINGLE_REGISTER
    assert await server.get(1, Table.HOLDING, 11, 1) == [40]


async def test_the_default_is_function_6_and_a_point_may_ask_for_16(
        server: SimServer) -> None:
    assert await _write(server, "fans", "speed", 55) == WRITE_SINGLE_REGISTER
    assert await _write(server, "fans", "limit", 80) == WRITE_MULTIPLE_REGISTERS
    assert await server.get(2, Table.HOLDING, 0, 2) == [55, 80]


def test_write_function_errors_name_file_line_and_field() -> None:
    text = SITE.format(port=502).replace("write_function: fc16\n", "write_function: fc15\n", 1)
    text = text.replace("      speed: {table: holding,",
                        "      running: {table: coil, address: 5, data_type: bool, "
                        "writable: true, write_function: fc16}\n      speed: {table: holding,")
    with pytest.raises(ConfigError) as caught:
        parse_site(text, "site.yaml")
    problems = [str(p) for p in caught.value.problems]
    assert any(p.startswith("site.yaml:9: devices.dh.write_function: ") and "fc16" in p
               for p in problems), problems
    assert any(p.startswith("site.yaml:22: devices.fans.points.running")
               and "holding registers" in p for p in problems), problems


@contextlib.asynccontextmanager
async def fc16_only_device() -> AsyncIterator[tuple[int, list[str]]]:
    """tests/peers/modbus_server.js (npm modbus-serial, installed with the other npm peers
    of tests/peers): yields its port and the writes it accepted, as it prints them."""
    ensure_node_opcua()  # npm ci of tests/peers/package.json: node-opcua and modbus-serial
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        "node", str(PEERS / "modbus_server.js"), str(port), cwd=PEERS,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    lines: list[str] = []

    async def read() -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            lines.append(line.decode().strip())

    reader = asyncio.create_task(read())
    try:
        await until(lambda: f"ready {port}" in lines or reader.done(), timeout=30)
        assert f"ready {port}" in lines, lines
        yield port, lines
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 10)
        await reader


async def test_a_device_that_refuses_function_6_takes_fc16_writes() -> None:
    async with fc16_only_device() as (port, lines):
        site = parse_site(SITE.format(port=port), "site.yaml")
        bound = build_devices(site, "dh")["dh"]
        try:
            await bound.driver.start()
            await until(lambda: bound.driver.link.connected)
            await bound.driver.write(bound.points["supply_setpoint"], 68.5)
            await until(lambda: "write 16 10 685" in lines)
            back = await bound.driver.read([bound.points["supply_setpoint"]])
            assert back["supply_setpoint"].value == pytest.approx(68.5)
            # a point left on function 6 is refused by this device
            with pytest.raises(WriteError, match="exception 1 illegal function"):
                await bound.driver.write(bound.points["pump_speed"], 40)
        finally:
            await bound.driver.close()
