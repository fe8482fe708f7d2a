"""Whose turn it is on a link: one request at a time, urgent requests first.

A heartbeat or a safe-state write must not queue behind polls and read-backs: the site PLC
takes over when the heartbeat stops changing. Urgent waiters are served before any normal
one, each class in arrival order. A request already on the wire is never interrupted (on
a serial line that would garble the next frame), so an urgent request waits at most for
one request in flight.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class Turns:
    """A lock with two queues. ``async with turns.take(urgent=True): ...``"""

    def __init__(self) -> None:
        self._busy = False
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        """Requests queued for a turn (diagnostics and tests)."""
        return sum(1 for *_, f in self._waiting if not f.done())

    async def acquire(self, urgent: bool = False) -> None:
        if not self._busy and not any(not f.done() for *_, f in self._waiting):
            self._busy = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (0 if urgent else 1, next(self._order), turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # granted, then cancelled before it could run: pass it on
            raise

    def release(self) -> None:
        while self._waiting:
            *_, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)  # the link stays busy: the turn passes directly
                return
        self._busy = False

    def take(self, urgent: bool = False) -> _Turn:
        return _Turn(self, urgent)


class _Turn:
    __slots__ = ("_turns", "_urgent")

    def __init__(self, turns: Turns, urgent: bool) -> None:
        self._turns, self._urgent = turns, urgent

    async def __aenter__(self) -> None:
        await self._turns.acquire(self._urgent)

    async def __aexit__(self, *exc: object) -> None:
        self._turns.release()
