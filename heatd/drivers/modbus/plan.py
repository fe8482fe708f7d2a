"""Read plans: which block requests fetch a set of points.

Pure functions, so the plan can be printed by ``heatd probe``, checked by property tests
and reused by the benchmark without a socket.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby

from heatd.drivers.modbus.addresses import Table
from heatd.drivers.modbus.spec import ModbusPoint, PlanLimits


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` addresses from ``start`` of one table of one unit."""

    table: Table
    unit_id: int
    start: int
    count: int
    points: tuple[ModbusPoint, ...]

    @property
    def end(self) -> int:
        return self.start + self.count

    @property
    def key(self) -> tuple[Table, int, int, int]:
        """Identity of the request on the wire, independent of which points asked for it."""
        return (self.table, self.unit_id, self.start, self.count)


def block_of(points: Sequence[ModbusPoint]) -> Block:
    """The smallest request that covers ``points`` (all of one table and unit)."""
    start = min(p.address for p in points)
    end = max(p.end for p in points)
    first = points[0]
    return Block(first.table, first.unit_id, start, end - start, tuple(points))


def _check(points: Sequence[ModbusPoint], limits: PlanLimits) -> None:
    names: set[str] = set()
    for p in points:
        if p.name in names:
            raise ValueError(f"point name {p.name!r} appears twice")
        names.add(p.name)
        if limits.touches_forbidden(p.address, p.end, p.table):
            raise ValueError(f"{p.name}: address {p.address} lies in a forbidden range")


def fits_one_request(point: ModbusPoint, limits: PlanLimits) -> bool:
    """Whether one request within the device's limit can read the point (a point is never
    read in parts); check-config refuses a device with a point that does not fit."""
    return point.width <= limits.limit(point.table)


def _group_key(p: ModbusPoint) -> tuple[str, int]:
    return (p.table.value, p.unit_id)


def build_plan(points: Iterable[ModbusPoint], limits: PlanLimits) -> list[Block]:
    """Coalesce points into as few block requests as the device allows.

    Greedy left to right per (table, unit): a point joins the current block when the gap
    to it is at most the allowed gap, the block stays within the request limit and no
    forbidden address lies in between. For gap-free maps this gives the minimum number of
    requests (the greedy block always reaches at least as far as any other choice).
    A point wider than the request limit is left out, so it cannot keep the device's other
    points from being read. Raises ValueError for duplicate names or points inside a
    forbidden range.
    """
    pts = sorted(points, key=lambda p: (_group_key(p), p.address, p.end))
    _check(pts, limits)
    pts = [p for p in pts if fits_one_request(p, limits)]
    plan: list[Block] = []
    for _, group in groupby(pts, key=_group_key):
        members = list(group)
        limit = limits.limit(members[0].table)
        current: list[ModbusPoint] = []
        start = end = 0
        for p in members:
            fits = (
                current
                and p.address - end <= limits.gap
                and max(end, p.end) - start <= limit
                and not limits.touches_forbidden(end, p.address, p.table)
            )
            if fits:
                current.append(p)
                end = max(end, p.end)
                continue
            if current:
                plan.append(block_of(current))
            current, start, end = [p], p.address, p.end
        plan.append(block_of(current))
    return plan


def split_point(block: Block) -> int | None:
    """Where to split a block the device refused: at its widest gap, else in the middle.

    Returns the first address of the right half, or None if the block holds one address.
    """
    starts = sorted({p.address for p in block.points})
    if len(starts) < 2:
        return None
    best_gap, best_at = 0, None
    ends: dict[int, int] = {}
    for p in block.points:
        ends[p.address] = max(ends.get(p.address, p.end), p.end)
    reach = ends[starts[0]]
    for addr in starts[1:]:
        if addr - reach > best_gap:
            best_gap, best_at = addr - reach, addr
        reach = max(reach, ends[addr])
    return best_at if best_at is not None else starts[len(starts) // 2]


def split_block(block: Block, at: int) -> list[Block]:
    """The block cut before address ``at``, each half shrunk to its own points."""
    left = [p for p in block.points if p.address < at]
    right = [p for p in block.points if p.address >= at]
    return [block_of(half) for half in (left, right) if half]


def expand(block: Block, splits: dict[tuple[Table, int, int, int], int]) -> list[Block]:
    """Apply learned splits (request key -> split address) recursively."""
    at = splits.get(block.key)
    if at is None:
        return [block]
    return [part for half in split_block(block, at) for part in expand(half, splits)]


def format_plan(blocks: Sequence[Block]) -> str:
    """One line per request, as ``heatd probe`` prints it."""
    lines = []
    for b in blocks:
        unit = "bits" if b.table.is_bits else "registers"
        names = ", ".join(p.name for p in b.points)
        lines.append(
            f"unit {b.unit_id} {b.table.value:<8} {b.start:>5}..{b.end - 1:<5} "
            f"({b.count} {unit}, {len(b.points)} points): {names}"
        )
    lines.append(f"{len(blocks)} requests")
    return "\n".join(lines)
