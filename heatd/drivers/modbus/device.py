"""Modbus devices: one unit id behind a link, read through a cached plan.

``read`` never raises: every point gets a reading, good or bad with a reason such as
``timeout``, ``disconnected`` or ``exception 2 illegal data address``.

A circuit breaker per unit: after ``breaker_after`` requests in a row without an answer,
the unit is left alone for a jittered, growing delay (its backoff slot), and then one
request, a poll or a write, probes it; every other read or write meanwhile answers at once
without touching the link. A silent unit on a shared gateway or line therefore holds the
line for at most one timeout per slot.
Blocks the device refuses with ILLEGAL DATA ADDRESS are split, and the split is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from heatd.drivers.backoff import Backoff
from heatd.drivers.base import WriteError
from heatd.drivers.codec import CodecError, DataType
from heatd.drivers.modbus.addresses import Table
from heatd.drivers.modbus.link import Link, SerialLine, TcpLink
from heatd.drivers.modbus.plan import (
    Block,
    build_plan,
    expand,
    fits_one_request,
    split_block,
    split_point,
)
from heatd.drivers.modbus.spec import ModbusPoint, PlanLimits, SerialSettings, TcpSettings
from heatd.drivers.reading import Quality, Reading, Value

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
        self, name: str, link: Link, unit_id: int, limits: PlanLimits,
        settings: TcpSettings | SerialSettings,
    ) -> None:
        """``settings`` are the unit's own timeout, retries, backoff and breaker."""
        self.name = name
        self.link = link
        self.unit_id = unit_id
        self.limits = limits
        self.stats = DeviceStats()
        self.timeout = settings.timeout
        self.retries = settings.retries
        self._backoff = Backoff(settings.backoff_min, settings.backoff_max)
        self._breaker_after = max(1, settings.breaker_after)
        self._silent_requests = 0
        self._probing = False
        self._comebacks = 0
        self._plans: dict[tuple[ModbusPoint, ...], list[Block]] = {}
        self._steps: dict[tuple[ModbusPoint, ...], list[_Step]] = {}
        self._last: tuple[tuple[ModbusPoint, ...], list[_Step]] | None = None
        self._splits: dict[tuple[Table, int, int, int], int] = {}
        self._online = False
        self._started = False
        self._retry_at = 0.0
        self._down_reason = "disconnected"
        self._refused: str | None = None
        """The first error answer (an exception code) of the read in progress."""
        self._refusals: dict[str, str] = {}
        """First point of a read (one per poll group) -> the error its latest read got."""

    @property
    def online(self) -> bool:
        return self._online and self.link.connected

    @property
    def session(self) -> tuple[int, int]:
        """(link connects, times the unit answered again after silence): a change means
        the unit may have restarted and lost its setpoints."""
        return (self.link.connects, self._comebacks)

    @property
    def last_error(self) -> str | None:
        """Why the unit is not answering (the link's failed connect, or the last request's
        timeout), else the error answer (an exception code) the latest read of one of its
        poll groups got; None when every read was answered in full."""
        if not self.link.connected:
            return self.link.connect_error or "disconnected"
        if not self._online:
            return self._down_reason
        return next(iter(self._refusals.values()), None)

    @property
    def tripped(self) -> bool:
        """True while the breaker keeps requests to this unit off the link."""
        return self._silent_requests >= self._breaker_after

    def _may_send(self) -> bool | None:
        """None: held off by the breaker; False: send; True: send as the slot's probe."""
        if not self.tripped:
            return False
        if self._probing or time.monotonic() < self._retry_at:
            return None
        self._probing = True
        return True

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
        probe = self._may_send()
        if probe is None:
            return _all_bad(points, self._down_reason, time.time())
        self._refused = None
        try:
            for step in steps:
                await self._read_step(step, out)
        except _Unreachable as exc:
            now = time.time()
            for p in points:
                if p.name not in out:
                    out[p.name] = Reading.bad(exc.reason, now)
        finally:
            if probe:
                self._probing = False
        if len(out) < len(points):  # only a point no request can carry is left unread
            _fill_too_wide(out, points, self.limits, time.time())
        if self._refused is not None and points:
            self._refusals[points[0].name] = self._refused
        elif self._refusals and points:
            self._refusals.pop(points[0].name, None)
        return out

    def _silent(self, reason: str) -> None:
        """A request without an answer: trip the breaker after enough in a row."""
        self._online = False
        self._down_reason = reason
        self._silent_requests += 1
        if self.tripped:
            self._retry_at = time.monotonic() + self._backoff.next()

    def _answered(self) -> None:
        if not self._online:
            self._comebacks += 1
        self._online = True
        self._silent_requests = 0
        self._backoff.reset()

    async def _send(self, method: str, *args: object, urgent: bool = False,
                    **kwargs: object) -> ModbusPDU:
        """One request with this unit's timeout; a silent or lost unit raises _Unreachable."""
        assert self.link.client is not None
        self.stats.requests += 1
        self.stats.last_poll_requests += 1
        try:
            reply = await self.link.request(
                getattr(self.link.client, method), *args, urgent=urgent,
                attempt_timeout=self.timeout, retries=self.retries, **kwargs)
        except ConnectionException as exc:
            self.stats.errors += 1
            self._silent("disconnected")
            raise _Unreachable("disconnected") from exc
        except (ModbusIOException, TimeoutError) as exc:
            self.stats.errors += 1
            self._silent("timeout")
            raise _Unreachable("timeout") from exc
        except ModbusException as exc:
            self.stats.errors += 1
            self._silent(f"protocol error: {exc}")
            raise _Unreachable(f"protocol error: {exc}") from exc
        self._answered()
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
                reason = exception_reason(code)
                self._refused = self._refused or reason
                _fill_bad(out, block, reason, now)
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
            reason = f"wrong length: {len(words)} for {block.count}"
            self._refused = self._refused or reason
            _fill_bad(out, block, reason, now)
            return
        good = Quality.GOOD
        for name, start, end, decode in step.layout:
            raw = tuple(words[start:end])
            try:
                out[name] = Reading(decode(raw), good, now, None, raw)
            except CodecError as exc:
                out[name] = Reading.bad(f"decode: {exc}", now, raw)

    async def write(self, point: ModbusPoint, value: Value, *, urgent: bool = False) -> None:
        """Write and wait for the answer; ``urgent`` goes before queued polls on the link.
        Raises WriteError, at once (nothing sent) while the breaker holds the unit off."""
        words = self._encoded(point, value)
        if not self._started:
            await self.start()
        if not self.link.connected:
            raise WriteError(f"{point.name}: {self.name} is disconnected")
        call, arg = _write_request(point, words)
        probe = self._may_send()
        if probe is None:
            raise WriteError(f"{point.name}: {self.name} not answering ({self._down_reason}); "
                             "waiting for its next probe")
        try:
            reply = await self._send(call, point.address, arg, urgent=urgent,
                                     device_id=point.unit_id)
        except _Unreachable as exc:
            raise WriteError(f"{point.name}: {exc.reason}") from exc
        finally:
            if probe:
                self._probing = False
        if reply.isError():
            code = int(getattr(reply, "exception_code", 0))
            raise WriteError(f"{point.name}: {exception_reason(code)}")


    def _encoded(self, point: ModbusPoint, value: Value) -> list[int]:
        """The registers that carry ``value``; WriteError for a point this unit cannot
        write or a value its type cannot hold."""
        if point.codec.data_type is DataType.BIT:
            raise WriteError(f"{point.name}: a bit of a status word cannot be written")
        if not point.table.writable:
            raise WriteError(f"{point.name}: {point.table.value} is read-only")
        if point.unit_id != self.unit_id:
            raise WriteError(f"{point.name}: unit {point.unit_id} is not {self.name}")
        try:
            return point.codec.encode(value)
        except (CodecError, ValueError, TypeError, OverflowError) as exc:
            raise WriteError(f"{point.name}: cannot encode {value!r}: {exc}") from exc


def _write_request(point: ModbusPoint, words: list[int]) -> tuple[str, bool | int | list[int]]:
    """The client call and its argument: function 5 for a coil, 6 for one register unless
    the point asks for 16, else 16."""
    if point.table is Table.COIL:
        return "write_coil", bool(words[0])
    if len(words) == 1 and not point.write_multiple:
        return "write_register", words[0]
    return "write_registers", words


def _fill_bad(out: dict[str, Reading], block: Block, reason: str, now: float) -> None:
    for p in block.points:
        out[p.name] = Reading.bad(reason, now)


def _fill_too_wide(out: dict[str, Reading], points: Sequence[ModbusPoint], limits: PlanLimits,
                   now: float) -> None:
    for p in points:
        if not fits_one_request(p, limits):
            out[p.name] = Reading.bad(f"{p.width} registers, wider than the device's request "
                                      f"limit ({limits.limit(p.table)})", now)


def _all_bad(points: Sequence[ModbusPoint], reason: str, now: float) -> dict[str, Reading]:
    return {p.name: Reading.bad(reason, now) for p in points}


class ModbusTcpDevice(ModbusDevice):
    """A unit on a TCP server or gateway.

    Pass ``link`` to share one TCP connection among several unit ids behind one gateway
    (the unit keeps its own timeout, retries and backoff); otherwise the device opens its
    own.
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
        super().__init__(name, link or TcpLink(settings), unit_id, limits or PlanLimits(),
                         settings)


class ModbusRtuDevice(ModbusDevice):
    """A unit on an RS-485 line shared with other units (one request at a time).

    ``settings`` are the unit's own (timeout, retries, backoff); the line's framing comes
    from the line. Without them the line's settings apply."""

    def __init__(
        self, name: str, line: SerialLine, unit_id: int, limits: PlanLimits | None = None,
        *, settings: SerialSettings | None = None,
    ) -> None:
        super().__init__(name, line, unit_id, limits or PlanLimits(), settings or line.settings)
