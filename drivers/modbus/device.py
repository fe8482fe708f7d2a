"""Modbus devices: one unit id behind a link, read through a cached plan.

``read`` never raises: every point gets a reading, good or bad with a reason such as
``timeout``, ``disconnected`` or ``exception 2 illegal data address``. A unit that stops
answering is left alone for a jittered, growing delay, so it costs later polls nothing.
Blocks the device refuses with ILLEGAL DATA ADDRESS are split, and the split is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from drivers.backoff import Backoff
from drivers.base import WriteError
from drivers.codec import CodecError, DataType
from drivers.modbus.link import Link, SerialLine, TcpLink
from drivers.modbus.plan import Block, build_plan, expand, split_block, split_point
from drivers.modbus.spec import ModbusPoint, PlanLimits, Table, TcpSettings
from drivers.reading import Quality, Reading, Value

ILLEGAL_DATA_ADDRESS = 2

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


def exception_reason(code: int) -> str:
    return f"exception {code} {EXCEPTION_NAMES.get(code, 'unknown')}".rstrip()


class _Unreachable(Exception):
    """The unit did not answer; the rest of this poll is not worth sending."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class DeviceStats:
    """Counters for diagnostics and benchmarks."""

    requests: int = 0
    """Requests sent (reads and writes)."""
    errors: int = 0
    """Requests that ended without a usable answer (exception, timeout, bad length)."""
    last_poll_requests: int = 0
    """Requests the most recent ``read`` sent."""


@dataclass(frozen=True, slots=True)
class _Step:
    """A block with its points' offsets and decoders looked up once, not every poll."""

    block: Block
    layout: tuple[tuple[str, int, int, Callable[[Sequence[int]], Value]], ...]


def _compile(block: Block) -> _Step:
    return _Step(
        block,
        tuple((p.name, p.address - block.start, p.end - block.start, p.codec.decode)
              for p in block.points),
    )


_READS = {
    Table.HOLDING: "read_holding_registers",
    Table.INPUT: "read_input_registers",
    Table.COIL: "read_coils",
    Table.DISCRETE: "read_discrete_inputs",
}


class ModbusDevice:
    """One unit id on a link. Use ModbusTcpDevice or ModbusRtuDevice to build one."""

    def __init__(
        self, name: str, link: Link, unit_id: int, limits: PlanLimits, *, backoff: Backoff
    ) -> None:
        self.name = name
        self.link = link
        self.unit_id = unit_id
        self.limits = limits
        self.stats = DeviceStats()
        self._backoff = backoff
        self._plans: dict[tuple[ModbusPoint, ...], list[Block]] = {}
        self._steps: dict[tuple[ModbusPoint, ...], list[_Step]] = {}
        self._last: tuple[tuple[ModbusPoint, ...], list[_Step]] | None = None
        self._splits: dict[tuple[Table, int, int, int], int] = {}
        self._online = False
        self._started = False
        self._retry_at = 0.0
        self._down_reason = "disconnected"

    @property
    def online(self) -> bool:
        return self._online and self.link.connected

    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self.link.acquire()

    async def close(self) -> None:
        if self._started:
            self._started = False
            self._online = False
            await self.link.release()

    def plan(self, points: Sequence[ModbusPoint]) -> list[Block]:
        """The requests ``read(points)`` sends now, learned splits included."""
        return [part for block in self._base_plan(points) for part in expand(block, self._splits)]

    def _base_plan(self, points: Sequence[ModbusPoint]) -> list[Block]:
        key = tuple(points)
        plan = self._plans.get(key)
        if plan is None:
            foreign = [p.name for p in key if p.unit_id != self.unit_id]
            if foreign:
                raise ValueError(f"{self.name}: points of another unit id: {foreign}")
            plan = self._plans[key] = build_plan(key, self.limits)
        return plan

    def _steps_for(self, points: Sequence[ModbusPoint]) -> list[_Step]:
        """The compiled plan; the last one is checked first (tuple equality short-cuts
        on identity, so a poll loop passing the same points pays no hashing)."""
        key = tuple(points)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        steps = self._steps.get(key)
        if steps is None:
            steps = self._steps[key] = [_compile(b) for b in self.plan(key)]
        self._last = (key, steps)
        return steps

    async def read(self, points: Sequence[ModbusPoint]) -> dict[str, Reading]:
        out: dict[str, Reading] = {}
        self.stats.last_poll_requests = 0
        try:
            steps = self._steps_for(points)
        except ValueError as exc:
            return _all_bad(points, f"config: {exc}", time.time())
        if not self._started:
            await self.start()
        if not self.link.connected:
            self._online = False
            return _all_bad(points, "disconnected", time.time())
        if time.monotonic() < self._retry_at:
            return _all_bad(points, self._down_reason, time.time())
        try:
            for step in steps:
                await self._read_step(step, out)
        except _Unreachable as exc:
            self._online = False
            self._down_reason = exc.reason
            self._retry_at = time.monotonic() + self._backoff.next()
            now = time.time()
            for p in points:
                if p.name not in out:
                    out[p.name] = Reading.bad(exc.reason, now)
        return out

    async def _send(self, method: str, *args: object, **kwargs: object) -> ModbusPDU:
        """One request; a silent or lost unit raises _Unreachable."""
        assert self.link.client is not None
        self.stats.requests += 1
        self.stats.last_poll_requests += 1
        try:
            reply = await self.link.request(getattr(self.link.client, method), *args, **kwargs)
        except ConnectionException as exc:
            self.stats.errors += 1
            raise _Unreachable("disconnected") from exc
        except (ModbusIOException, TimeoutError) as exc:
            self.stats.errors += 1
            raise _Unreachable("timeout") from exc
        except ModbusException as exc:
            self.stats.errors += 1
            raise _Unreachable(f"protocol error: {exc}") from exc
        self._online = True
        self._backoff.reset()
        if reply.isError():
            self.stats.errors += 1
        return reply

    async def _read_step(self, step: _Step, out: dict[str, Reading]) -> None:
        block = step.block
        reply = await self._send(
            _READS[block.table], block.start, count=block.count, device_id=block.unit_id
        )
        now = time.time()
        if reply.isError():
            code = int(getattr(reply, "exception_code", 0))
            at = split_point(block) if code == ILLEGAL_DATA_ADDRESS else None
            if at is None:
                _fill_bad(out, block, exception_reason(code), now)
                return
            self._splits[block.key] = at
            self._steps.clear()
            self._last = None
            for part in split_block(block, at):
                await self._read_step(_compile(part), out)
            return
        words = reply.bits if block.table.is_bits else reply.registers
        if len(words) < block.count or (not block.table.is_bits and len(words) != block.count):
            self.stats.errors += 1
            _fill_bad(out, block, f"wrong length: {len(words)} for {block.count}", now)
            return
        good = Quality.GOOD
        for name, start, end, decode in step.layout:
            raw = tuple(words[start:end])
            try:
                out[name] = Reading(decode(raw), good, now, None, raw)
            except CodecError as exc:
                out[name] = Reading.bad(f"decode: {exc}", now, raw)

    async def write(self, point: ModbusPoint, value: Value) -> None:
        if point.codec.data_type is DataType.BIT:
            raise WriteError(f"{point.name}: a bit of a status word cannot be written")
        if not point.table.writable:
            raise WriteError(f"{point.name}: {point.table.value} is read-only")
        if point.unit_id != self.unit_id:
            raise WriteError(f"{point.name}: unit {point.unit_id} is not {self.name}")
        try:
            words = point.codec.encode(value)
        except (CodecError, ValueError, TypeError, OverflowError) as exc:
            raise WriteError(f"{point.name}: cannot encode {value!r}: {exc}") from exc
        if not self._started:
            await self.start()
        if not self.link.connected:
            raise WriteError(f"{point.name}: {self.name} is disconnected")
        if point.table is Table.COIL:
            call, arg = "write_coil", bool(words[0])
        elif len(words) == 1:
            call, arg = "write_register", words[0]
        else:
            call, arg = "write_registers", words
        try:
            reply = await self._send(call, point.address, arg, device_id=point.unit_id)
        except _Unreachable as exc:
            self._online = False
            raise WriteError(f"{point.name}: {exc.reason}") from exc
        if reply.isError():
            code = int(getattr(reply, "exception_code", 0))
            raise WriteError(f"{point.name}: {exception_reason(code)}")


def _fill_bad(out: dict[str, Reading], block: Block, reason: str, now: float) -> None:
    for p in block.points:
        out[p.name] = Reading.bad(reason, now)


def _all_bad(points: Sequence[ModbusPoint], reason: str, now: float) -> dict[str, Reading]:
    return {p.name: Reading.bad(reason, now) for p in points}


class ModbusTcpDevice(ModbusDevice):
    """A unit on a TCP server or gateway.

    Pass ``link`` to share one TCP connection among several unit ids behind one gateway
    (the link's own settings then apply); otherwise the device opens its own.
    """

    def __init__(
        self,
        name: str,
        settings: TcpSettings,
        unit_id: int,
        limits: PlanLimits | None = None,
        *,
        link: TcpLink | None = None,
    ) -> None:
        super().__init__(
            name,
            link or TcpLink(settings),
            unit_id,
            limits or PlanLimits(),
            backoff=Backoff(settings.backoff_min, settings.backoff_max),
        )


class ModbusRtuDevice(ModbusDevice):
    """A unit on an RS-485 line shared with other units (one request at a time)."""

    def __init__(
        self, name: str, line: SerialLine, unit_id: int, limits: PlanLimits | None = None
    ) -> None:
        s = line.settings
        super().__init__(
            name,
            line,
            unit_id,
            limits or PlanLimits(),
            backoff=Backoff(s.backoff_min, s.backoff_max),
        )
