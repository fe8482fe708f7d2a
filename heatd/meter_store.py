"""Store-and-forward through SQLite for the records that must not be lost: meter records
and the audit records of commands. Each is written first and deleted only after the
broker acknowledged it (QoS 1 PUBACK), so a broker outage or a restart of heatd loses
nothing. Delivery is at least once and in order within a stream; a meter record's ``id``
(its row) and an audit record's ``ts`` and command ``id`` let a consumer drop a duplicate.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import structlog

log = structlog.get_logger(__name__)

Send = Callable[[bytes], Awaitable[bool]]
"""Publish one payload and say whether the broker acknowledged it."""

RETRY_S = 2.0
METER = "meter"
"""Meter records: stored as JSON, sent with their row ``id`` added."""
AUDIT = "audit"
"""Command audit records: sent byte for byte as they were kept."""
STREAMS = (METER, AUDIT)


class Pending(NamedTuple):
    id: int
    stream: str
    payload: str


class DurableOutbox:
    """One SQLite file of unacknowledged records, each tagged with its stream."""

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " payload TEXT NOT NULL)"
        )
        self._add_stream_column()
        self._wake = asyncio.Event()

    def _add_stream_column(self) -> None:
        """A file written before audits were kept holds meter records only."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(pending)")}
        if "stream" not in columns:
            self._db.execute(
                f"ALTER TABLE pending ADD COLUMN stream TEXT NOT NULL DEFAULT '{METER}'")

    def append(self, record: Mapping[str, object]) -> int:
        """Keep a meter record until it is acknowledged; returns its id."""
        return self._insert(METER, json.dumps(record))

    def keep(self, stream: str, payload: bytes) -> bool:
        """Keep a ready payload (an audit record) until it is acknowledged; False when the
        file cannot take it (disk full, closed), so the caller can fall back."""
        try:
            self._insert(stream, payload.decode())
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            log.warning("record not kept durably", stream=stream, error=str(exc))
            return False
        return True

    def _insert(self, stream: str, text: str) -> int:
        cursor = self._db.execute("INSERT INTO pending (stream, payload) VALUES (?, ?)",
                                  (stream, text))
        self._wake.set()
        return int(cursor.lastrowid or 0)

    def pending(self, streams: Iterable[str] = STREAMS, limit: int = 100) -> list[Pending]:
        """The oldest unacknowledged rows of ``streams``."""
        names = tuple(streams)
        marks = ",".join("?" * len(names))
        rows = self._db.execute(
            f"SELECT id, stream, payload FROM pending WHERE stream IN ({marks})"
            " ORDER BY id LIMIT ?", (*names, limit))
        return [Pending(*row) for row in rows]

    def wake(self) -> None:
        """Rows were added by another connection to the file (the ledger): send them."""
        self._wake.set()

    def acknowledge(self, row_id: int) -> None:
        self._db.execute("DELETE FROM pending WHERE id = ?", (row_id,))

    def close(self) -> None:
        self._db.close()

    async def forward(self, sends: Mapping[str, Send]) -> None:
        """Send pending rows of the streams in ``sends`` oldest first, for ever; stop at
        the first one the broker does not acknowledge and try again a little later (a row
        of a stream without a sender waits for a heatd that has one)."""
        while True:
            self._wake.clear()
            batch = self.pending(sends)
            if not batch:
                await self._wake.wait()
            elif not await self._send(batch, sends):
                await asyncio.sleep(RETRY_S)

    async def _send(self, batch: list[Pending], sends: Mapping[str, Send]) -> bool:
        """Send and delete in order; False at the first row not acknowledged."""
        for row in batch:
            if not await sends[row.stream](_encode(row)):
                return False
            self.acknowledge(row.id)
        return True


def _encode(row: Pending) -> bytes:
    if row.stream == METER:
        return json.dumps({"id": row.id, **json.loads(row.payload)}).encode()
    return row.payload.encode()
