"""OpcUaDevice against node-opcua, a server heatd's OPC UA library did not write:
namespaces by URI where a decoy namespace holds the same string ids, a restart that
reorders the namespace array, browsing, and SignAndEncrypt with named failures."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import pytest_asyncio

from heatd.config_loader import parse_site
from heatd.drivers.opcua import OpcUaDevice, OpcUaPoint, OpcUaSettings
from heatd.drivers.reading import Reading
from heatd.hil.rig.waiting import until
from heatd.opcua_cert import CertFiles, make_certificate
from heatd.probe import probe

from node_opcua import Namespace, NodeOpcUaServer, Variable, ensure_node_opcua

PLANT = "urn:heatd:test:plant"
DECOY = "urn:heatd:test:decoy"
HANG_GUARD = 30.0
"""Upper bound for conditions that must eventually hold; only a hang reaches it."""
eventually = partial(until, timeout=HANG_GUARD)


def plant(supply: float = 35.5) -> Namespace:
    return Namespace(PLANT, [Variable("Loop.SupplyTemp", "Double", supply),
                             Variable("HP.Capacity", "Int16", 40),
                             Variable("HP.Status", "UInt16", 3, writable=False)])


def decoy() -> Namespace:
    return Namespace(DECOY, [Variable("Loop.SupplyTemp", "Double", 99.0),
                             Variable("HP.Capacity", "Int16", -1)])


def settings(endpoint: str, **kwargs: object) -> OpcUaSettings:
    base: dict[str, object] = {"timeout": 2.0, "publishing_interval": 0.1,
                               "reconnect_min": 0.1, "reconnect_max": 0.5}
    base.update(kwargs)
    return OpcUaSettings(endpoint=endpoint, **base)  # type: ignore[arg-type]


class Recorder:
    def __init__(self) -> None:
        self.readings: dict[str, list[Reading]] = defaultdict(list)

    def __call__(self, name: str, reading: Reading) -> None:
        self.readings[name].append(reading)

    def last_is(self, name: str, value: object) -> bool:
        seen = self.readings.get(name)
        return bool(seen) and seen[-1].value == value


@pytest.fixture(scope="module", autouse=True)
def node_opcua() -> None:
    ensure_node_opcua()


@pytest_asyncio.fixture
async def decoy_first(tmp_path: Path) -> AsyncIterator[NodeOpcUaServer]:
    """The decoy namespace registered first: it gets index 2, the plant index 3."""
    server = NodeOpcUaServer(tmp_path, [decoy(), plant()])
    await server.start()
    yield server
    await server.stop()


async def started(device: OpcUaDevice) -> OpcUaDevice:
    await device.start()
    await eventually(lambda: device.online)
    return device


async def test_nsu_reads_the_plant_and_a_wrong_index_is_flagged(
    decoy_first: NodeOpcUaServer,
) -> None:
    device = await started(OpcUaDevice("plc", settings(
        decoy_first.endpoint, namespaces={2: PLANT})))
    try:
        assert device.namespaces is not None and device.namespaces[2:] == (DECOY, PLANT)
        points = [
            OpcUaPoint("by_uri", f"nsu={PLANT};s=Loop.SupplyTemp"),
            OpcUaPoint("wrong_index", "ns=2;s=Loop.SupplyTemp"),
            OpcUaPoint("unknown_uri", "nsu=urn:nobody;s=Loop.SupplyTemp"),
            OpcUaPoint("undeclared", "ns=3;s=HP.Capacity"),
        ]
        readings = await device.read(points)
        assert readings["by_uri"].value == 35.5
        assert readings["undeclared"].value == 40
        assert readings["wrong_index"].value is None
        assert readings["wrong_index"].reason == (
            f"namespace ns=2 is {DECOY}, the site expects {PLANT}; {PLANT} is ns=3")
        assert readings["unknown_uri"].reason == "namespace urn:nobody not on the server"

        sink = Recorder()
        await device.subscribe(points[:2], sink)
        await eventually(lambda: sink.last_is("by_uri", 35.5))
        assert sink.readings["wrong_index"][-1].reason.startswith("namespace ns=2 is ")

        await device.write(OpcUaPoint("cap", f"nsu={PLANT};s=HP.Capacity"), 55)
        capacity = await device.read([OpcUaPoint("cap", f"nsu={PLANT};s=HP.Capacity"),
                                      OpcUaPoint("decoy", f"nsu={DECOY};s=HP.Capacity")])
        assert (capacity["cap"].value, capacity["decoy"].value) == (55, -1)
    finally:
        await device.close()


async def test_restart_that_reorders_namespaces_is_resolved_again(tmp_path: Path) -> None:
    server = NodeOpcUaServer(tmp_path, [plant(35.5), decoy()])
    await server.start()
    events: list[tuple[str, dict[str, object]]] = []
    device = OpcUaDevice("plc", settings(server.endpoint))
    device.on_event = lambda name, details: events.append((name, details))
    sink = Recorder()
    try:
        await started(device)
        await device.subscribe([OpcUaPoint("supply", f"nsu={PLANT};s=Loop.SupplyTemp")], sink)
        await eventually(lambda: sink.last_is("supply", 35.5))
        assert device.namespaces is not None and device.namespaces.index(PLANT) == 2

        await server.stop()
        await eventually(lambda: not device.online)
        server.namespaces = [decoy(), plant(36.5)]
        await server.start()
        await eventually(lambda: sink.last_is("supply", 36.5))
        assert device.namespaces.index(PLANT) == 3
        polled = await device.read([OpcUaPoint("supply", f"nsu={PLANT};s=Loop.SupplyTemp")])
        assert polled["supply"].value == 36.5
        assert events == [("namespaces_changed",
                           {"moved": {DECOY: {"was": 3, "now": 2},
                                      PLANT: {"was": 2, "now": 3}}})]
    finally:
        await device.close()
        await server.stop()


async def test_browse_lists_both_namespaces_in_nsu_form(decoy_first: NodeOpcUaServer) -> None:
    device = await started(OpcUaDevice("plc", settings(decoy_first.endpoint)))
    try:
        found = {info.node_id: info for info in await device.browse()}
        supply = found[f"nsu={PLANT};s=Loop.SupplyTemp"]
        assert (supply.path, supply.data_type, supply.access, supply.value) == (
            "Plant/Loop.SupplyTemp", "Double", "read/write", 35.5)
        assert found[f"nsu={DECOY};s=Loop.SupplyTemp"].value == 99.0
        status = found[f"nsu={PLANT};s=HP.Status"]
        assert (status.data_type, status.access, status.heatd_type) == ("UInt16", "read",
                                                                        "uint16")
        below = await device.browse(f"nsu={PLANT};s=Plant")
        assert {info.path for info in below} == {"Loop.SupplyTemp", "HP.Capacity", "HP.Status"}
    finally:
        await device.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertFiles]:
    directory = tmp_path_factory.mktemp("pki")
    return {
        "server": make_certificate("urn:heatd:test:node-opcua", directory, name="server",
                                   hosts=("localhost",)),
        "client": make_certificate("urn:heatd:test:client", directory, name="client"),
        "stranger": make_certificate("urn:heatd:test:stranger", directory, name="stranger"),
    }


def secured(endpoint: str, client: CertFiles, uri: str, **trust: object) -> OpcUaSettings:
    return settings(endpoint, security_policy="Basic256Sha256",
                    security_mode="SignAndEncrypt", certificate=str(client.pem),
                    private_key=str(client.key), application_uri=uri, **trust)


async def test_sign_and_encrypt_and_each_failure_named(
    tmp_path: Path, pki: dict[str, CertFiles]
) -> None:
    server = NodeOpcUaServer(tmp_path, [plant()], security={
        "certificate": str(pki["server"].pem), "privateKey": str(pki["server"].key),
        "pki": str(tmp_path / "server-pki"), "trusted": [str(pki["client"].der)]})
    await server.start()
    trusted_list = tmp_path / "trusted"
    trusted_list.mkdir()
    (trusted_list / "server.der").write_bytes(pki["server"].der.read_bytes())
    other_list = tmp_path / "other"
    other_list.mkdir()
    (other_list / "stranger.der").write_bytes(pki["stranger"].der.read_bytes())
    endpoint = server.endpoint
    pinned = {"trust": "pinned", "server_certificate": str(pki["server"].der)}
    devices = {
        "good": OpcUaDevice("good", secured(endpoint, pki["client"], "urn:heatd:test:client",
                                            trust="list", trust_list=str(trusted_list))),
        "pinned": OpcUaDevice("pinned", secured(endpoint, pki["client"],
                                                "urn:heatd:test:client", **pinned)),
        "untrusted": OpcUaDevice("untrusted", secured(
            endpoint, pki["stranger"], "urn:heatd:test:stranger", **pinned)),
        "wrong_pin": OpcUaDevice("wrong_pin", secured(
            endpoint, pki["client"], "urn:heatd:test:client", trust="pinned",
            server_certificate=str(pki["stranger"].der))),
        "not_listed": OpcUaDevice("not_listed", secured(
            endpoint, pki["client"], "urn:heatd:test:client", trust="list",
            trust_list=str(other_list))),
        "wrong_uri": OpcUaDevice("wrong_uri", secured(
            endpoint, pki["client"], "urn:heatd:test:someone-else", **pinned)),
    }
    expected = {
        "untrusted": "client_certificate_untrusted: ",
        "wrong_pin": "server_pin_mismatch: ",
        "not_listed": "server_not_trusted: ",
        "wrong_uri": "application_uri_mismatch: ",
    }
    try:
        for device in devices.values():
            await device.start()
        await eventually(lambda: devices["good"].online and devices["pinned"].online)
        supply = OpcUaPoint("supply", f"nsu={PLANT};s=Loop.SupplyTemp")
        assert (await devices["good"].read([supply]))["supply"].value == 35.5
        await eventually(lambda: all(
            (devices[name].last_error or "").startswith(prefix)
            for name, prefix in expected.items()))
        assert not any(devices[name].online for name in expected)
    finally:
        for device in devices.values():
            await device.close()
        await server.stop()


async def test_probe_names_an_untrusted_client_certificate(
    tmp_path: Path, pki: dict[str, CertFiles]
) -> None:
    server = NodeOpcUaServer(tmp_path, [plant()], security={
        "certificate": str(pki["server"].pem), "privateKey": str(pki["server"].key),
        "pki": str(tmp_path / "server-pki"), "trusted": [str(pki["client"].der)]})
    await server.start()
    site = parse_site(f"""\
site: {{id: t}}
devices:
  plc:
    protocol: opcua
    endpoint: {server.endpoint}
    security_policy: Basic256Sha256
    security_mode: SignAndEncrypt
    certificate: {pki["stranger"].pem}
    private_key: {pki["stranger"].key}
    application_uri: urn:heatd:test:stranger
    server_certificate: {pki["server"].der}
    mode: polling
    points:
      supply: {{node_id: "nsu={PLANT};s=Loop.SupplyTemp"}}
""", "site.yaml")
    out = io.StringIO()
    try:
        assert await probe(site, None, out) == 2
    finally:
        await server.stop()
    assert out.getvalue().startswith(
        "device plc (opcua): offline (client_certificate_untrusted: the server refused")
