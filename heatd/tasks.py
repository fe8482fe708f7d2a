"""Stopping a set of background tasks, for the parts of the daemon that own some."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel every task, wait until each has finished, and empty the list."""
    for task in tasks:
        task.cancel()
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
