"""The records, kept for good: one SQLite table, append only, one hash chain.

Each record carries ``seq`` (1, 2, ...) and ``prev`` (the previous record's hash; 64
zeros for the first); its ``hash`` is SHA-256 over its canonical JSON without the hash
(keys sorted, no spaces, UTF-8; see :func:`canonical`). A record removed from the middle
breaks ``seq`` and ``prev``, an altered one its own hash: :func:`verify` finds both.
Triggers refuse UPDATE and DELETE, so a closed record stays as it was written.

The ledger lives in the meter's SQLite file beside the store-and-forward table
(``heatd.meter_store``, which makes it): a record and its pending copy for the broker are
written in one transaction, so a record is either kept and sent, or neither. It is
written from a worker thread, never in the control cycle.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heatd.billing.hourly import Resume
from heatd.outbox_streams import RECORDS

GENESIS = "0" * 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY, contract TEXT NOT NULL, start INTEGER NOT NULL,
    payload TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS records_contract ON records (contract, start);
CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records
    BEGIN SELECT RAISE(ABORT, 'records are immutable'); END;
CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records
    BEGIN SELECT RAISE(ABORT, 'records are immutable'); END;
"""


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes a record's hash is taken over: JSON with sorted keys, no spaces, UTF-8,
    every field but ``hash``; NaN and infinity are refused."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


class Ledger:
    """The records table of one SQLite file."""

    def __init__(self, path: str | Path, *, threaded: bool = False) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, timeout=10.0,
                                   check_same_thread=not threaded)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1"
                               ).fetchone()
        self._seq: int = row[0] if row else 0
        self._hash: str = row[1] if row else GENESIS

    def append(self, records: Iterable[Mapping[str, Any]], *, send: bool = True,
               also: Iterable[tuple[str, str]] = ()) -> list[dict[str, Any]]:
        """Chain, keep and (``send``) queue for the broker, in one transaction with the
        ``also`` rows (stream, payload) of other streams queued for the broker."""
        chained = []
        seq, prev = self._seq, self._hash
        for record in records:
            seq += 1
            body = {**record, "seq": seq, "prev": prev}
            body["hash"] = prev = record_hash(body)
            chained.append(body)
        others = list(also)
        if not chained and not others:
            return []
        with self._transaction():
            if others:
                self._db.executemany("INSERT INTO pending (stream, payload) VALUES (?, ?)",
                                     others)
            for body in chained:
                text = json.dumps(body, sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False, allow_nan=False)
                self._db.execute("INSERT INTO records (seq, contract, start, payload, hash)"
                                 " VALUES (?, ?, ?, ?, ?)",
                                 (body["seq"], body["contract"], body["start"], text,
                                  body["hash"]))
                if send:
                    self._db.execute("INSERT INTO pending (stream, payload) VALUES (?, ?)",
                                     (RECORDS, text))
        self._seq, self._hash = seq, prev
        return chained

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def records(self, contract: str | None = None, start_ms: int | None = None,
                end_ms: int | None = None) -> list[dict[str, Any]]:
        """Stored records in sequence order, optionally of one contract and starting in
        [start_ms, end_ms)."""
        return _select(self._db, contract, start_ms, end_ms)

    def totals(self, fields: Iterable[str]) -> dict[str, dict[str, float]]:
        """contract -> field -> the sum over every record kept (a running total)."""
        names = list(fields)
        sums = ", ".join(f"COALESCE(SUM(json_extract(payload, '$.{n}')), 0)" for n in names)
        out: dict[str, dict[str, float]] = {}
        for contract, *values in self._db.execute(
                f"SELECT contract, {sums} FROM records GROUP BY contract"):
            out[contract] = dict(zip(names, map(float, values), strict=True))
        return out

    def resume(self, contract: str, counters: Iterable[str]) -> Resume | None:
        """Where ``contract``'s records end, with its counters' last known values."""
        row = self._db.execute("SELECT payload FROM records WHERE contract = ? "
                               "ORDER BY start DESC LIMIT 1", (contract,)).fetchone()
        if row is None:
            return None
        last = json.loads(row[0])
        known: dict[str, tuple[float, float]] = {}
        names = list(counters)
        if names:
            for (payload,) in self._db.execute(
                    "SELECT payload FROM records WHERE contract = ? ORDER BY start DESC "
                    "LIMIT 48", (contract,)):
                record = json.loads(payload)
                if record.get("counter_end") is not None:
                    at = record.get("counter_end_at") or record["end"]  # older: the end
                    known = {name: (at / 1000, record["counter_end"]) for name in names}
                    break
        return Resume(last["end"] / 1000, known)

    def close(self) -> None:
        self._db.close()


def stored_records(path: str | Path, start_ms: int | None = None,
                   end_ms: int | None = None) -> list[dict[str, Any]]:
    """Records starting in [start_ms, end_ms), read without writing to the file."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        return _select(db, None, start_ms, end_ms)
    finally:
        db.close()


def contracts_recorded(path: str | Path, kind: str) -> set[str]:
    """The contracts of ``kind`` the file has records of, in any period."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        return {name for (name,) in db.execute(
            "SELECT DISTINCT contract FROM records WHERE json_extract(payload, '$.kind') = ?",
            (kind,))}
    finally:
        db.close()


def _select(db: sqlite3.Connection, contract: str | None, start_ms: int | None,
            end_ms: int | None) -> list[dict[str, Any]]:
    sql = "SELECT payload FROM records WHERE 1=1"
    args: list[int | str] = []
    for clause, value in ((" AND contract = ?", contract), (" AND start >= ?", start_ms),
                          (" AND start < ?", end_ms)):
        if value is not None:
            sql, args = sql + clause, [*args, value]
    return [json.loads(p) for (p,) in db.execute(sql + " ORDER BY seq", args)]


@dataclass(frozen=True, slots=True)
class Finding:
    seq: int | None
    problem: str

    def __str__(self) -> str:
        return f"record {self.seq}: {self.problem}" if self.seq is not None else self.problem


def verify(path: str | Path) -> tuple[int, list[Finding]]:
    """Check the chain of a ledger file: (records read, problems found). Finds a record
    removed (a gap in ``seq``, a ``prev`` that is not the hash before it) and a record
    altered (its hash does not match its content, or the row's hash column differs)."""
    try:
        db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return 0, [Finding(None, f"cannot open: {exc}")]
    try:
        rows = db.execute("SELECT seq, payload, hash FROM records ORDER BY seq").fetchall()
    except sqlite3.Error as exc:
        return 0, [Finding(None, f"no records ({exc})")]
    finally:
        db.close()
    problems: list[Finding] = []
    expected_seq, prev = 1, GENESIS
    for seq, payload, column in rows:
        try:
            record = json.loads(payload)
        except json.JSONDecodeError:
            problems.append(Finding(seq, "not JSON"))
            continue
        if seq != expected_seq:
            problems.append(Finding(seq, f"records {expected_seq}..{seq - 1} are missing"))
        if record.get("seq") != seq:
            problems.append(Finding(seq, f"carries seq {record.get('seq')}"))
        if record.get("prev") != prev:
            problems.append(Finding(seq, "prev does not match the hash of the record "
                                         "before it"))
        actual = record_hash(record)
        if record.get("hash") != actual or column != actual:
            problems.append(Finding(seq, "content does not match its hash (altered)"))
        expected_seq, prev = seq + 1, record.get("hash", "")
    return len(rows), problems
