"""Modbus TCP devices against real pymodbus servers started by the tests."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable

import pytest

from heatd.drivers.base import WriteError
from heatd.drivers.codec import ByteOrder, Codec, DataType
from heatd.drivers.modbus import (
    ModbusPoint,
    ModbusTcpDevice,
    PlanLimits,
    Table,
    TcpLink,
    TcpSettings,
)
from heatd.drivers.reading import Quality
from heatd.hil.rig.modbus import SimServer, unit
from heatd.hil.rig.waiting import until
from heatd.hil.siteports import free_port


def settings(port: int) -> TcpSettings:
    return TcpSettings("127.0.0.1", port, timeout=0.2, backoff_min=0.02, backoff_max=0.2)


def points(unit_id: int) -> list[ModbusPoint]:
    return [
        ModbusPoint("temp", Table.HOLDING, 0, Codec(DataType.FLOAT32, ByteOrder.CDAB), unit_id),
        ModbusPoint("power", Table.HOLDING, 2, Codec(DataType.INT32, scale=0.1), unit_id),
        ModbusPoint("status", Table.HOLDING, 4, Codec(DataType.UINT16), unit_id),
        ModbusPoint("fault", Table.HOLDING, 4, Codec(DataType.BIT, bit=3), unit_id),
        ModbusPoint("energy", Table.INPUT, 10, Codec(DataType.UINT64), unit_id),
        ModbusPoint("pump", Table.COIL, 3, Codec(DataType.BOOL), unit_id),
        ModbusPoint("alarm", Table.DISCRETE, 7, Codec(DataType.BOOL), unit_id),
    ]


async def fill(server: SimServer, unit_id: int) -> None:
    """Distinct values per unit, written straight into the server's memory."""
    await server.set(unit_id, Table.HOLDING, 0, [0x0000, 0x41C8])  # 25.0 in CDAB
    await server.set(unit_id, Table.HOLDING, 2, [0xFFFF, 0xFF00 + unit_id])  # negative
    await server.set(unit_id, Table.HOLDING, 4, [0b1000 | unit_id << 8])
    await server.set(unit_id, Table.INPUT, 10, [0, 0, 1, unit_id])
    await server.set(unit_id, Table.COIL, 3, [True])
    await server.set(unit_id, Table.DISCRETE, 7, [unit_id == 2])


@pytest.fixture
async def server() -> AsyncIterator[SimServer]:
    srv = SimServer([unit(1, holes=[(50, 52)]), unit(2), unit(3)])
    await srv.start()
    for u in (1, 2, 3):
        await fill(srv, u)
    yield srv
    await srv.stop()


@pytest.fixture
async def devices(server: SimServer) -> AsyncIterator[list[ModbusTcpDevice]]:
    devs = [ModbusTcpDevice(f"u{u}", settings(server.port), u) for u in (1, 2, 3)]
    for d in devs:
        await d.start()
    yield devs
    for d in devs:
        await d.close()


async def online_read(dev: ModbusTcpDevice, pts: list[ModbusPoint]):
    """Read once the device's link is up (start() connects in the background)."""
    await until(lambda: dev.link.connected)
    return await dev.read(pts)


async def test_several_units_on_one_server_decode_their_own_values(devices) -> None:
    for u, dev in zip((1, 2, 3), devices, strict=True):
        got = await online_read(dev, points(u))
        assert all(r.quality is Quality.GOOD for r in got.values()), got
        assert got["temp"].value == 25.0
        assert got["power"].value == pytest.approx((-256 + u) * 0.1)
        assert got["status"].value == 0b1000 | u << 8
        assert got["fault"].value is True
        assert got["energy"].value == (1 << 16) | u
        assert got["pump"].value is True
        assert got["alarm"].value is (u == 2)
        assert got["temp"].raw == (0x0000, 0x41C8)
        assert dev.online
        # holding 0..4 in one request, input, coil, discrete: four requests
        assert dev.stats.last_poll_requests == 4 == len(dev.plan(points(u)))


async def test_units_share_one_tcp_connection(server: SimServer) -> None:
    link = TcpLink(settings(server.port))
    devs = [ModbusTcpDevice(f"g{u}", settings(server.port), u, link=link) for u in (2, 3)]
    for d in devs:
        await d.start()
    await until(lambda: devs[0].link.connected)
    got = await asyncio.gather(*(d.read(points(u)) for d, u in zip(devs, (2, 3), strict=True)))
    assert [g["energy"].value for g in got] == [(1 << 16) | 2, (1 << 16) | 3]
    assert link.connects == 1
    await devs[0].close()
    assert link.connected  # the other unit still uses it
    await devs[1].close()
    assert not link.connected


async def test_writes_use_the_codec_and_refuse_what_cannot_be_written(server, devices) -> None:
    dev = devices[0]
    setpoint = ModbusPoint("sp", Table.HOLDING, 20, Codec(DataType.INT32, scale=0.01), 1)
    small = ModbusPoint("small", Table.HOLDING, 22, Codec(DataType.INT16), 1)
    fan = ModbusPoint("fan", Table.COIL, 9, Codec(DataType.BOOL), 1)
    await until(lambda: dev.link.connected)
    await dev.write(setpoint, -12.34)
    await dev.write(small, -7)
    await dev.write(fan, True)
    assert await server.get(1, Table.HOLDING, 20, 3) == [0xFFFF, 0xFB2E, 0xFFF9]
    assert await server.get(1, Table.COIL, 9, 1) == [True]
    got = await dev.read([setpoint, small, fan])
    assert (got["sp"].value, got["small"].value, got["fan"].value) == (
        pytest.approx(-12.34),
        -7,
        True,
    )
    sent = dev.stats.requests
    with pytest.raises(WriteError, match="bit"):
        await dev.write(points(1)[3], True)
    with pytest.raises(WriteError, match="encode"):
        await dev.write(small, 40000)
    with pytest.raises(WriteError, match="encode"):
        await dev.write(setpoint, math.nan)
    with pytest.raises(WriteError, match="read-only"):
        await dev.write(points(1)[4], 1)
    assert dev.stats.requests == sent  # refused before anything was sent
    hole = ModbusPoint("hole", Table.HOLDING, 51, Codec(DataType.UINT16), 1)
    with pytest.raises(WriteError, match="exception 2 illegal data address"):
        await dev.write(hole, 1)


async def test_illegal_data_address_splits_the_block_and_remembers(devices) -> None:
    dev = devices[0]
    dev.limits = PlanLimits(allow_gaps=True, max_gap=20)
    pts = [
        ModbusPoint(f"r{a}", Table.HOLDING, a, Codec(DataType.UINT16), 1)
        for a in (40, 41, 48, 49, 53, 60)
    ]
    first = await online_read(dev, pts)
    assert all(r.quality is Quality.GOOD for r in first.values()), first
    # one refused 40..60 request, then the halves: more than the learned plan needs
    learned = dev.plan(pts)
    assert dev.stats.last_poll_requests > len(learned)
    assert all(not (b.start <= 52 and b.end > 50) for b in learned)
    errors = dev.stats.errors
    await dev.read(pts)
    assert dev.stats.last_poll_requests == len(learned)
    assert dev.stats.errors == errors


async def test_exception_and_wrong_length_replies_become_bad_readings(server, devices) -> None:
    dev = devices[0]
    hole = ModbusPoint("hole", Table.HOLDING, 50, Codec(DataType.UINT16), 1)
    ok = ModbusPoint("ok", Table.HOLDING, 10, Codec(DataType.UINT16), 1)
    got = await online_read(dev, [hole, ok])
    assert got["hole"].value is None
    assert got["hole"].quality_text == "bad:exception 2 illegal data address"
    assert got["ok"].quality is Quality.GOOD
    assert dev.online  # an exception is an answer

    server.faults.short.add(1)
    got = await dev.read(points(1))
    assert got["temp"].quality_text == "bad:wrong length: 4 for 5"
    assert got["temp"].value is None
    assert got["energy"].quality_text == "bad:wrong length: 3 for 4"
    assert got["pump"].quality is Quality.GOOD  # bit replies are left intact


async def test_silent_unit_times_out_backs_off_and_recovers(server, devices) -> None:
    # a retry delay of 0.5 to 1 s (jitter), not the fixture's 10 to 20 ms: the second read
    # must fall inside it even if the test is descheduled for a moment in between
    silent = ModbusTcpDevice("u1", TcpSettings("127.0.0.1", server.port, timeout=0.2,
                                               backoff_min=1.0, backoff_max=1.0), 1)
    other = devices[1]
    await silent.start()
    try:
        await online_read(silent, points(1))
        server.faults.silent.add(1)
        got = await silent.read(points(1))
        assert {r.quality_text for r in got.values()} == {"bad:timeout"}
        assert silent.stats.last_poll_requests == 1  # the rest of the poll is not sent
        assert not silent.online
        again = await silent.read(points(1))
        assert silent.stats.last_poll_requests == 0  # backing off: nothing on the wire
        assert {r.quality_text for r in again.values()} == {"bad:timeout"}
        other_got = await other.read(points(2))
        assert all(r.quality is Quality.GOOD for r in other_got.values())

        server.faults.silent.clear()

        async def recovered() -> bool:
            got = await silent.read(points(1))
            return all(r.quality is Quality.GOOD for r in got.values())

        await until(recovered)
        assert silent.online
    finally:
        await silent.close()


async def test_device_down_and_back_while_another_keeps_polling() -> None:
    a_server = SimServer([unit(1)])
    b_server = SimServer([unit(1)])
    await a_server.start()
    await b_server.start()
    await fill(a_server, 1)
    await fill(b_server, 1)
    a = ModbusTcpDevice("a", settings(a_server.port), 1)
    b = ModbusTcpDevice("b", settings(b_server.port), 1)
    await a.start()
    await b.start()
    b_polls: list[bool] = []
    a_seen: list[str] = []
    stop = asyncio.Event()

    async def poll(dev: ModbusTcpDevice, sink: Callable[[dict], None]) -> None:
        while not stop.is_set():
            sink(await dev.read(points(1)))
            await asyncio.sleep(0.01)

    def on_b(got: dict) -> None:
        b_polls.append(all(r.quality is Quality.GOOD for r in got.values()))

    def on_a(got: dict) -> None:
        a_seen.append(got["temp"].quality_text)

    try:
        await until(lambda: a.link.connected)
        await until(lambda: b.link.connected)
        tasks = [asyncio.create_task(poll(a, on_a)), asyncio.create_task(poll(b, on_b))]
        await until(lambda: "good" in a_seen)
        await a_server.stop()
        await until(lambda: "bad:disconnected" in a_seen)
        outage_start = len(b_polls)
        # a being down must not stall b: b goes on polling (every ~10 ms) meanwhile
        await until(lambda: len(b_polls) - outage_start >= 10)
        assert not a.online
        restarted = SimServer([unit(1)], port=a_server.port)
        await restarted.start()
        await fill(restarted, 1)
        a_seen.clear()
        await until(lambda: "good" in a_seen)
        stop.set()
        await asyncio.gather(*tasks)
        await restarted.stop()
    finally:
        stop.set()
        await a.close()
        await b.close()
        await b_server.stop()
    assert all(b_polls)
    assert a.link.connects == 2


async def test_first_connect_failing_then_server_appears() -> None:
    port = free_port()
    dev = ModbusTcpDevice("late", settings(port), 1)
    await dev.start()
    try:
        got = await dev.read(points(1))
        assert {r.quality_text for r in got.values()} == {"bad:disconnected"}
        assert not dev.online
        with pytest.raises(WriteError, match="disconnected"):
            await dev.write(points(1)[2], 5)
        await until(lambda: dev.link.connect_error is not None)  # a connect has failed
        srv = SimServer([unit(1)], port=port)
        await srv.start()
        await fill(srv, 1)

        async def good() -> bool:
            return (await dev.read(points(1)))["temp"].value == 25.0

        await until(good)
        assert dev.online
        await srv.stop()
    finally:
        await dev.close()


async def test_points_of_another_unit_are_a_config_error_not_a_crash(devices) -> None:
    got = await online_read(devices[0], points(2))
    assert all(r.quality is Quality.BAD and "unit" in r.reason for r in got.values())


async def test_units_on_one_link_keep_their_own_timeouts(server: SimServer) -> None:
    quick = TcpSettings("127.0.0.1", server.port, timeout=0.2, backoff_min=5, backoff_max=5)
    patient = TcpSettings("127.0.0.1", server.port, timeout=3.0, backoff_min=5, backoff_max=5)
    link = TcpLink(patient)  # the link was made for the patient unit
    slow = ModbusTcpDevice("slow", patient, 2, link=link)
    fast = ModbusTcpDevice("fast", quick, 1, link=link)
    for d in (slow, fast):
        await d.start()
    try:
        await until(lambda: fast.link.connected)
        server.faults.silent.add(1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        got = await fast.read(points(1))
        # its own 0.2 s, not the 3 s the link was built with (the bound has slack for a
        # loaded machine; taking the link's timeout would need 3 s)
        assert loop.time() - started < 2.0
        assert {r.quality_text for r in got.values()} == {"bad:timeout"}
    finally:
        for d in (slow, fast):
            await d.close()


async def test_a_silent_unit_is_probed_once_per_backoff_slot(server: SimServer) -> None:
    shared = TcpSettings("127.0.0.1", server.port, timeout=0.3, backoff_min=0.5,
                         backoff_max=0.5, breaker_after=2)
    link = TcpLink(shared)
    silent = ModbusTcpDevice("silent", shared, 1, link=link)
    await silent.start()
    try:
        await until(lambda: silent.link.connected)
        server.faults.silent.add(1)
        await silent.read(points(1))
        assert not silent.tripped  # one timeout is not yet enough
        await silent.read(points(1))
        assert silent.tripped
        sent = silent.stats.requests
        # while held off nothing goes on the line, writes included
        with pytest.raises(WriteError, match="not answering"):
            await silent.write(points(1)[2], 1)
        await silent.read(points(1))
        assert silent.stats.requests == sent
        # the breaker's slot is wall time itself: once it has passed, many callers, one probe
        await asyncio.sleep(0.6)
        await asyncio.gather(*(silent.read(points(1)) for _ in range(4)))
        assert silent.stats.requests == sent + 1
    finally:
        await silent.close()


async def test_an_urgent_request_goes_before_queued_ones(server: SimServer) -> None:
    shared = TcpSettings("127.0.0.1", server.port, timeout=0.3, backoff_min=0.02,
                         backoff_max=0.02, breaker_after=5)
    link = TcpLink(shared)
    silent = ModbusTcpDevice("silent", shared, 1, link=link)
    plc = ModbusTcpDevice("plc", shared, 2, link=link)
    for d in (silent, plc):
        await d.start()
    try:
        await until(lambda: plc.link.connected)
        server.faults.silent.add(1)
        finished: list[str] = []

        async def poll(i: int) -> None:
            await silent.read(points(1)[:1])
            finished.append(f"poll{i}")

        async def beat() -> None:
            await plc.write(points(2)[2], 42, urgent=True)
            finished.append("beat")

        polls = [asyncio.create_task(poll(i)) for i in range(3)]
        await until(lambda: link.waiting >= 2)  # one poll on the wire, two waiting
        await asyncio.gather(beat(), *polls)
        # after the poll in flight (a frame on the wire is never cut), ahead of the queue
        assert finished[:2] == ["poll0", "beat"], finished
        assert await server.get(2, Table.HOLDING, 4, 1) == [42]
    finally:
        for d in (silent, plc):
            await d.close()
