"""Stopping a set of background tasks, for the parts of the daemon that own some."""

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


def next_tick(previous: float, now: float, period: float) -> float:
    """The deadline after ``previous`` on a fixed grid of ``period``. A loop that overran
    skips the ticks it missed, keeping its phase, instead of bursting to catch up (a burst
    hits a struggling device, or the cycle's budget, hardest)."""
    deadline = previous + period
    if deadline < now:
        deadline += ((now - deadline) // period + 1) * period
    return deadline
