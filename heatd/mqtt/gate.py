"""Rate limits for incoming commands: a token bucket per command name.

Any client that may publish on ``cmd/#`` can send thousands of messages a second; the
gate decides cheaply, before parsing, which of them are worth handling. Unknown names share
one bucket, so inventing names neither escapes the limit nor grows the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate, burst, burst, now)

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means over the limit."""
        elapsed = max(0.0, now - self.stamp)
        self.stamp = now
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class CommandGate:
    """One bucket per known command name plus one shared by every other name."""

    OTHER = "*"

    def __init__(self, names: Iterable[str], rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self._buckets = {name: TokenBucket.full(rate, burst, now)
                         for name in (*names, self.OTHER)}

    def admit(self, name: str, now: float) -> bool:
        bucket = self._buckets.get(name) or self._buckets[self.OTHER]
        return bucket.take(now)
