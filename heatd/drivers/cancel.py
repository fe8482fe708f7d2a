"""Stopping a set of background tasks, for every part that owns some (the drivers'
connection supervisors, the daemon's loops and MQTT sessions)."""

from __future__ import annotations

import asyncio
import contextlib

RECANCEL_S = 0.5


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel every task, wait until each has finished, and empty the list.

    A task still running after ``RECANCEL_S`` is cancelled again: Python 3.11's
    ``asyncio.wait_for`` (which pymodbus awaits replies with) loses a cancellation that
    arrives together with the reply, and such a task would otherwise run on for good."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    tasks.clear()
