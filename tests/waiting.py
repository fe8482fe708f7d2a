"""Waiting in tests for something a real peer does in its own time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], object], timeout: float = 5.0,
                poll: float = 0.02) -> None:
    """Return as soon as ``condition()`` is true; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, f"condition not met within {timeout} s"
        await asyncio.sleep(poll)
