"""The served plant against real pymodbus and asyncua clients: the demo site (on free
ports) read back with independent decoding, writes reaching the plant's actuators, the
PLC heartbeat watchdog, every fault kind on the wire, and the CSV records."""

from __future__ import annotations

import asyncio
import csv
import math
import struct
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import Client, ua
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ModbusException

from heatd.config import (
    ModbusPointConfig,
    ModbusRtuDeviceConfig,
    ModbusTcpDeviceConfig,
    OpcUaDeviceConfig,
    SiteConfig,
)
from heatd.config_loader import load_site
from heatd.devices import build_devices
from heatd.drivers.modbus import Table
from heatd.drivers.reading import Quality
from heatd.hil.liveplant import scenario_for_site
from heatd.hil.plant_params import SensorParams
from heatd.hil.recorder import TRUTH_FILE, WRITES_FILE
from heatd.hil.rig.waiting import read_online, until
from heatd.hil.serve import PlantServer, build_scenario
from heatd.hil.siteports import with_free_ports

pytestmark = pytest.mark.asyncio(loop_scope="module")

DEMO = Path(__file__).resolve().parent.parent / "config" / "demo-site.yaml"
SPEED = 50.0
VALVE_STROKE_S = 90.0
HEARTBEAT_TIMEOUT_S = 30.0
STRUCT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q",
          "uint64": "Q", "float32": "f", "float64": "d"}


def wire_decode(registers: list[int], point: ModbusPointConfig) -> float:
    """Decode as a Modbus manual would state it, without the project's codec."""
    data = b"".join(r.to_bytes(2, "big") for r in registers)
    order = point.order.value
    if order in ("CDAB", "DCBA"):
        data = b"".join(data[i:i + 2] for i in range(len(data) - 2, -2, -2))
    if order in ("BADC", "DCBA"):
        data = b"".join(data[i + 1:i + 2] + data[i:i + 1] for i in range(0, len(data), 2))
    (raw,) = struct.unpack(">" + STRUCT[point.data_type.value], data)
    return raw * point.scale + point.offset


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[int, int]]:
    tmp = tmp_path_factory.mktemp("serve")
    moved = with_free_ports(DEMO, tmp / "site.yaml")
    return tmp / "site.yaml", tmp / "record", moved


@pytest.fixture(scope="module")
def site(files: tuple[Path, Path, dict[int, int]]) -> SiteConfig:
    return load_site(files[0])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sim(site: SiteConfig, files: tuple[Path, Path, dict[int, int]]
              ) -> AsyncIterator[PlantServer]:
    noisy = build_scenario("winter_week", 0, None)
    # exact sensors: these tests compare the wire with the plant's own readings
    exact = noisy.params.model_copy(update={"sensors": SensorParams(noise_std_k=0.0)})
    scenario = scenario_for_site(noisy, 0, exact)
    server = PlantServer(site, scenario, speed=SPEED, tick_s=0.05, record_dir=files[1],
                         record_interval_s=5.0, status_interval_s=3600.0, ptys=True)
    async with server:
        yield server


@pytest.fixture(scope="module")
def modbus_port(files: tuple[Path, Path, dict[int, int]]) -> int:
    return files[2][15020]


@pytest.fixture(scope="module")
def ua_url(site: SiteConfig) -> str:
    device = site.devices["heatpump"]
    assert isinstance(device, OpcUaDeviceConfig)
    return device.endpoint


async def modbus_client(port: int, request_timeout: float = 1.0) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=request_timeout, retries=0)
    assert await client.connect()
    return client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mb(sim: PlantServer, modbus_port: int) -> AsyncIterator[AsyncModbusTcpClient]:
    client = await modbus_client(modbus_port)
    yield client
    client.close()


async def rtu_client(site: SiteConfig, request_timeout: float = 1.0) -> AsyncModbusSerialClient:
    """A client on heatd's end of the dry cooler's RS-485 line (a pseudo terminal)."""
    line = site.devices["drycooler"]
    assert isinstance(line, ModbusRtuDeviceConfig)
    client = AsyncModbusSerialClient(line.serial_port, baudrate=line.baudrate,
                                     parity=line.parity, stopbits=line.stopbits,
                                     timeout=request_timeout, retries=0)
    assert await client.connect()
    return client


@pytest_asyncio.fixture(loop_scope="module")
async def rtu(sim: PlantServer, site: SiteConfig) -> AsyncIterator[AsyncModbusSerialClient]:
    """For one test at a time: a serial line has one master, and pyserial locks the port."""
    client = await rtu_client(site)
    yield client
    client.close()


@pytest_asyncio.fixture(loop_scope="module")
async def opc(sim: PlantServer, ua_url: str) -> AsyncIterator[Client]:
    client = Client(ua_url, timeout=2.0)
    await client.connect()
    yield client
    await client.disconnect()


@pytest_asyncio.fixture(loop_scope="module")
async def heartbeat(sim: PlantServer, modbus_port: int) -> AsyncIterator[None]:
    """Keep the PLC's watchdog fed (a changing counter every plant tick)."""
    client = await modbus_client(modbus_port)

    async def beat() -> None:
        count = 100
        while True:
            count += 1
            await client.write_register(0, count % 65536, device_id=5)
            await sim.ticked()

    task = asyncio.create_task(beat())
    await sim.tick_until(lambda: not sim.plant.state.plc_fallback)
    yield
    task.cancel()
    client.close()


async def answers(client: ModbusBaseClient, unit: int) -> bool:
    """Whether the unit answers a read (a client may need a retry after a silence)."""
    try:
        return not (await client.read_input_registers(0, count=2, device_id=unit)).isError()
    except ModbusException:
        return False


async def read_point(client: ModbusBaseClient,
                     device: ModbusTcpDeviceConfig | ModbusRtuDeviceConfig,
                     point: ModbusPointConfig) -> list[int] | list[bool]:
    address = device.protocol_address(point)
    unit = device.unit_id
    if point.table is Table.COIL:
        return (await client.read_coils(address, count=1, device_id=unit)).bits[:1]
    if point.table is Table.DISCRETE:
        return (await client.read_discrete_inputs(address, count=1, device_id=unit)).bits[:1]
    read = (client.read_holding_registers if point.table is Table.HOLDING
            else client.read_input_registers)
    return (await read(address, count=point.register_count, device_id=unit)).registers


def expected(sim: PlantServer, ref: str) -> float | None:
    binding = sim.bindings[ref]
    readings = sim.plant.readings(sim.plant.active_faults())
    return binding.served(readings.get(binding.sensor))  # type: ignore[arg-type]


# -- values on the wire -------------------------------------------------------------


async def test_modbus_points_read_back_the_plant_values(
    sim: PlantServer, site: SiteConfig, mb: AsyncModbusTcpClient, rtu: AsyncModbusSerialClient
) -> None:
    sim.paused = True
    try:
        await sim.ticked()  # the plant stands still and is served as it stands
        checked, served = set(), set()
        for name, device in site.devices.items():
            if isinstance(device, OpcUaDeviceConfig):
                continue
            client = mb if isinstance(device, ModbusTcpDeviceConfig) else rtu
            for pname, point in device.points.items():
                ref = f"{name}.{pname}"
                if sim.bindings[ref].sensor is None:
                    continue
                want = expected(sim, ref)
                assert want is not None and not math.isnan(want), ref
                got = await read_point(client, device, point)
                if point.data_type.value == "bit":
                    assert bool((got[0] >> point.bit) & 1) == (want >= 0.5), ref  # type: ignore[operator]
                elif point.table in (Table.COIL, Table.DISCRETE) or point.data_type.value == "bool":
                    assert bool(got[0]) == (want >= 0.5), ref
                else:
                    value = wire_decode(list(got), point)  # type: ignore[arg-type]
                    tolerance = abs(point.scale) / 2 + 1e-6 * abs(want)
                    assert value == pytest.approx(want, abs=tolerance), ref
                checked.add((point.data_type.value, point.order.value))
                served.add(device.protocol)
    finally:
        sim.paused = False
    assert served == {"modbus_tcp", "modbus_rtu"}
    assert checked >= {("float32", o) for o in ("ABCD", "BADC", "CDAB", "DCBA")}
    assert {("float64", "DCBA"), ("uint64", "DCBA"), ("int32", "BADC"), ("uint32", "CDAB"),
            ("int16", "ABCD"), ("uint16", "ABCD"), ("bit", "ABCD"), ("bool", "ABCD")} <= checked


async def test_opcua_points_read_back_the_plant_values(
    sim: PlantServer, site: SiteConfig, opc: Client
) -> None:
    device = site.devices["heatpump"]
    assert isinstance(device, OpcUaDeviceConfig)
    types = {}
    sim.paused = True
    try:
        await sim.ticked()  # the plant stands still and is served as it stands
        for pname, point in device.points.items():
            ref = f"heatpump.{pname}"
            dv = await opc.get_node(point.node_id).read_data_value()
            types[pname] = dv.Value.VariantType
            if sim.bindings[ref].sensor is None:
                continue
            want = expected(sim, ref)
            raw = dv.Value.Value
            if isinstance(raw, bool):
                assert raw == (want >= 0.5), ref  # type: ignore[operator]
            else:
                assert raw * point.scale + point.offset == pytest.approx(
                    want, rel=1e-6, abs=point.scale / 2), ref
    finally:
        sim.paused = False
    assert types["running"] is ua.VariantType.Boolean
    assert types["trip_code"] is ua.VariantType.UInt16
    assert types["power"] is ua.VariantType.Float
    assert types["heat"] is ua.VariantType.Double
    assert types["heat_energy"] is ua.VariantType.UInt64
    assert types["capacity_setpoint"] is ua.VariantType.Int16


async def test_the_daemons_drivers_read_every_point_good_and_right(
    sim: PlantServer, site: SiteConfig
) -> None:
    devices = build_devices(site)
    for device in devices.values():
        await device.driver.start()
    sim.paused = True
    try:
        await sim.ticked()  # the plant stands still and is served as it stands
        for name, device in devices.items():
            await until(partial(read_online, device), timeout=15, poll=0.05)
            readings = await device.driver.read(tuple(device.points.values()))
            for pname, reading in readings.items():
                ref = f"{name}.{pname}"
                assert reading.quality is Quality.GOOD, (ref, reading.reason)
                want = expected(sim, ref) if sim.bindings[ref].sensor else None
                point = site.point(ref)
                integer = point.data_type is not None and point.data_type.value in STRUCT \
                    and not point.data_type.value.startswith("float")
                if want is not None:
                    assert float(reading.value) == pytest.approx(  # type: ignore[arg-type]
                        want, rel=1e-6, abs=abs(point.scale) / 2 if integer else 1e-9), ref
    finally:
        sim.paused = False
        for device in devices.values():
            await device.driver.close()


# -- writes become actuators ---------------------------------------------------------


@pytest.mark.usefixtures("heartbeat")
async def test_valve_write_moves_the_valve_at_its_stroke_rate(
    sim: PlantServer, mb: AsyncModbusTcpClient
) -> None:
    await mb.write_register(100, 0, device_id=2)
    await sim.tick_until(lambda: sim.plant.state.valve_position == 0.0)
    t0 = sim.plant.t
    await mb.write_register(100, 1000, device_id=2)  # 1.0: everything to the heat pump
    await until(lambda: sim.plant.command.valve_recovery == 1.0)
    samples = []
    async with asyncio.timeout(10):
        while not samples or samples[-1][1] < 0.999:
            feedback = (await mb.read_input_registers(29, count=1, device_id=2)).registers[0]
            samples.append((sim.plant.t, feedback * 0.001))
            await sim.ticked()
    for t, position in samples:
        assert position <= (t - t0) / VALVE_STROKE_S + 0.01
    assert any(0.1 < p < 0.9 for _, p in samples)
    assert samples[-1][0] - t0 >= VALVE_STROKE_S * 0.99
    await mb.write_register(100, 0, device_id=2)


@pytest.mark.usefixtures("heartbeat")
async def test_fan_write_over_rtu_and_its_feedback(
    sim: PlantServer, rtu: AsyncModbusSerialClient
) -> None:
    await rtu.write_register(0, 300, device_id=3)
    await until(lambda: sim.plant.command.fan_speed == pytest.approx(0.3))
    async def feedback() -> bool:
        return (await rtu.read_holding_registers(1, count=1, device_id=3)).registers[0] == 300

    await until(feedback, poll=0.05)
    assert sim.plant.state.fan_speed == pytest.approx(0.3)
    await rtu.write_register(0, 1000, device_id=3)


async def test_comms_loss_silences_the_rtu_unit(sim: PlantServer, site: SiteConfig) -> None:
    rtu = await rtu_client(site, request_timeout=0.3)
    try:
        fault = sim.inject("comms_loss", "drycooler", duration_s=SPEED * 1.0)
        await sim.ticked()
        with pytest.raises(ModbusException):
            await rtu.read_input_registers(0, count=2, device_id=3)
        await sim.tick_until(lambda: sim.plant.t > fault.end_s)
        await until(lambda: answers(rtu, 3), timeout=10, poll=0.1)
    finally:
        rtu.close()


@pytest.mark.usefixtures("heartbeat")
async def test_heat_pump_runs_on_coil_enable_and_opcua_capacity(
    sim: PlantServer, mb: AsyncModbusTcpClient, opc: Client
) -> None:
    await opc.get_node("ns=2;s=HP.CapacitySetpoint").write_value(
        ua.Variant(500, ua.VariantType.Int16))
    await until(lambda: sim.plant.command.hp_capacity == pytest.approx(0.5))
    await mb.write_coil(0, True, device_id=5)
    await until(lambda: sim.plant.command.hp_enable is True)
    running = opc.get_node("ns=2;s=HP.Running")
    actual = opc.get_node("ns=2;s=HP.CapacityActual")

    async def loaded() -> bool:
        return bool(await running.read_value() and await actual.read_value() >= 0.499)

    async def stopped() -> bool:
        return not await running.read_value() and await actual.read_value() == 0.0

    await until(loaded, timeout=8, poll=0.05)
    await mb.write_coil(0, False, device_id=5)
    await until(stopped, timeout=3, poll=0.05)


async def test_heartbeat_watchdog_falls_back_and_releases(
    sim: PlantServer, mb: AsyncModbusTcpClient
) -> None:
    async def fallback_seen() -> tuple[bool, bool]:
        di = (await mb.read_discrete_inputs(0, count=1, device_id=5)).bits[0]
        word = (await mb.read_holding_registers(10, count=1, device_id=5)).registers[0]
        return bool(di), bool(word & 1)

    # Taken before the write, not once the release is seen: seeing it takes a tick and a
    # read, and on a loaded machine a tenth of a wall second is already 5 plant seconds.
    async def fallback_is(state: tuple[bool, bool]) -> bool:
        return await fallback_seen() == state

    t_write = sim.plant.t  # the write lands at or after this plant time
    await mb.write_register(0, 4242, device_id=5)
    await until(lambda: fallback_is((False, False)), timeout=3)
    await until(lambda: fallback_is((True, True)))
    assert sim.plant.t >= t_write + HEARTBEAT_TIMEOUT_S - 2 * SPEED * 0.05
    assert sim.plant.t - t_write < HEARTBEAT_TIMEOUT_S + SPEED * 1.0
    await mb.write_register(0, 4243, device_id=5)
    await until(lambda: fallback_is((False, False)), timeout=3)


# -- faults on the protocol layer ----------------------------------------------------


async def test_comms_loss_silences_one_unit_of_the_gateway(
    sim: PlantServer, modbus_port: int
) -> None:
    client = await modbus_client(modbus_port, request_timeout=0.3)
    try:
        fault = sim.inject("comms_loss", "cdu", duration_s=SPEED * 1.0)
        await sim.ticked()
        with pytest.raises(ModbusException):
            await client.read_input_registers(0, count=2, device_id=2)
        assert not (await client.read_input_registers(0, count=2, device_id=1)).isError()
        await sim.tick_until(lambda: sim.plant.t > fault.end_s)
        await until(lambda: answers(client, 2), poll=0.1)
    finally:
        client.close()


async def test_opcua_server_restart_drops_sessions_then_serves_again(
    sim: PlantServer, ua_url: str
) -> None:
    client = Client(ua_url, timeout=1.0)
    await client.connect()
    node_id = "ns=2;s=HP.HeatOutput"
    await client.get_node(node_id).read_value()
    async def gone() -> bool:
        try:
            await client.get_node(node_id).read_value()
        except Exception:  # the link is gone: any asyncua/socket error will do
            return True
        return False

    async def served_again() -> tuple[object] | None:
        fresh = Client(ua_url, timeout=1.0)
        try:
            await fresh.connect()
        except (TimeoutError, OSError, ua.UaError):
            return None
        try:
            return (await fresh.get_node(node_id).read_value(),)
        finally:
            await fresh.disconnect()

    sim.inject("server_restart", "heatpump", duration_s=SPEED * 0.5)
    await until(gone, poll=0.05)
    client.disconnect_socket()
    (value,) = await until(served_again, timeout=15, poll=0.2)
    assert isinstance(value, float)


async def test_frozen_register_holds_while_the_plant_moves(
    sim: PlantServer, site: SiteConfig, mb: AsyncModbusTcpClient
) -> None:
    pdu = site.devices["pdu"]
    assert isinstance(pdu, ModbusTcpDeviceConfig)
    point = pdu.points["it_power"]
    sim.inject("sensor_stuck", "it_power", duration_s=SPEED * 2.0)
    await sim.ticked()
    first = await read_point(mb, pdu, point)
    t_first = sim.plant.t
    await sim.tick_until(lambda: sim.plant.t > t_first + 60.0)
    assert await read_point(mb, pdu, point) == first
    assert abs(sim.plant.state.it_power_kw - wire_decode(first, point)) > 1e-3  # type: ignore[arg-type]

    sim.inject("sensor_stuck", "coolant_supply_temp", duration_s=SPEED * 1.0,
               params={"value": 42.5})
    await sim.ticked()
    cdu = site.devices["cdu"]
    assert isinstance(cdu, ModbusTcpDeviceConfig)
    for name in ("supply_temp_a", "supply_temp_b"):
        regs = await read_point(mb, cdu, cdu.points[name])
        assert wire_decode(regs, cdu.points[name]) == pytest.approx(42.5)  # type: ignore[arg-type]
    assert sim.plant.state.supply_temp_c != pytest.approx(42.5, abs=0.5)


async def test_nan_is_nan_in_floats_and_bad_status_in_opcua_integers(
    sim: PlantServer, site: SiteConfig, mb: AsyncModbusTcpClient, opc: Client
) -> None:
    for sensor in ("coolant_supply_temp", "hp_heat", "hp_trip_code"):
        sim.inject("sensor_nan", sensor, duration_s=SPEED * 1.0)
    await sim.ticked()
    cdu = site.devices["cdu"]
    assert isinstance(cdu, ModbusTcpDeviceConfig)
    a = await read_point(mb, cdu, cdu.points["supply_temp_a"])
    assert math.isnan(wire_decode(a, cdu.points["supply_temp_a"]))  # type: ignore[arg-type]
    assert await read_point(mb, cdu, cdu.points["supply_temp_b"]) == [0x8000]
    heat = await opc.get_node("ns=2;s=HP.HeatOutput").read_data_value()
    assert heat.StatusCode.is_good() and math.isnan(heat.Value.Value)
    trip = await opc.get_node("ns=2;s=HP.TripCode").read_data_value(raise_on_bad_status=False)
    assert trip.StatusCode.value == ua.StatusCodes.BadSensorFailure


async def test_dropout_is_a_sentinel_on_modbus_and_bad_status_on_opcua(
    sim: PlantServer, site: SiteConfig, mb: AsyncModbusTcpClient, rtu: AsyncModbusSerialClient,
    opc: Client
) -> None:
    for sensor in ("outdoor_temp", "dh_demand", "hp_power", "hp_running"):
        sim.inject("sensor_dropout", sensor, duration_s=SPEED * 1.0)
    await sim.ticked()
    drycooler, dh = site.devices["drycooler"], site.devices["dh"]
    assert isinstance(drycooler, ModbusRtuDeviceConfig) and isinstance(dh, ModbusTcpDeviceConfig)
    assert await read_point(rtu, drycooler, drycooler.points["outdoor_temp"]) == [0x8000]
    assert await read_point(mb, dh, dh.points["demand"]) == [0xFFFF, 0xFFFF]
    for node_id in ("ns=2;s=HP.ElectricPower", "ns=2;s=HP.Running"):
        dv = await opc.get_node(node_id).read_data_value(raise_on_bad_status=False)
        assert dv.StatusCode.value == ua.StatusCodes.BadSensorFailure, node_id
    await sim.tick_until(lambda: not sim.plant.active_faults(), timeout=3)
    outdoor = await read_point(rtu, drycooler, drycooler.points["outdoor_temp"])
    assert outdoor != [0x8000]
    assert (await opc.get_node("ns=2;s=HP.ElectricPower").read_data_value()).StatusCode.is_good()


async def test_opcua_comms_loss_is_bad_no_communication(sim: PlantServer, opc: Client) -> None:
    fault = sim.inject("comms_loss", "heatpump", duration_s=SPEED * 1.0)
    await sim.ticked()
    for node_id in ("ns=2;s=HP.HeatOutput", "ns=2;s=HP.Running", "ns=2;s=HP.TripCode"):
        dv = await opc.get_node(node_id).read_data_value(raise_on_bad_status=False)
        assert dv.StatusCode.value == ua.StatusCodes.BadNoCommunication, node_id
    await sim.tick_until(lambda: sim.plant.t > fault.end_s)
    assert (await opc.get_node("ns=2;s=HP.HeatOutput").read_data_value()).StatusCode.is_good()


# -- records -------------------------------------------------------------------------


async def test_records_hold_ground_truth_and_every_write(
    sim: PlantServer, files: tuple[Path, Path, dict[int, int]]
) -> None:
    t = sim.plant.t  # a truth row (every 5 plant s) flushes the write rows too
    await sim.tick_until(lambda: sim.plant.t >= t + 5.0)
    record = files[1]
    with (record / WRITES_FILE).open() as fh:
        writes = list(csv.DictReader(fh))
    assert len(writes) == sim.writes_received
    valve = [w for w in writes if w["point"] == "valve_setpoint"]
    assert [float(w["value"]) for w in valve][:3] == [0.0, 1.0, 0.0]
    assert {w["actuator"] for w in valve} == {"valve_recovery"}
    assert valve[1]["raw"] == "[1000]" and valve[1]["address"] == "holding:100"
    capacity = [w for w in writes if w["point"] == "capacity_setpoint"]
    assert capacity[0]["protocol"] == "opcua" and float(capacity[0]["value"]) == 0.5
    enable = [w["value"] for w in writes if w["point"] == "hp_enable"]
    assert enable == ["True", "False"]
    assert sum(w["role"] == "plc.heartbeat" for w in writes) > 10

    with (record / TRUTH_FILE).open() as fh:
        truth = list(csv.DictReader(fh))
    times = [float(row["t"]) for row in truth]
    assert times == sorted(times) and times[-1] > 300
    assert any(float(row["cmd_valve_recovery"]) == 1.0 and float(row["valve_position"]) > 0.5
               for row in truth)
    assert any(row["plc_fallback"] == "True" for row in truth)
    assert any("sensor_nan:hp_heat" in row["faults"] for row in truth)
