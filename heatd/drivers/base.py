"""What every protocol driver offers the daemon: read a group of points, write one point,
and say whether the device is answering.

Drivers never raise out of ``read``: a failed request becomes bad readings with a reason,
so the caller's loop keeps its rate whatever a device does. ``write`` raises
``WriteError`` so the caller can alarm and retry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from heatd.drivers.reading import Reading, Value

P_contra = TypeVar("P_contra", contravariant=True)

ReadingSink = Callable[[str, Reading], None]
"""Called with (point name, reading) whenever a driver has a new observation."""


class WriteError(RuntimeError):
    """A write was refused, not answered, or could not be encoded."""


class Device(Protocol[P_contra]):
    name: str

    @property
    def online(self) -> bool:
        """True while the device answers; False after a failed request until one succeeds."""
        ...

    @property
    def last_error(self) -> str | None:
        """Why the device is not answering (``connection refused``, ``timeout``, ``no such
        serial port``, a security status, ...) or the error it answered with; None when
        healthy."""
        ...

    async def start(self) -> None:
        """Begin connecting. Never raises on an unreachable device: it retries by itself."""
        ...

    async def read(self, points: Sequence[P_contra]) -> dict[str, Reading]:
        """Read the points once; every point gets a reading, good or bad with a reason."""
        ...

    @property
    def session(self) -> object:
        """Changes whenever the device may have lost what was written to it (a reconnect,
        or an answer after silence), so the writer asserts every setpoint again."""
        ...

    async def write(self, point: P_contra, value: Value, *, urgent: bool = False) -> None:
        """Write one point and wait for the device's answer; raises WriteError. An
        ``urgent`` write (heartbeat, safe state) goes before queued polls and read-backs."""
        ...

    async def close(self) -> None: ...
