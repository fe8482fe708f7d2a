"""Setpoint writes: only what changed, latest value wins, read back and verified.

The control cycle only ``submit``s; one task per device does the talking, so a slow or
dead actuator never stretches the cycle. A failed write or a read-back that disagrees
raises an alarm and is tried again on the next round, until the device takes it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from drivers.base import WriteError
from drivers.codec import FLOAT_TYPES
from drivers.reading import Quality
from heatd.config import PointConfig, SiteConfig
from heatd.control.roles import OUTPUT_ROLES, PLC_HEARTBEAT
from heatd.devices import BoundDevice
from heatd.role_signals import to_point_value
from heatd.tasks import cancel_all

log = structlog.get_logger(__name__)

Alarm = Callable[[str, dict[str, Any]], None]
"""Called with (event name, details) for write failures and mismatches."""


@dataclass
class _Output:
    role: str
    ref: str
    device: BoundDevice
    point: PointConfig
    desired: float | bool | int | None = None
    applied: float | bool | int | None = None
    verified: bool = False
    failures: int = 0
    last_write: float = 0.0


@dataclass
class _DeviceQueue:
    outputs: list[_Output] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class OutOfBounds(ValueError):
    """A setpoint outside the point's write bounds: refused, never clamped silently."""


def _tolerance(point: PointConfig) -> float:
    """How far a read-back may differ from the written value: one step of an integer
    encoding (Modbus register or OPC UA integer variable with a scale); float encodings are
    compared relatively in ``_same``."""
    if point.data_type is not None and point.data_type not in FLOAT_TYPES:
        return abs(point.scale) * 0.51
    return 1e-9


class SetpointWriter:
    def __init__(self, site: SiteConfig, devices: dict[str, BoundDevice], alarm: Alarm,
                 *, deadband: float = 1e-3, min_interval: float = 0.0) -> None:
        self._alarm = alarm
        self._deadband = deadband
        self._min_interval = min_interval
        self._outputs: dict[str, _Output] = {}
        self._queues: dict[str, _DeviceQueue] = {}
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
            self._queues.setdefault(device_name, _DeviceQueue()).outputs.append(out)

    def status(self) -> dict[str, dict[str, Any]]:
        return {role: {"value": o.applied, "verified": o.verified, "failures": o.failures}
                for role, o in self._outputs.items()}

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
        if out.desired is not None and out.verified and _same(out.desired, point_value,
                                                              self._deadband):
            return
        out.desired = point_value
        out.verified = False
        self._queues[out.device.name].wake.set()

    async def flush(self, timeout: float) -> bool:
        """Wait until every desired value is verified (used before a clean exit)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(o.verified or o.desired is None for o in self._outputs.values()):
                return True
            await asyncio.sleep(0.02)
        return False

    def start(self) -> None:
        for name, queue in self._queues.items():
            self._tasks.append(asyncio.create_task(self._run(queue), name=f"write {name}"))

    async def stop(self) -> None:
        await cancel_all(self._tasks)

    async def _run(self, queue: _DeviceQueue) -> None:
        while True:
            await queue.wake.wait()
            queue.wake.clear()
            for out in queue.outputs:
                if out.desired is None or (out.verified and out.applied == out.desired):
                    continue
                interval = 0.0 if out.role == PLC_HEARTBEAT else self._min_interval
                wait = out.last_write + interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._write_one(out)
            if any(not o.verified and o.desired is not None for o in queue.outputs):
                await asyncio.sleep(0.2)  # retry pace for a device that refused
                queue.wake.set()

    async def _write_one(self, out: _Output) -> None:
        value = out.desired
        assert value is not None
        driver, spec = out.device.driver, out.device.points[out.ref.split(".", 1)[1]]
        if not driver.online:
            return  # its availability already says offline; the write waits for it
        out.last_write = time.monotonic()
        try:
            await driver.write(spec, value)
        except WriteError as exc:
            out.verified = False
            out.failures += 1
            if out.failures == 1:
                self._alarm("write_failed", {"role": out.role, "point": out.ref,
                                             "value": value, "reason": str(exc)})
            return
        back = (await driver.read((spec,)))[spec.name]
        if back.quality is Quality.GOOD and _same(back.value, value, _tolerance(out.point)):
            if out.failures:
                log.info("write recovered", point=out.ref, value=value)
            out.applied, out.verified, out.failures = value, True, 0
            return
        out.verified = False
        out.failures += 1
        if out.failures == 1:
            self._alarm("write_mismatch", {"role": out.role, "point": out.ref, "value": value,
                                           "read_back": back.value,
                                           "quality": back.quality_text})


def _same(a: object, b: object, tolerance: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return False
    # rel_tol: a float32 register or variable keeps about seven significant digits
    return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=tolerance)
