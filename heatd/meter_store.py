"""Store-and-forward for meter records: every record is written to SQLite first and
deleted only after the broker acknowledged it (QoS 1 PUBACK), so a broker outage or a
restart of heatd loses nothing. Delivery is at least once; each record's ``id`` lets a
consumer drop a duplicate.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

Send = Callable[[bytes], Awaitable[bool]]
"""Publish one payload and say whether the broker acknowledged it."""

RETRY_S = 2.0


class MeterStore:
    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " payload TEXT NOT NULL)"
        )
        self._wake = asyncio.Event()

    def append(self, record: dict[str, Any]) -> int:
        """Keep a record until it is acknowledged; returns its id."""
        cursor = self._db.execute("INSERT INTO pending (payload) VALUES (?)",
                                  (json.dumps(record),))
        self._wake.set()
        return int(cursor.lastrowid or 0)

    def pending(self, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        rows = self._db.execute("SELECT id, payload FROM pending ORDER BY id LIMIT ?", (limit,))
        return [(row_id, json.loads(payload)) for row_id, payload in rows]

    def acknowledge(self, row_id: int) -> None:
        self._db.execute("DELETE FROM pending WHERE id = ?", (row_id,))

    def close(self) -> None:
        self._db.close()

    async def forward(self, send: Send) -> None:
        """Send pending records in order, oldest first, for ever; stop at the first one
        the broker does not acknowledge and try again a little later."""
        while True:
            self._wake.clear()
            for row_id, record in self.pending():
                payload = json.dumps({"id": row_id, **record}).encode()
                if not await send(payload):
                    break
                self.acknowledge(row_id)
            else:
                await self._wake.wait()
                continue
            await asyncio.sleep(RETRY_S)
