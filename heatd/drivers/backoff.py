"""Reconnect delays: exponential with jitter, so a fleet of gateways that lost the same
server does not hammer it in lockstep when it comes back."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays ``first, 2*first, 4*first, ...`` capped at ``cap``, each scaled by a random
    factor in [0.5, 1) ("equal jitter": never zero, never longer than the nominal delay)."""

    def __init__(self, first: float, cap: float, rng: Callable[[], float] = random.random):
        self._first = first
        self._cap = cap
        self._rng = rng
        self._attempt = 0

    def next(self) -> float:
        nominal = min(self._cap, self._first * 2.0 ** min(self._attempt, 62))
        self._attempt += 1
        return nominal * (0.5 + 0.5 * self._rng())

    def reset(self) -> None:
        self._attempt = 0
