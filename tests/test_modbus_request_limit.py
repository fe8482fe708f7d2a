"""A Modbus device whose request limit is below one of its points' width, against a real
pymodbus server: check-config refuses such a file, and the driver still reads every point
that fits and names why the other is bad, instead of polling nothing."""

from __future__ import annotations

import struct

from heatd.drivers.codec import Codec, DataType
from heatd.drivers.modbus import ModbusPoint, ModbusTcpDevice, PlanLimits, Table, TcpSettings
from heatd.drivers.reading import Quality
from heatd.hil.rig.modbus import SimServer, unit
from heatd.hil.rig.waiting import until


async def test_the_points_that_fit_are_read_and_the_wide_one_says_why() -> None:
    server = SimServer([unit(7)])
    await server.start()
    await server.set(7, Table.INPUT, 0, [*struct.unpack(">HH", struct.pack(">f", 38.5)), 0, 0,
                                         123])
    points = (ModbusPoint("supply", Table.INPUT, 0, Codec(DataType.FLOAT32), 7),
              ModbusPoint("flow", Table.INPUT, 4, Codec(DataType.UINT16, scale=0.1), 7))
    device = ModbusTcpDevice("loop", TcpSettings("127.0.0.1", server.port, timeout=0.5), 7,
                             limits=PlanLimits(max_registers=1))
    try:
        await device.start()
        await until(lambda: device.link.connected)
        got = await device.read(points)
    finally:
        await device.close()
        await server.stop()
    assert got["flow"].quality is Quality.GOOD and got["flow"].value == 12.3
    assert got["supply"].quality is Quality.BAD
    assert got["supply"].quality_text == ("bad:2 registers, wider than the device's request "
                                          "limit (1)")
    assert device.stats.requests == 1
