"""Read-plan properties over random point maps (pure, no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heatd.drivers.codec import Codec, DataType
from heatd.drivers.modbus.plan import block_of, build_plan, expand, format_plan, split_point
from heatd.drivers.modbus.spec import Forbidden, ModbusPoint, PlanLimits, Table

REGISTER_TYPES = [DataType.UINT16, DataType.INT32, DataType.FLOAT32, DataType.FLOAT64]


def reg(name: str, address: int, data_type: DataType = DataType.UINT16, unit: int = 1):
    return ModbusPoint(name, Table.HOLDING, address, Codec(data_type), unit)


@st.composite
def point_maps(draw, contiguous: bool = False):
    """Random maps over both register tables, two units and the coil table."""
    points: list[ModbusPoint] = []
    for table in (Table.HOLDING, Table.INPUT, Table.COIL):
        for unit in (1, 2):
            address = draw(st.integers(0, 300))
            for _ in range(draw(st.integers(0, 60))):
                if table.is_bits:
                    codec = Codec(DataType.BOOL)
                else:
                    codec = Codec(draw(st.sampled_from(REGISTER_TYPES)))
                if not contiguous:
                    address += draw(st.integers(0, 12))
                p = ModbusPoint(f"p{len(points)}", table, address, codec, unit)
                points.append(p)
                address = p.end
    return points


limits_strategy = st.builds(
    PlanLimits,
    max_registers=st.integers(4, 125),
    max_bits=st.integers(1, 2000),
    allow_gaps=st.booleans(),
    max_gap=st.integers(0, 20),
)


def _safe(points: list[ModbusPoint], forbidden: tuple[Forbidden, ...]):
    lim = PlanLimits(forbidden=forbidden)
    return [p for p in points if not lim.touches_forbidden(p.address, p.end, p.table)]


holes_strategy = st.lists(
    st.tuples(st.integers(0, 900), st.sampled_from([None, *Table])), max_size=4)


@given(points=point_maps(), limits=limits_strategy, holes=holes_strategy)
def test_plan_covers_every_point_within_limits_and_never_reads_forbidden(points, limits, holes):
    forbidden = tuple(Forbidden(h, h + h % 5, table) for h, table in holes)
    limits = PlanLimits(
        limits.max_registers, limits.max_bits, limits.allow_gaps, limits.max_gap, forbidden
    )
    points = _safe(points, forbidden)
    plan = build_plan(points, limits)
    covered = [p.name for b in plan for p in b.points]
    assert sorted(covered) == sorted(p.name for p in points)
    for b in plan:
        assert 1 <= b.count <= limits.limit(b.table)
        assert not limits.touches_forbidden(b.start, b.end, b.table)
        for p in b.points:
            assert p.table is b.table and p.unit_id == b.unit_id
            assert b.start <= p.address and p.end <= b.end
        # no more unused addresses inside a block than the allowed gap
        used = set()
        for p in b.points:
            used.update(range(p.address, p.end))
        holes_inside = sorted(set(range(b.start, b.end)) - used)
        runs = _runs(holes_inside)
        assert all(length <= limits.gap for length in runs)


def _runs(addresses: list[int]) -> list[int]:
    runs: list[int] = []
    for i, a in enumerate(addresses):
        if i and a == addresses[i - 1] + 1:
            runs[-1] += 1
        else:
            runs.append(1)
    return runs


def _minimum_requests(points: list[ModbusPoint], limits: PlanLimits) -> int:
    """Oracle: dynamic programme over each (table, unit) run of contiguous points."""
    total = 0
    groups: dict[tuple[Table, int], list[ModbusPoint]] = {}
    for p in points:
        groups.setdefault((p.table, p.unit_id), []).append(p)
    for (table, _), group in groups.items():
        group.sort(key=lambda p: p.address)
        limit = limits.limit(table)
        best = [0] + [10**9] * len(group)
        for i in range(1, len(group) + 1):
            for j in range(i):
                span = group[i - 1].end - group[j].address
                contiguous = all(group[k].address == group[k - 1].end for k in range(j + 1, i))
                if span <= limit and contiguous:
                    best[i] = min(best[i], best[j] + 1)
        total += best[-1]
    return total


@given(points=point_maps(contiguous=True), limits=limits_strategy)
def test_contiguous_maps_use_the_minimum_number_of_requests(points, limits):
    assert len(build_plan(points, limits)) == _minimum_requests(points, limits)


def test_contiguous_registers_coalesce_and_respect_125() -> None:
    points = [reg(f"r{i}", i * 2, DataType.FLOAT32) for i in range(100)]  # 200 registers
    plan = build_plan(points, PlanLimits())
    assert [(b.start, b.count) for b in plan] == [(0, 124), (124, 76)]


def test_gaps_are_bridged_only_when_allowed() -> None:
    points = [reg("a", 0), reg("b", 5), reg("c", 30)]
    assert len(build_plan(points, PlanLimits())) == 3
    plan = build_plan(points, PlanLimits(allow_gaps=True, max_gap=10))
    assert [(b.start, b.count) for b in plan] == [(0, 6), (30, 1)]


def test_forbidden_range_splits_a_block_and_points_inside_it_are_refused() -> None:
    points = [reg("a", 0), reg("b", 5)]
    limits = PlanLimits(allow_gaps=True, max_gap=10, forbidden=(Forbidden(2, 3),))
    assert [(b.start, b.count) for b in build_plan(points, limits)] == [(0, 1), (5, 1)]
    with pytest.raises(ValueError, match="forbidden"):
        build_plan([reg("x", 3)], limits)
    with pytest.raises(ValueError, match="forbidden"):
        build_plan([reg("y", 1, DataType.INT32)], limits)


def test_a_range_forbidden_in_one_table_leaves_the_others_alone() -> None:
    holding = [reg("a", 0), reg("b", 5)]
    inputs = [ModbusPoint(p.name + "_in", Table.INPUT, p.address, p.codec, p.unit_id)
              for p in [*holding, reg("c", 3)]]
    limits = PlanLimits(allow_gaps=True, max_gap=10, forbidden=(Forbidden(2, 3, Table.HOLDING),))
    plan = build_plan([*holding, *inputs], limits)
    assert [(b.table, b.start, b.count) for b in plan] == [
        (Table.HOLDING, 0, 1), (Table.HOLDING, 5, 1), (Table.INPUT, 0, 6)]
    with pytest.raises(ValueError, match="forbidden"):
        build_plan([reg("x", 3)], limits)


def test_duplicate_names_and_bad_tables_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        build_plan([reg("a", 0), reg("a", 1)], PlanLimits())
    with pytest.raises(ValueError, match="bool"):
        ModbusPoint("c", Table.COIL, 0, Codec(DataType.UINT16), 1)
    with pytest.raises(ValueError):
        PlanLimits(max_registers=126)


def test_bit_points_sharing_a_register_share_the_request() -> None:
    status = [
        ModbusPoint(f"s{i}", Table.INPUT, 7, Codec(DataType.BIT, bit=i), 1) for i in range(16)
    ]
    plan = build_plan(status, PlanLimits())
    assert [(b.start, b.count, len(b.points)) for b in plan] == [(7, 1, 16)]


def test_split_learning_helpers() -> None:
    block = block_of([reg("a", 0), reg("b", 1), reg("c", 10), reg("d", 11)])
    assert split_point(block) == 10  # the widest gap
    assert split_point(block_of([reg("a", 0), reg("b", 1), reg("c", 2)])) == 1
    assert split_point(block_of([reg("a", 4)])) is None
    parts = expand(block, {block.key: 10, (Table.HOLDING, 1, 0, 2): 1})
    assert [(b.start, b.count) for b in parts] == [(0, 1), (1, 1), (10, 2)]


def test_format_plan_lists_each_request() -> None:
    text = format_plan(build_plan([reg("a", 0), reg("b", 1, unit=2)], PlanLimits()))
    assert "unit 1 holding" in text and "unit 2 holding" in text
    assert text.endswith("2 requests")


def test_a_point_wider_than_the_request_limit_leaves_the_others_planned() -> None:
    """A point no request can carry is left out of the plan, not the whole device: the
    site file should have been refused, but a driver must not silently poll nothing."""
    points = [reg("supply", 0, DataType.FLOAT32), reg("flow", 4), reg("big", 6, DataType.FLOAT64)]
    plan = build_plan(points, PlanLimits(max_registers=1))
    assert [(b.start, b.count, [p.name for p in b.points]) for b in plan] == [(4, 1, ["flow"])]
    plan = build_plan(points, PlanLimits(max_registers=3, allow_gaps=True, max_gap=2))
    assert [(b.start, b.count) for b in plan] == [(0, 2), (4, 1)]  # big left out
