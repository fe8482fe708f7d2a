"""Waiting, in the tests and the rigs, for something a real peer does in its own time."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from heatd.devices import AnyBound

T = TypeVar("T")


@overload
async def until(condition: Callable[[], Awaitable[T]], timeout: float = ..., *,
                poll: float = ..., what: str = ...,
                explain: Callable[[], str] | None = ...) -> T: ...
@overload
async def until(condition: Callable[[], T], timeout: float = ..., *, poll: float = ...,
                what: str = ..., explain: Callable[[], str] | None = ...) -> T: ...
async def until(condition: Callable[[], Any], timeout: float = 5.0, *, poll: float = 0.02,
                what: str = "condition", explain: Callable[[], str] | None = None) -> Any:
    """The first true result of ``condition()`` (a plain or an async check), looked at
    every ``poll`` seconds; the test fails after ``timeout`` seconds, saying ``what`` it
    waited for and, from ``explain``, what the peer was doing."""
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            while True:
                result = condition()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return result
                await asyncio.sleep(poll)
    except TimeoutError:
        if not deadline.expired():
            raise  # the check's own timeout, not the wait's
        detail = f"\n{explain()}" if explain is not None else ""
        raise AssertionError(f"{what} not met within {timeout} s{detail}") from None


async def read_online(device: AnyBound) -> bool:
    """Read every point of the device once; whether its driver is online. A check for
    :func:`until`: a driver finds its device, or finds it back, by being polled."""
    await device.read_all()
    return device.driver.online
