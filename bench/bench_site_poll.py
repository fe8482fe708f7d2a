"""One full poll of a site (500 points by default: 450 Modbus points over 3 unit ids, mixed
types, one pymodbus TCP server, and 50 OPC UA variables, one asyncua server; a tenth of
any size is OPC UA), through heatd's drivers, against a minimal hand-written loop that
sends exactly the same Modbus blocks and one plain asyncua read of the same nodes, in the
same run. Devices are polled concurrently in both, as the daemon does.

    .venv/bin/python bench/bench_site_poll.py [--points 500] [--rounds 200] [--uvloop]

Prints requests per poll against the minimum the map allows, the median wall time of
each, and their ratio (target: at most 1.3).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from asyncua import Client, Server, ua
from bench_modbus import LIMITS, UNITS, baseline_poll, minimum_requests, site_points
from pymodbus.client import AsyncModbusTcpClient

from heatd.drivers.modbus import ModbusTcpDevice, TcpLink, TcpSettings
from heatd.drivers.opcua import OpcUaDevice, OpcUaPoint, OpcUaSettings
from heatd.hil.rig.modbus import SimServer, free_port, unit
from heatd.hil.rig.waiting import until

OPCUA_SHARE = 10
"""One point in this many is an OPC UA variable."""
UNIT_SIZE = 4000


async def opcua_server(port: int, variables: int) -> tuple[Server, list[str]]:
    server = Server()
    await server.init()
    server.disable_clock()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}")
    ns = await server.register_namespace("urn:heatd:bench")
    folder = await server.nodes.objects.add_folder(ua.NodeId("Bench", ns), "Bench")
    ids = []
    for i in range(variables):
        node = ua.NodeId(f"P{i}", ns)
        await folder.add_variable(node, f"P{i}", float(i), ua.VariantType.Double)
        ids.append(node.to_string())
    await server.start()
    return server, ids


async def run(rounds: int, size: int = 500) -> dict[str, float | int]:
    """Requests per poll against the minimum, and the median wall time of one poll through
    heatd's drivers and through the minimal loop, for a site of ``size`` points."""
    variables = max(1, size // OPCUA_SHARE)
    points = site_points(size - variables)
    modbus = SimServer([unit(u, size=UNIT_SIZE, holes=[(300, 309)]) for u in UNITS])
    await modbus.start()
    ua_port = free_port()
    ua_server, node_ids = await opcua_server(ua_port, variables)
    endpoint = f"opc.tcp://127.0.0.1:{ua_port}"

    settings = TcpSettings("127.0.0.1", modbus.port, timeout=1.0)
    link = TcpLink(settings)
    devices = [ModbusTcpDevice(f"unit{u}", settings, u, LIMITS, link=link) for u in UNITS]
    ua_points = tuple(OpcUaPoint(f"p{i}", nid) for i, nid in enumerate(node_ids))
    ua_device = OpcUaDevice("plc", OpcUaSettings(endpoint, mode="polling", timeout=2.0))

    client = AsyncModbusTcpClient("127.0.0.1", port=modbus.port, timeout=1.0, retries=0)
    ua_client = Client(endpoint, timeout=2.0)
    try:
        for device in devices:
            await device.start()
        await ua_device.start()
        await client.connect()
        await ua_client.connect()
        ua_nodes = [ua_client.get_node(nid) for nid in node_ids]
        await until(lambda: link.connected and ua_device.online, 10, poll=0.01,
                    what="Modbus and OPC UA online")

        async def driver_poll() -> None:
            results = await asyncio.gather(
                *(d.read(points[u]) for d, u in zip(devices, UNITS, strict=True)),
                ua_device.read(ua_points),
            )
            assert all(r.reason is None for got in results for r in got.values())

        plan = [b for d, u in zip(devices, UNITS, strict=True) for b in d.plan(points[u])]
        per_unit = {u: [b for b in plan if b.unit_id == u] for u in UNITS}

        async def baseline() -> None:
            await asyncio.gather(
                *(baseline_poll(client, per_unit[u], decode=True) for u in UNITS),
                ua_client.read_values(ua_nodes),
            )

        await driver_poll()
        sent = sum(d.stats.last_poll_requests for d in devices) + 1
        await baseline()
        drv, base = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            await driver_poll()
            drv.append(time.perf_counter() - start)
            start = time.perf_counter()
            await baseline()
            base.append(time.perf_counter() - start)
    finally:
        client.close()
        await ua_client.disconnect()
        for device in devices:
            await device.close()
        await ua_device.close()
        await modbus.stop()
        await ua_server.stop()
    every = [p for u in UNITS for p in points[u]]
    return {
        "points": len(every) + len(ua_points),
        "requests_per_poll": sent,
        "minimum_requests": minimum_requests(every, LIMITS) + 1,
        "driver_ms": statistics.median(drv) * 1e3,
        "baseline_ms": statistics.median(base) * 1e3,
        "ratio": statistics.median(drv) / statistics.median(base),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop like the daemon")
    args = parser.parse_args()
    runner = asyncio.run
    if args.uvloop:
        import uvloop

        runner = uvloop.run
    figures = runner(run(args.rounds, args.points))
    variables = max(1, args.points // OPCUA_SHARE)
    print(f"[site poll: {args.points - variables} Modbus + {variables} OPC UA points"
          f"{', uvloop' if args.uvloop else ''}]")
    for key, value in figures.items():
        print(f"  {key:<20} {value:.3f}" if isinstance(value, float) else f"  {key:<20} {value}")


if __name__ == "__main__":
    main()
