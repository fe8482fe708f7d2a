"""Whether the meter's file still takes a running meter's writes. A file that opened can
fail later (a full disk, a folder or mount made read-only, an I/O error, another
connection holding its write lock for minutes): records then wait in memory and audits go
out from memory, and that loss of durability must reach the operator, once, not once per
record, and be taken back once the file takes writes again.

A lock another connection holds is normal for a short while (the ledger's own
transaction, a billing tool's read-write session): a write that gives up on it counts only
once the file has been locked for ``LOCK_ALARM_S``, reckoned from the start of the first
of the writes that failed on it since the last one that went through.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

LOCK_ALARM_S = 30.0
"""How long another connection may keep every write out before the file counts as not
writable (a meter record itself waits this long for the lock)."""

Wrote = Callable[[sqlite3.Error | None, float], None]
"""Told of each write to the file: its error (None: it went through) and how long it
took (how long it waited for a lock, when it failed on one)."""

FaultChanged = Callable[[str | None], None]
"""Hears why the file stopped taking writes, and None once it takes them again."""


def _locked(error: sqlite3.Error) -> bool:
    """SQLite gave up waiting for a lock (SQLITE_BUSY, SQLITE_LOCKED, extended or not)."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class WriteHealth:
    """The outcome of every write to one file, as a fault that starts and ends. Called on
    the event loop's thread only."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.fault: str | None = None
        """Why writes fail now; None while they go through."""
        self._locked_since: float | None = None
        """Start of the first write refused by a lock since the last that went through."""
        self._changed: FaultChanged | None = None

    def tell(self, changed: FaultChanged | None) -> None:
        """Where a change of :attr:`fault` goes (None: nowhere)."""
        self._changed = changed

    def carry(self, fault: str | None) -> None:
        """Start from a fault the file had under an earlier meter, so the first write that
        goes through says it is over."""
        self.fault = fault

    def wrote(self, error: sqlite3.Error | None, took_s: float) -> None:
        """A write went through (``error`` None) or failed after ``took_s`` seconds."""
        if error is None:
            self._locked_since = None
            self._set(None)
            return
        if not _locked(error):
            self._set(str(error))
            return
        now = self._clock()
        if self._locked_since is None:
            self._locked_since = now - took_s
        held = now - self._locked_since
        if held >= LOCK_ALARM_S:
            self._set(f"{error}: another connection has held the file's lock for "
                      f"{held:.0f} s")

    def _set(self, fault: str | None) -> None:
        if (fault is None) == (self.fault is None):
            return  # no change of state: the first error stands until writes go through
        self.fault = fault
        if self._changed is not None:
            self._changed(fault)
