"""Modbus RTU devices sharing one serial line, against a pymodbus RTU server on the other
end of a socat pty pair."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from heatd.drivers.codec import Codec, DataType
from heatd.drivers.modbus import ModbusPoint, ModbusRtuDevice, SerialLine, SerialSettings, Table
from heatd.drivers.reading import Quality
from heatd.hil.rig.modbus import SimServer, pty_pair, unit
from heatd.hil.rig.waiting import until

UNITS = (1, 2, 7)


def line_settings(port: str) -> SerialSettings:
    return SerialSettings(
        port, baudrate=115200, timeout=0.25, backoff_min=0.02, backoff_max=0.2
    )


def points(unit_id: int) -> list[ModbusPoint]:
    return [
        ModbusPoint("level", Table.HOLDING, 0, Codec(DataType.INT16, scale=0.5), unit_id),
        ModbusPoint("flow", Table.INPUT, 3, Codec(DataType.FLOAT32), unit_id),
        ModbusPoint("run", Table.COIL, 0, Codec(DataType.BOOL), unit_id),
    ]


@pytest.fixture
async def ptys(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    async with pty_pair(tmp_path) as pair:
        yield pair


@pytest.fixture
async def server(ptys) -> AsyncIterator[SimServer]:
    srv = SimServer([unit(u, size=100, holes=[(40, 49)]) for u in UNITS], serial=ptys[0])
    await srv.start()
    for u in UNITS:
        await srv.set(u, Table.HOLDING, 0, [(-u) & 0xFFFF])
        await srv.set(u, Table.INPUT, 3, [0x4120, 0x0000])  # 10.0
        await srv.set(u, Table.COIL, 0, [u % 2 == 1])
    yield srv
    await srv.stop()


@pytest.fixture
async def line(ptys, server) -> AsyncIterator[SerialLine]:
    line = SerialLine(line_settings(ptys[1]))
    yield line
    await line.close()


async def started(line: SerialLine) -> list[ModbusRtuDevice]:
    devs = [ModbusRtuDevice(f"u{u}", line, u) for u in UNITS]
    for d in devs:
        await d.start()
    await until(lambda: line.connected)
    return devs


async def test_several_units_on_one_line_one_request_at_a_time(line, server) -> None:
    devs = await started(line)
    before = server.requests
    rounds = 5
    results = await asyncio.gather(
        *(d.read(points(u)) for _ in range(rounds) for d, u in zip(devs, UNITS, strict=True))
    )
    # concurrent frames on one line would collide and time out; every read must be good
    for i, got in enumerate(results):
        u = UNITS[i % len(UNITS)]
        assert all(r.quality is Quality.GOOD for r in got.values()), got
        assert got["level"].value == pytest.approx(-u * 0.5)
        assert got["flow"].value == 10.0
        assert got["run"].value is (u % 2 == 1)
    assert server.requests - before == rounds * len(UNITS) * 3


async def test_silent_unit_does_not_disturb_the_others(line, server) -> None:
    devs = await started(line)
    server.faults.silent.add(2)
    got = await asyncio.gather(*(d.read(points(u)) for d, u in zip(devs, UNITS, strict=True)))
    assert {r.quality_text for r in got[1].values()} == {"bad:timeout"}
    for other in (got[0], got[2]):
        assert all(r.quality is Quality.GOOD for r in other.values())
    assert not devs[1].online and devs[0].online
    server.faults.silent.clear()

    async def back() -> bool:
        return all(r.quality is Quality.GOOD for r in (await devs[1].read(points(2))).values())

    await until(back)


async def test_write_and_exception_over_rtu(line, server) -> None:
    dev = (await started(line))[2]
    target = ModbusPoint("sp", Table.HOLDING, 10, Codec(DataType.UINT32), 7)
    await dev.write(target, 70000)
    assert await server.get(7, Table.HOLDING, 10, 2) == [1, 4464]
    hole = ModbusPoint("hole", Table.HOLDING, 45, Codec(DataType.UINT16), 7)
    got = await dev.read([target, hole])
    assert got["sp"].value == 70000
    assert got["hole"].quality_text == "bad:exception 2 illegal data address"


async def test_line_that_appears_later_is_connected(tmp_path: Path) -> None:
    later = tmp_path / "later"
    later.mkdir()
    line = SerialLine(line_settings(str(later / "ttyB")))
    dev = ModbusRtuDevice("late", line, 1)
    await dev.start()
    try:
        got = await dev.read(points(1))
        assert {r.quality_text for r in got.values()} == {"bad:disconnected"}
        await until(lambda: line.connect_error is not None)  # a connect has failed
        async with pty_pair(later) as (a, _):
            srv = SimServer([unit(1, size=100)], serial=a)
            await srv.start()

            async def good() -> bool:
                got = await dev.read(points(1))
                return all(r.quality is Quality.GOOD for r in got.values())

            await until(good)
            await srv.stop()
    finally:
        await dev.close()


async def test_units_on_one_line_keep_their_own_timeouts_and_breakers(line, server) -> None:
    own = SerialSettings(line.settings.port, baudrate=115200, timeout=0.1, backoff_min=5.0,
                         backoff_max=5.0)
    quick = ModbusRtuDevice("quick", line, 2, settings=own)  # the line's timeout is 0.25
    others = await started(line)
    await quick.start()
    try:
        server.faults.silent.add(2)
        got = await quick.read(points(2))
        assert {r.quality_text for r in got.values()} == {"bad:timeout"}
        assert quick.tripped and quick.timeout == 0.1
        sent = quick.stats.requests
        # held off for its 5 s slot: nothing of it goes on the line, the others are served
        results = await asyncio.gather(quick.read(points(2)), others[0].read(points(1)))
        assert quick.stats.requests == sent
        assert all(r.quality is Quality.GOOD for r in results[1].values())
    finally:
        await quick.close()


async def test_a_port_that_refuses_its_settings_is_retried_with_its_reason(
        ptys: tuple[str, str]) -> None:
    """A pseudo terminal refuses parity (tcsetattr EINVAL), as a USB adapter may refuse a
    baud rate: pyserial raises termios.error, no OSError, after the open. That used to
    end the line's supervisor, so the line (and a heartbeat on it) stayed down for good."""
    settings = dataclasses.replace(line_settings(ptys[1]), parity="E")
    line = SerialLine(settings)
    dev = ModbusRtuDevice("parity", line, 1)
    await dev.start()
    try:
        await until(lambda: line.connect_error is not None)
        assert line.connect_error == "serial port refused its settings: Invalid argument"
        await asyncio.sleep(1.0)  # several backoff slots: the supervisor goes on trying
        assert line._task is not None and not line._task.done()
        got = await dev.read(points(1))
        assert {r.quality_text for r in got.values()} == {"bad:disconnected"}
    finally:
        await dev.close()
