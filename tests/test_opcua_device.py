"""OpcUaDevice against real asyncua servers: polled reads, subscriptions, status codes,
typed writes, a server restart, and Basic256Sha256 with certificates."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import Client, ua

from heatd.drivers.base import WriteError
from heatd.drivers.codec import DataType
from heatd.drivers.opcua import DISCONNECTED, OpcUaDevice, OpcUaPoint, OpcUaSettings
from heatd.drivers.reading import Quality, Reading
from heatd.hil.rig.waiting import until

from opcua_servers import (
    READ_ONLY,
    CertPair,
    FreezableLink,
    OpcUaTestServer,
    free_port,
    make_cert,
    node_id,
    start_server,
    utc,
)

TIMEOUT = 0.5
HANG_GUARD = 10.0
"""Upper bound for conditions that must eventually hold; only a hang reaches it."""
eventually = partial(until, timeout=HANG_GUARD)


def point(name: str, **kwargs: object) -> OpcUaPoint:
    return OpcUaPoint(name=name, node_id=node_id(name), **kwargs)  # type: ignore[arg-type]


MISSING = OpcUaPoint(name="missing", node_id=node_id("No.Such.Node"))


def settings(endpoint: str, **kwargs: object) -> OpcUaSettings:
    base: dict[str, object] = {
        "timeout": TIMEOUT,
        "publishing_interval": 0.05,
        "reconnect_min": 0.1,
        "reconnect_max": 0.4,
    }
    base.update(kwargs)
    return OpcUaSettings(endpoint=endpoint, **base)  # type: ignore[arg-type]


class Recorder:
    """A ReadingSink that keeps every reading per point."""

    def __init__(self) -> None:
        self.readings: dict[str, list[Reading]] = defaultdict(list)

    def __call__(self, name: str, reading: Reading) -> None:
        self.readings[name].append(reading)

    def last(self, name: str) -> Reading | None:
        seen = self.readings.get(name)
        return seen[-1] if seen else None

    def last_is(self, name: str, value: object = None, quality: str = "good") -> bool:
        reading = self.last(name)
        if reading is None or reading.quality_text != quality:
            return False
        return value is None or reading.value == value


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_server() -> AsyncIterator[OpcUaTestServer]:
    """One server for the tests that leave it running (starting one takes about a second)."""
    srv = await start_server()
    yield srv
    await srv.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def server(shared_server: OpcUaTestServer) -> OpcUaTestServer:
    await shared_server.reset()
    return shared_server


@pytest_asyncio.fixture(loop_scope="module")
async def device(server: OpcUaTestServer) -> AsyncIterator[OpcUaDevice]:
    dev = OpcUaDevice("plc", settings(server.endpoint))
    await dev.start()
    await eventually(lambda: dev.online)
    yield dev
    await dev.close()


async def test_polled_read_of_typed_nodes(device: OpcUaDevice) -> None:
    points = [
        point("Loop.SupplyTemp"),
        point("Loop.Flow"),
        point("HP.Running"),
        point("HP.TripCode"),
        point("Rack.Energy", scale=0.001, offset=1.0),
        point("HP.Capacity", data_type=DataType.INT16),
    ]
    readings = await device.read(points)
    values = {name: r.value for name, r in readings.items()}
    assert values == {
        "Loop.SupplyTemp": 35.5,
        "Loop.Flow": 12.25,
        "HP.Running": True,
        "HP.TripCode": 7,
        "Rack.Energy": pytest.approx(123456.789 + 1.0),
        "HP.Capacity": 40,
    }
    assert type(values["HP.TripCode"]) is int and type(values["HP.Running"]) is bool
    assert all(r.quality is Quality.GOOD and r.source_ts > 1.6e9 for r in readings.values())


async def test_a_value_the_declared_type_cannot_hold_is_bad(device: OpcUaDevice) -> None:
    """A real server's Boolean read for a point declared float32 (a wrong node id, or a
    PLC program that changed the variable) is bad, not a 1.0 degC supply; a Double on an
    int16 point too. The same nodes read as their own types stay good."""
    def typed(name: str, node: str, data_type: DataType) -> OpcUaPoint:
        return OpcUaPoint(name=name, node_id=node_id(node), data_type=data_type)

    readings = await device.read([
        typed("flag_as_float", "HP.Running", DataType.FLOAT32),
        typed("double_as_int", "Loop.SupplyTemp", DataType.INT16),
        typed("flag", "HP.Running", DataType.BOOL),
        typed("capacity", "HP.Capacity", DataType.FLOAT32),
    ])
    flag_as_float, double_as_int = readings["flag_as_float"], readings["double_as_int"]
    assert (flag_as_float.quality, flag_as_float.value) == (Quality.BAD, None)
    assert flag_as_float.reason == "type mismatch: the server's Boolean where the point is float32"
    assert double_as_int.quality is Quality.BAD
    assert double_as_int.reason == "type mismatch: the server's Double where the point is int16"
    assert readings["flag"].value is True and readings["capacity"].value == 40


async def test_source_timestamp_comes_from_the_server(
    server: OpcUaTestServer, device: OpcUaDevice
) -> None:
    stamp = utc(2024, 1, 2, 3, 4, 5)
    await server.set_stamped("Loop.SupplyTemp", 36.0, stamp)
    reading = (await device.read([point("Loop.SupplyTemp")]))["Loop.SupplyTemp"]
    assert reading.value == 36.0
    assert reading.source_ts == stamp.timestamp()


async def test_bad_and_uncertain_status_become_bad_without_a_value(
    server: OpcUaTestServer, device: OpcUaDevice
) -> None:
    await server.set_status("Loop.SupplyTemp", ua.StatusCodes.BadSensorFailure, value=99.0)
    await server.set_status("Loop.Flow", ua.StatusCodes.UncertainLastUsableValue, value=1.0)
    readings = await device.read([point("Loop.SupplyTemp"), point("Loop.Flow")])
    assert readings["Loop.SupplyTemp"].quality_text == "bad:BadSensorFailure"
    assert readings["Loop.Flow"].quality_text == "bad:UncertainLastUsableValue"
    assert readings["Loop.SupplyTemp"].value is None and readings["Loop.Flow"].value is None


async def test_missing_node_is_bad_and_does_not_spoil_the_group(device: OpcUaDevice) -> None:
    readings = await device.read([point("Loop.SupplyTemp"), MISSING])
    assert readings["missing"].quality_text == "bad:BadNodeIdUnknown"
    assert readings["Loop.SupplyTemp"].value == 35.5


async def test_subscription_delivers_changes_statuses_and_refusals(
    server: OpcUaTestServer, device: OpcUaDevice
) -> None:
    sink = Recorder()
    await device.subscribe([point("Loop.SupplyTemp"), point("HP.Running"), MISSING], sink)
    # the first values of two items need not come in the same notification
    await eventually(lambda: sink.last_is("Loop.SupplyTemp", 35.5)
                     and sink.last_is("HP.Running", True)
                     and sink.last_is("missing", quality="bad:BadNodeIdUnknown"))

    await server.set("Loop.SupplyTemp", 41.5)
    await eventually(lambda: sink.last_is("Loop.SupplyTemp", 41.5))
    await server.set("HP.Running", False)
    await eventually(lambda: sink.last_is("HP.Running", False))
    await server.set_status("Loop.SupplyTemp", ua.StatusCodes.BadSensorFailure, value=41.5)
    await eventually(lambda: sink.last_is("Loop.SupplyTemp", quality="bad:BadSensorFailure"))
    assert sink.last("Loop.SupplyTemp").value is None  # type: ignore[union-attr]


async def test_write_uses_the_variables_variant_type(
    server: OpcUaTestServer, device: OpcUaDevice
) -> None:
    # The peer is strict: a plain asyncua write of a Python int into a Double is refused.
    async with Client(server.endpoint) as raw:
        with pytest.raises(ua.UaStatusCodeError, match="BadTypeMismatch"):
            await raw.get_node(node_id("Loop.Valve")).write_value(42)

    await device.write(point("Loop.Valve"), 42)  # variant type learnt from the server
    assert (await server.read("Loop.Valve"), type(await server.read("Loop.Valve"))) == (42.0, float)
    await device.write(point("Loop.Valve", data_type=DataType.FLOAT64, scale=0.1), 4.2)
    assert await server.read("Loop.Valve") == pytest.approx(42.0)
    await device.write(point("HP.Capacity", data_type=DataType.INT16), 55.0)
    assert await server.read("HP.Capacity") == 55
    await device.write(point("HP.Running"), 0)
    assert await server.read("HP.Running") is False

    readings = await device.read([point("Loop.Valve"), point("HP.Capacity")])
    assert [r.value for r in readings.values()] == [pytest.approx(42.0), 55]


@pytest.mark.parametrize(
    ("target", "value", "reason"),
    [
        (point("HP.Capacity", data_type=DataType.INT16), 40000, "does not fit Int16"),
        (point("HP.Running"), 2, "not a boolean"),
        (point(READ_ONLY), 1.0, "BadUserAccessDenied|BadNotWritable"),
        (MISSING, 1.0, "BadNodeIdUnknown"),
    ],
)
async def test_refused_writes_raise_write_error(
    server: OpcUaTestServer, device: OpcUaDevice, target: OpcUaPoint, value: float, reason: str
) -> None:
    with pytest.raises(WriteError, match=reason):
        await device.write(target, value)
    assert await server.read("HP.Capacity") == 40


async def test_server_restart_points_go_bad_then_subscriptions_come_back() -> None:
    server = await start_server()
    device = OpcUaDevice("plc", settings(server.endpoint))
    await device.start()
    try:
        await _outage_and_recovery(server, device)
    finally:
        await device.close()


async def _outage_and_recovery(server: OpcUaTestServer, device: OpcUaDevice) -> None:
    sink = Recorder()
    temp = point("Loop.SupplyTemp")
    await device.subscribe([temp], sink)
    await eventually(lambda: sink.last_is("Loop.SupplyTemp", 35.5))

    await server.stop()
    await eventually(lambda: sink.last_is("Loop.SupplyTemp", quality=f"bad:{DISCONNECTED}"))
    assert not device.online
    readings = await asyncio.wait_for(device.read([temp]), HANG_GUARD)
    assert readings["Loop.SupplyTemp"].quality_text == f"bad:{DISCONNECTED}"
    with pytest.raises(WriteError, match=DISCONNECTED):
        await device.write(temp, 1.0)

    restarted = await start_server(server.port)
    try:
        await restarted.set("Loop.SupplyTemp", 44.25)
        await eventually(lambda: sink.last_is("Loop.SupplyTemp", 44.25))
        assert device.online
        await restarted.set("Loop.SupplyTemp", 45.0)
        await eventually(lambda: sink.last_is("Loop.SupplyTemp", 45.0))
        assert (await device.read([temp]))["Loop.SupplyTemp"].value == 45.0
    finally:
        await restarted.stop()


async def test_silent_link_is_detected_and_recovered(server: OpcUaTestServer) -> None:
    link = FreezableLink(server.port)
    await link.start()
    device = OpcUaDevice("far", settings(f"opc.tcp://127.0.0.1:{link.port}"))
    sink = Recorder()
    temp = point("Loop.SupplyTemp")
    await device.start()
    try:
        await device.subscribe([temp], sink)
        await eventually(lambda: sink.last_is("Loop.SupplyTemp", 35.5))

        link.frozen = True
        readings = await asyncio.wait_for(device.read([temp]), HANG_GUARD)
        assert readings["Loop.SupplyTemp"].reason in ("timeout", DISCONNECTED)
        assert not device.online
        await eventually(lambda: sink.last_is("Loop.SupplyTemp", quality=f"bad:{DISCONNECTED}"))

        link.frozen = False
        await server.set("Loop.SupplyTemp", 38.0)
        await eventually(lambda: sink.last_is("Loop.SupplyTemp", 38.0))
        assert device.online
    finally:
        await device.close()
        await link.stop()


async def test_device_started_before_its_server_connects_when_it_appears() -> None:
    port = free_port()
    dev = OpcUaDevice("late", settings(f"opc.tcp://127.0.0.1:{port}"))
    sink = Recorder()
    await dev.start()
    try:
        await dev.subscribe([point("Loop.Flow")], sink)
        assert sink.last_is("Loop.Flow", quality=f"bad:{DISCONNECTED}")
        assert (await dev.read([point("Loop.Flow")]))["Loop.Flow"].reason == DISCONNECTED
        srv = await start_server(port)
        try:
            await eventually(lambda: sink.last_is("Loop.Flow", 12.25))
            assert dev.online
        finally:
            await srv.stop()
    finally:
        await dev.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertPair]:
    directory: Path = tmp_path_factory.mktemp("pki")
    return {
        "server": make_cert(directory, "server", "urn:heatd:test:server", server=True),
        "client": make_cert(directory, "client", "urn:heatd:test:client", server=False),
        "stranger": make_cert(directory, "stranger", "urn:heatd:test:stranger", server=False),
    }


USERS = {"heatd": "s3cret"}


def secure(
    endpoint: str, client: CertPair, server_cert: Path | None, password: str = "s3cret",
    **trust: object,
) -> OpcUaSettings:
    return settings(
        endpoint,
        username="heatd",
        password=password,
        security_policy="Basic256Sha256",
        security_mode="SignAndEncrypt",
        certificate=str(client.certificate),
        private_key=str(client.private_key),
        server_certificate=str(server_cert) if server_cert else None,
        application_uri=client.uri,
        timeout=2.0,
        **trust,
    )


@pytest.mark.parametrize("trust", ["pinned", "list", "any"])
async def test_basic256sha256_sign_and_encrypt_end_to_end(
    certs: dict[str, CertPair], trust: str
) -> None:
    srv = await start_server(cert=certs["server"], trusted_client=certs["client"], users=USERS)
    server_cert = certs["server"].certificate if trust == "pinned" else None
    trusted = certs["server"].certificate.parent / "trusted"
    trusted.mkdir(exist_ok=True)
    (trusted / "server.der").write_bytes(certs["server"].certificate.read_bytes())
    how = {"trust": trust, "trust_list": str(trusted)}
    good = OpcUaDevice("secure", secure(srv.endpoint, certs["client"], server_cert, **how))
    stranger = OpcUaDevice("stranger",
                           secure(srv.endpoint, certs["stranger"], server_cert, **how))
    guesser = OpcUaDevice("guesser",
                          secure(srv.endpoint, certs["client"], server_cert, "guess", **how))
    plain = OpcUaDevice("plain", settings(srv.endpoint, username="heatd", password="s3cret"))
    devices = (good, stranger, guesser, plain)
    try:
        for dev in devices:
            await dev.start()
        sink = Recorder()
        await good.subscribe([point("Loop.SupplyTemp")], sink)
        await eventually(lambda: sink.last_is("Loop.SupplyTemp", 35.5))
        await good.write(point("Loop.Valve"), 3)
        assert (await good.read([point("Loop.Valve")]))["Loop.Valve"].value == 3.0
        await srv.set("Loop.SupplyTemp", 37.0)
        await eventually(lambda: sink.last_is("Loop.SupplyTemp", 37.0))
        # the untrusted certificate, the wrong password and the unsecured client have each
        # had an attempt refused
        await eventually(lambda: all(o.last_error for o in (stranger, guesser, plain)))
        for outsider in (stranger, guesser, plain):
            assert not outsider.online
            reading = (await outsider.read([point("Loop.Valve")]))["Loop.Valve"]
            assert reading.reason == DISCONNECTED
        assert (stranger.last_error or "").startswith("client_certificate_untrusted: ")
        assert (guesser.last_error or "").startswith("user_rejected: ")
        assert (plain.last_error or "").startswith("security_policy_rejected: ")
    finally:
        for dev in devices:
            await dev.close()
        await srv.stop()
