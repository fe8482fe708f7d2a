"""Driver benchmark: a 500-point site over 3 unit ids on one pymodbus TCP server.

Reports (a) requests per full poll against the minimum the map allows, and (b) the wall
time of one full poll through the driver against a minimal hand-written pymodbus loop
that reads exactly the same blocks in the same run (median of interleaved rounds).

    .venv/bin/python bench/bench_modbus.py [--rounds 300] [--uvloop] [--json]

Each protocol is one entry in BENCHES returning a dict of figures, so another protocol
(OPC UA) is added as one more function.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable

from pymodbus.client import AsyncModbusTcpClient

from heatd.drivers.codec import ByteOrder, Codec, DataType
from heatd.drivers.modbus import (
    Block,
    Forbidden,
    ModbusPoint,
    ModbusTcpDevice,
    PlanLimits,
    Table,
    TcpLink,
    TcpSettings,
    build_plan,
)
from heatd.hil.rig.modbus import SimServer, unit
from heatd.hil.rig.waiting import until

UNITS = (1, 2, 3)
POINTS = 500
LIMITS = PlanLimits(allow_gaps=True, max_gap=4, forbidden=(Forbidden(300, 309),))
REGISTER_MIX = [
    Codec(DataType.UINT16),
    Codec(DataType.INT16, scale=0.1),
    Codec(DataType.INT32, ByteOrder.CDAB),
    Codec(DataType.FLOAT32, ByteOrder.ABCD),
    Codec(DataType.FLOAT32, ByteOrder.CDAB, scale=0.01, offset=-40),
    Codec(DataType.UINT64),
    Codec(DataType.FLOAT64, ByteOrder.DCBA),
]


def site_points(points: int = POINTS) -> dict[int, list[ModbusPoint]]:
    """Mixed types over holding/input/coil/discrete tables, with small gaps and a hole
    at 300..309 that the device forbids, ``points`` spread over the units (~167 each)."""
    by_unit: dict[int, list[ModbusPoint]] = {u: [] for u in UNITS}
    per_unit = [points // len(UNITS) + (i < points % len(UNITS)) for i in range(len(UNITS))]
    for u, n in zip(UNITS, per_unit, strict=True):
        cursor = {Table.HOLDING: 0, Table.INPUT: 0, Table.COIL: 0, Table.DISCRETE: 0}
        tables = [Table.HOLDING] * 5 + [Table.INPUT] * 3 + [Table.COIL, Table.DISCRETE]
        for i in range(n):
            table = tables[i % len(tables)]
            codec = Codec(DataType.BOOL) if table.is_bits else REGISTER_MIX[i % len(REGISTER_MIX)]
            address = cursor[table] + (2 if i % 17 == 0 else 0)
            if not table.is_bits and LIMITS.touches_forbidden(address, address + codec.count,
                                                              table):
                address = 310
            p = ModbusPoint(f"u{u}_p{i}", table, address, codec, u)
            by_unit[u].append(p)
            cursor[table] = p.end
    return by_unit


def minimum_requests(points: list[ModbusPoint], limits: PlanLimits) -> int:
    """Fewest requests any plan could use (dynamic programme, independent of the planner)."""
    total = 0
    groups: dict[tuple[Table, int], list[ModbusPoint]] = {}
    for p in points:
        groups.setdefault((p.table, p.unit_id), []).append(p)
    for (table, _), group in groups.items():
        group.sort(key=lambda p: (p.address, p.end))
        limit = limits.limit(table)
        best = [0] + [len(group) + 1] * len(group)
        for j in range(len(group)):
            reach = group[j].end
            for i in range(j, len(group)):
                p = group[i]
                if i > j and (
                    p.address - reach > limits.gap
                    or limits.touches_forbidden(reach, p.address, table)
                ):
                    break
                reach = max(reach, p.end)
                if reach - group[j].address > limit:
                    break
                best[i + 1] = min(best[i + 1], best[j] + 1)
        total += best[-1]
    return total


READS = {
    Table.HOLDING: "read_holding_registers",
    Table.INPUT: "read_input_registers",
    Table.COIL: "read_coils",
    Table.DISCRETE: "read_discrete_inputs",
}


async def baseline_poll(client: AsyncModbusTcpClient, plan: list[Block], decode: bool) -> int:
    """The least a program can do: send each block, optionally decode each point."""
    good = 0
    for b in plan:
        reply = await getattr(client, READS[b.table])(b.start, count=b.count, device_id=b.unit_id)
        words = reply.bits if b.table.is_bits else reply.registers
        if decode:
            for p in b.points:
                off = p.address - b.start
                p.codec.decode(words[off : off + p.width])
                good += 1
    return good


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def bench_modbus_tcp(rounds: int) -> dict[str, float | int]:
    server = SimServer([unit(u, size=1000, holes=[(300, 309)]) for u in UNITS])
    await server.start()
    pts = site_points()
    every = [p for u in UNITS for p in pts[u]]
    settings = TcpSettings("127.0.0.1", server.port, timeout=1.0)
    link = TcpLink(settings)
    devices = [ModbusTcpDevice(f"unit{u}", settings, u, LIMITS, link=link) for u in UNITS]
    client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=1.0, retries=0)
    try:
        for d in devices:
            await d.start()
        await client.connect()
        await until(lambda: link.connected, 10, poll=0.01, what="the link connected")

        async def driver_poll() -> None:
            for d, u in zip(devices, UNITS, strict=True):
                got = await d.read(pts[u])
                assert all(r.reason is None for r in got.values()), "bad reading in bench"

        await driver_poll()
        sent = sum(d.stats.last_poll_requests for d in devices)
        plan = [b for d, u in zip(devices, UNITS, strict=True) for b in d.plan(pts[u])]
        # no split learned: the driver sends exactly the planner's blocks
        assert sorted(b.key for b in plan) == sorted(b.key for b in build_plan(every, LIMITS))
        await baseline_poll(client, plan, decode=True)

        drv, raw, dec = [], [], []
        for _ in range(rounds):
            drv.append(await timed(driver_poll))
            raw.append(await timed(lambda: baseline_poll(client, plan, decode=False)))
            dec.append(await timed(lambda: baseline_poll(client, plan, decode=True)))
    finally:
        client.close()
        for d in devices:
            await d.close()
        await server.stop()
    med = statistics.median
    return {
        "points": len(every),
        "requests_per_poll": sent,
        "minimum_requests": minimum_requests(every, LIMITS),
        "driver_ms": med(drv) * 1e3,
        "baseline_read_ms": med(raw) * 1e3,
        "baseline_read_decode_ms": med(dec) * 1e3,
        "ratio_vs_read": med(drv) / med(raw),
        "ratio_vs_read_decode": med(drv) / med(dec),
    }


BENCHES: dict[str, Callable[[int], Awaitable[dict[str, float | int]]]] = {
    "modbus-tcp": bench_modbus_tcp,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop like the daemon")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", choices=sorted(BENCHES))
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    results = {
        name: asyncio.run(fn(args.rounds))
        for name, fn in BENCHES.items()
        if args.only in (None, name)
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, figures in results.items():
        print(f"[{name}]")
        for key, value in figures.items():
            text = f"{value:.3f}" if isinstance(value, float) else str(value)
            print(f"  {key:<26} {text}")


if __name__ == "__main__":
    main()
