"""Setpoint writes: only what changed, latest value wins, read back and verified, and kept
true afterwards.

The control cycle only ``submit``s; tasks per device do the talking, so a slow or dead
actuator never stretches the cycle. Each device's heartbeat has a task of its own and
goes on the link as an urgent request, so no other output's writes, read-backs or
``min_interval`` and no poll can delay it. The safe state is urgent too, is clamped to the
write bounds instead of refused, and ``safe_state(force=True)`` writes it whatever the
caches say.

Writes stay true: every verified output is read back every ``verify_every`` seconds, and
one that changed at the device (another client, a local panel) raises ``write_mismatch``
and is written again. When a device comes back (a reconnect, or an answer after silence)
every setpoint is asserted again, not only the ones that changed. A failed write or a
read-back that disagrees raises an alarm and is tried again until the device takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from heatd.config import PointConfig, SiteConfig
from heatd.control.roles import OUTPUT_ROLES, PLC_HEARTBEAT
from heatd.devices import AnyBound
from heatd.drivers.base import WriteError
from heatd.drivers.cancel import cancel_all
from heatd.drivers.codec import FLOAT_TYPES
from heatd.drivers.reading import Quality
from heatd.role_units import to_point_value

log = structlog.get_logger(__name__)

Alarm = Callable[[str, dict[str, Any]], None]
"""Called with (event name, details) for write failures and mismatches."""

VERIFY_EVERY_S = 5.0
"""Default period of the read-back that catches a setpoint changed at the device."""
RETRY_S = 0.2
"""Retry pace for a write the device refused or did not take."""
SESSION_CHECK_S = 0.5
"""Longest an idle writer goes without looking for a device that came back."""

Value = float | bool | int


@dataclass
class _Output:
    role: str
    ref: str
    device: AnyBound
    point: PointConfig
    desired: Value | None = None
    applied: Value | None = None
    verified: bool = False
    failures: int = 0
    last_write: float = 0.0
    checked: float = 0.0
    """Monotonic time of the last read-back that found ``applied`` at the device."""
    urgent: bool = False
    """The safe state: ahead of every queued request, no minimum interval."""


@dataclass
class _Lane:
    """Outputs of one device that one task writes, in order."""

    device: AnyBound
    heartbeat: bool
    outputs: list[_Output] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    session: object = None


class OutOfBounds(ValueError):
    """A setpoint outside the point's write bounds: refused, never clamped silently."""


def _tolerance(point: PointConfig) -> float:
    """How far a read-back may differ from the written value: one step of an integer
    encoding (Modbus register or OPC UA integer variable with a scale); float encodings are
    compared relatively in ``_same``."""
    if point.data_type is not None and point.data_type not in FLOAT_TYPES:
        return abs(point.scale) * 0.51
    return 1e-9


def clamp(point: PointConfig, value: Value) -> Value:
    """``value`` inside the point's write bounds (a bool has none)."""
    if isinstance(value, bool):
        return value
    low, high = point.write_min, point.write_max
    if low is not None and value < low:
        return low
    if high is not None and value > high:
        return high
    return value


class SetpointWriter:
    def __init__(self, site: SiteConfig, devices: Mapping[str, AnyBound], alarm: Alarm,
                 *, deadband: float = 1e-3, min_interval: float = 0.0,
                 verify_every: float = VERIFY_EVERY_S) -> None:
        self._alarm = alarm
        self._deadband = deadband
        self._min_interval = min_interval
        self.verify_every = verify_every
        self._outputs: dict[str, _Output] = {}
        self._lanes: dict[tuple[str, bool], _Lane] = {}
        self._tasks: list[asyncio.Task[None]] = []
        for role, bound in site.roles.items():
            if role not in OUTPUT_ROLES:
                continue
            ref = bound if isinstance(bound, str) else bound[0]
            device_name = ref.split(".", 1)[0]
            if device_name not in devices:
                continue
            out = _Output(role, ref, devices[device_name], site.point(ref))
            self._outputs[role] = out
            beat = role == PLC_HEARTBEAT
            lane = self._lanes.setdefault((device_name, beat), _Lane(devices[device_name], beat))
            lane.outputs.append(out)

    def status(self) -> dict[str, dict[str, Any]]:
        return {role: {"value": o.applied, "verified": o.verified, "failures": o.failures}
                for role, o in self._outputs.items()}

    def _wake(self, out: _Output) -> None:
        self._lanes[(out.device.name, out.role == PLC_HEARTBEAT)].wake.set()

    def submit(self, role: str, value: float | bool) -> None:
        """Ask for ``value`` on ``role``; returns at once. Raises OutOfBounds."""
        out = self._outputs.get(role)
        if out is None:
            return
        point_value = to_point_value(role, out.point, value)
        if not isinstance(point_value, bool):
            low, high = out.point.write_min, out.point.write_max
            if (low is not None and point_value < low - 1e-9) or (
                high is not None and point_value > high + 1e-9
            ):
                raise OutOfBounds(f"{out.ref}: {point_value:g} outside [{low}, {high}]")
        if out.desired is not None and _same(out.desired, point_value, self._deadband) and (
            out.verified or out.urgent
        ):
            return
        out.desired = point_value
        out.verified = False
        out.urgent = False
        self._wake(out)

    def safe_state(self, values: Mapping[str, float | bool], *, force: bool) -> None:
        """Ask for the safe state: clamped to each point's write bounds (and logged), never
        refused, and written ahead of everything else. ``force`` writes every value even
        where the caches say the device holds it already (stop, a failed cycle, entering
        the worst case)."""
        for role, value in values.items():
            out = self._outputs.get(role)
            if out is None:
                continue
            wanted = to_point_value(role, out.point, value)
            point_value = clamp(out.point, wanted)
            held = out.desired is not None and _same(out.desired, point_value, self._deadband)
            if point_value != wanted and (force or not held):
                log.warning("safe state clamped to the write bounds", point=out.ref,
                            wanted=wanted, written=point_value)
            if held and not force and (out.verified or out.urgent):
                continue
            out.desired = point_value
            out.verified = False
            out.urgent = True
            self._wake(out)

    async def flush(self, timeout: float) -> bool:
        """Wait until every desired value is verified (used before a clean exit)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(o.verified or o.desired is None for o in self._outputs.values()):
                return True
            await asyncio.sleep(0.02)
        return False

    def start(self) -> None:
        for (name, beat), lane in self._lanes.items():
            label = f"heartbeat {name}" if beat else f"write {name}"
            self._tasks.append(asyncio.create_task(self._run(lane), name=label))

    async def stop(self) -> None:
        await cancel_all(self._tasks)

    def _note_session(self, lane: _Lane) -> None:
        """A device that came back may have lost its setpoints: assert all of them."""
        session = lane.device.driver.session
        if lane.session is not None and session != lane.session:
            reasserted = [o.ref for o in lane.outputs if o.desired is not None]
            for out in lane.outputs:
                out.verified = False
            if reasserted:
                log.info("device came back: asserting its setpoints again",
                         device=lane.device.name, points=reasserted)
        lane.session = session

    async def _run(self, lane: _Lane) -> None:
        while True:
            if lane.device.driver.online:
                self._note_session(lane)
            due = [time.monotonic() + SESSION_CHECK_S]
            for out in sorted(lane.outputs, key=lambda o: not o.urgent):
                at = await self._serve(lane, out)
                if at is not None:
                    due.append(at)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.wake.wait(), max(0.0, min(due) - time.monotonic()))
            lane.wake.clear()

    async def _serve(self, lane: _Lane, out: _Output) -> float | None:
        """Write or check one output if it is due; returns when it is next due."""
        if out.desired is None:
            return None
        now = time.monotonic()
        if not out.verified:
            interval = 0.0 if (out.urgent or lane.heartbeat) else self._min_interval
            if out.last_write + interval > now:
                return out.last_write + interval
            await self._write_one(out, urgent=out.urgent or lane.heartbeat,
                                  read_back=not lane.heartbeat)
            return None if out.verified else time.monotonic() + RETRY_S
        if lane.heartbeat or self.verify_every <= 0:
            return None
        if not lane.device.driver.online:
            return None  # nothing answers a read-back; the lane's session check looks again
        if out.checked + self.verify_every > now:
            return out.checked + self.verify_every
        await self._check_one(out)
        return time.monotonic() if not out.verified else out.checked + self.verify_every

    async def _write_one(self, out: _Output, *, urgent: bool, read_back: bool) -> None:
        value = out.desired
        assert value is not None
        device, point = out.device, out.ref.split(".", 1)[1]
        if not device.driver.online:
            return  # its availability already says offline; the write waits for it
        out.last_write = time.monotonic()
        try:
            await device.write_point(point, value, urgent=urgent)
        except WriteError as exc:
            out.verified = False
            out.failures += 1
            if out.failures == 1:
                self._alarm("write_failed", {"role": out.role, "point": out.ref,
                                             "value": value, "reason": str(exc)})
            return
        if read_back:
            back = await device.read_point(point)
            if back.quality is not Quality.GOOD or not _same(back.value, value,
                                                             _tolerance(out.point)):
                out.verified = False
                out.failures += 1
                if out.failures == 1:
                    self._alarm("write_mismatch", {"role": out.role, "point": out.ref,
                                                   "value": value, "read_back": back.value,
                                                   "quality": back.quality_text})
                return
        if out.failures:
            log.info("write recovered", point=out.ref, value=value)
        out.applied, out.failures, out.checked = value, 0, time.monotonic()
        if out.desired == value:  # not asked for something else meanwhile
            out.verified, out.urgent = True, False

    async def _check_one(self, out: _Output) -> None:
        """Read a verified output back; one changed at the device is alarmed and written
        again."""
        device, point = out.device, out.ref.split(".", 1)[1]
        back = await device.read_point(point)
        if back.quality is not Quality.GOOD:
            out.checked = time.monotonic()  # not an answer about the value: ask next slot
            return
        if not out.verified or _same(back.value, out.applied, _tolerance(out.point)):
            out.checked = time.monotonic()
            return
        out.verified = False
        self._alarm("write_mismatch", {"role": out.role, "point": out.ref,
                                       "value": out.applied, "read_back": back.value,
                                       "quality": back.quality_text,
                                       "reason": "changed at the device; writing it again"})


def _same(a: object, b: object, tolerance: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return False
    # rel_tol: a float32 register or variable keeps about seven significant digits
    return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=tolerance)
