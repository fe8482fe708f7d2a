"""A server whose NamespaceArray changes while heatd's session stays up: an asyncua server
loads another model whose namespace takes the site's index and holds variables with the
same string ids, and the site's variables move one index up. heatd must read and write the
moved variables by the next request, never the ones now at the old index, and say so once.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from functools import partial

import pytest
import pytest_asyncio
from asyncua import ua

from heatd.drivers.base import WriteError
from heatd.drivers.opcua import OpcUaDevice, OpcUaPoint, OpcUaSettings
from heatd.drivers.opcua.device import NAMESPACES_CHANGING
from heatd.drivers.reading import Reading
from heatd.hil.rig.waiting import until

from opcua_servers import NAMESPACE, NS, OpcUaTestServer, start_server

DECOY = "urn:heatd:test:decoy"
"""The model loaded mid-session: it takes index 2 and names its variables like the site's."""
MOVED = NS + 1
HANG_GUARD = 10.0
"""Upper bound for conditions that must eventually hold; only a hang reaches it."""
eventually = partial(until, timeout=HANG_GUARD)

SUPPLY = OpcUaPoint("supply", f"nsu={NAMESPACE};s=Loop.SupplyTemp")
VALVE = OpcUaPoint("valve", f"nsu={NAMESPACE};s=Loop.Valve")
BY_INDEX = OpcUaPoint("by_index", f"ns={NS};s=Loop.SupplyTemp")
"""Declared as ``namespaces: {2: urn:heatd:test}``: after the move ns=2 is the decoy."""
VALVE_BY_INDEX = OpcUaPoint("valve_by_index", f"ns={NS};s=Loop.Valve")
MISPLACED = f"namespace ns={NS} is {DECOY}, the site expects {NAMESPACE}; {NAMESPACE} is ns={MOVED}"
MOVE = {"moved": {DECOY: {"was": -1, "now": NS}, NAMESPACE: {"was": NS, "now": MOVED}}}

pytestmark = pytest.mark.asyncio(loop_scope="module")


class Recorder:
    """A ReadingSink that keeps every reading per point."""

    def __init__(self) -> None:
        self.readings: dict[str, list[Reading]] = defaultdict(list)

    def __call__(self, name: str, reading: Reading) -> None:
        self.readings[name].append(reading)

    def values(self, name: str) -> list[object]:
        return [reading.value for reading in self.readings[name]]

    def last_is(self, name: str, value: object) -> bool:
        seen = self.readings.get(name)
        return bool(seen) and seen[-1].value == value


@pytest_asyncio.fixture(loop_scope="module")
async def server() -> AsyncIterator[OpcUaTestServer]:
    srv = await start_server()
    yield srv
    await srv.stop()


class Events(list[tuple[str, dict[str, object]]]):
    """The device events, as heatd's runtime receives them."""

    def __call__(self, name: str, details: dict[str, object]) -> None:
        self.append((name, details))


@pytest_asyncio.fixture(loop_scope="module")
async def events() -> Events:
    return Events()


@pytest_asyncio.fixture(loop_scope="module")
async def device(server: OpcUaTestServer, events: Events) -> AsyncIterator[OpcUaDevice]:
    dev = OpcUaDevice("plc", OpcUaSettings(
        endpoint=server.endpoint, namespaces={NS: NAMESPACE}, timeout=2.0,
        publishing_interval=0.05, reconnect_min=0.1, reconnect_max=0.4))
    dev.on_event = events
    await dev.start()
    await eventually(lambda: dev.online)
    yield dev
    await dev.close()


async def load_decoy_model(srv: OpcUaTestServer, supply: float) -> None:
    """What a PLC runtime does when it loads a model in front of the site's: the site's
    variables appear one index up (the supply now ``supply``) and the old node ids name
    the decoy's variables (the same nodes, so a monitored item on them goes on reporting:
    the decoy's values). The server does it in one go, no step waiting on the network, and
    the decoy's values change before the array, so a publish carries them ahead of it."""
    server = srv.server
    array = await server.get_namespace_array()
    assert array[NS:] == [NAMESPACE]
    folder = await server.nodes.objects.add_folder(ua.NodeId("Plant", MOVED), "Plant")
    for name, value in (("Loop.SupplyTemp", supply), ("Loop.Valve", 0.0)):
        node = await folder.add_variable(ua.NodeId(name, MOVED), name, value)
        await node.set_writable()
    await srv.set("Loop.SupplyTemp", 99.0)
    await srv.set("Loop.Valve", -1.0)
    await server.nodes.namespace_array.write_value([*array[:NS], DECOY, NAMESPACE])


async def server_value(srv: OpcUaTestServer, name: str, ns: int) -> object:
    return await srv.server.get_node(ua.NodeId(name, ns)).read_value()


async def test_polled_read_after_the_change_reads_the_moved_variable(
    server: OpcUaTestServer, device: OpcUaDevice, events: Events
) -> None:
    before = await device.read([SUPPLY, BY_INDEX])
    assert (before["supply"].value, before["by_index"].value) == (35.5, 35.5)

    await load_decoy_model(server, supply=36.5)
    first = await device.read([SUPPLY, BY_INDEX])
    assert first["supply"].value == 36.5
    assert (first["by_index"].value, first["by_index"].reason) == (None, MISPLACED)
    for _ in range(3):
        again = await device.read([SUPPLY, BY_INDEX])
        assert again["supply"].value == 36.5
    assert events == [("namespaces_changed", MOVE)]
    assert device.connects == 1, "the session was kept"
    assert device.namespaces is not None and device.namespaces[NS:] == (DECOY, NAMESPACE)


async def test_write_queued_behind_the_change_lands_on_the_moved_variable(
    server: OpcUaTestServer, device: OpcUaDevice, events: Events
) -> None:
    assert (await device.read([VALVE]))["valve"].value == 0.0
    await device.write(VALVE, 0.1)
    assert await server_value(server, "Loop.Valve", NS) == 0.1

    await load_decoy_model(server, supply=36.5)
    await device.write(VALVE, 0.25)  # no read in between has seen the change
    assert await server_value(server, "Loop.Valve", MOVED) == 0.25
    with pytest.raises(WriteError, match=MISPLACED):
        await device.write(VALVE_BY_INDEX, 0.5)
    assert await server_value(server, "Loop.Valve", NS) == -1.0, "the decoy was written"
    assert events == [("namespaces_changed", MOVE)]
    assert device.connects == 1


async def test_a_read_and_a_write_that_race_the_change_both_use_the_new_array(
    server: OpcUaTestServer, device: OpcUaDevice, events: Events
) -> None:
    assert (await device.read([SUPPLY]))["supply"].value == 35.5
    await load_decoy_model(server, supply=36.5)
    readings, _ = await asyncio.gather(device.read([SUPPLY, VALVE]), device.write(VALVE, 0.75))
    assert readings["supply"].value == 36.5
    assert readings["valve"].value in (0.0, 0.75)
    assert await server_value(server, "Loop.Valve", MOVED) == 0.75
    assert await server_value(server, "Loop.Valve", NS) == -1.0
    assert events == [("namespaces_changed", MOVE)]


async def test_subscription_follows_the_moved_variable(
    server: OpcUaTestServer, device: OpcUaDevice, events: Events
) -> None:
    sink = Recorder()
    await device.subscribe([SUPPLY, BY_INDEX], sink)
    await eventually(lambda: sink.last_is("supply", 35.5) and sink.last_is("by_index", 35.5))

    await load_decoy_model(server, supply=36.5)
    await eventually(lambda: sink.last_is("supply", 36.5), what="the moved supply")
    await server.server.get_node(ua.NodeId("Loop.SupplyTemp", MOVED)).write_value(37.0)
    await eventually(lambda: sink.last_is("supply", 37.0), what="a change of the moved supply")

    assert 99.0 not in sink.values("supply") + sink.values("by_index")
    assert sink.readings["by_index"][-1].reason == MISPLACED
    assert {r.reason for r in sink.readings["supply"] if r.value is None} <= {NAMESPACES_CHANGING}
    assert events == [("namespaces_changed", MOVE)]
    assert device.connects == 1


async def test_an_appended_namespace_is_reported_and_changes_no_point(
    server: OpcUaTestServer, device: OpcUaDevice, events: Events
) -> None:
    sink = Recorder()
    await device.subscribe([SUPPLY, BY_INDEX], sink)
    await eventually(lambda: sink.last_is("supply", 35.5) and sink.last_is("by_index", 35.5))

    extra = await server.server.register_namespace("urn:heatd:test:extra")
    await eventually(lambda: events, what="namespaces_changed")
    assert events == [
        ("namespaces_changed", {"moved": {"urn:heatd:test:extra": {"was": -1, "now": extra}}})]
    await server.set("Loop.SupplyTemp", 36.0)
    await eventually(lambda: sink.last_is("supply", 36.0) and sink.last_is("by_index", 36.0))
    assert all(r.value is not None for r in sink.readings["supply"] + sink.readings["by_index"])
    polled = await device.read([SUPPLY, BY_INDEX])
    assert (polled["supply"].value, polled["by_index"].value) == (36.0, 36.0)
    assert len(events) == 1
