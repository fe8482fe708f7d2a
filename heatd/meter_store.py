"""Store-and-forward through SQLite for the records that must not be lost: meter records
and the audit records of commands. Each is written first and deleted only after the
broker acknowledged it (QoS 1 PUBACK), so a broker outage or a restart of heatd loses
nothing. Delivery is at least once and in order within a stream; a meter record's ``id``
(its row) and an audit record's ``ts`` and command ``id`` let a consumer drop a duplicate.

The file is written with ``synchronous=FULL``: each insert waits for an fsync, and for
the lock another connection to the file (the ledger's) may hold. So one writer thread
owns the connection and takes every statement in order from a queue: keeping a record
returns at once, a slow disk or a held lock delays only the thread, never the event loop
the control cycle runs on, and ``close`` writes everything queued before it.

A meter record's row is deleted once sent, but where the interval records end must
outlive it: a trigger keeps, per site, the last record's end and each counter's last
known reading (its ``*_counter_end``, at ``*_counter_end_at``) and the power energy still
bridging a silent counter (``*_bridged_kwh``) in ``meter_resume``, in the
transaction that queued the record, whichever connection wrote it (this store's or the
ledger's). A restarted meter resumes from there (``heatd.meter``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import structlog

from heatd.meter_health import Wrote
from heatd.outbox_streams import AUDIT, METER

log = structlog.get_logger(__name__)

T = TypeVar("T")

Send = Callable[[bytes], Awaitable[bool]]
"""Publish one payload and say whether the broker acknowledged it."""

Fallback = Callable[[bytes], None]
"""Where a payload goes when the file cannot take it (called on the event loop)."""

RETRY_S = 2.0
RETRY_MAX_S = 60.0
"""The longest wait between two tries while forwarding fails (the file cannot be read)."""
BUSY_TIMEOUT_S = 30.0
"""How long a statement waits for a lock held by another connection to the file."""
SPARE_BUSY_TIMEOUT_S = 1.0
"""The same for a record that has a fallback (an audit, sent from memory if need be)."""
STREAMS = (METER, AUDIT)
END = ""
"""``meter_resume``'s name for the end of the last record (counters go by field name)."""

_RESUME_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meter_resume (
    site TEXT NOT NULL, name TEXT NOT NULL, at_ms INTEGER NOT NULL, value REAL,
    PRIMARY KEY (site, name));
CREATE TRIGGER IF NOT EXISTS meter_resume_keep AFTER INSERT ON pending
    WHEN NEW.stream = '{METER}' AND json_valid(NEW.payload)
        AND json_type(NEW.payload, '$.site') = 'text'
        AND json_type(NEW.payload, '$.end') = 'integer'
BEGIN
    INSERT OR REPLACE INTO meter_resume (site, name, at_ms, value)
        VALUES (json_extract(NEW.payload, '$.site'), '{END}',
                json_extract(NEW.payload, '$.end'), NULL);
    INSERT OR REPLACE INTO meter_resume (site, name, at_ms, value)
        SELECT json_extract(NEW.payload, '$.site'), key,
               COALESCE(json_extract(NEW.payload, '$.' || key || '_at'),
                        json_extract(NEW.payload, '$.end')), value
        FROM json_each(NEW.payload)
        WHERE (key LIKE '%\\_counter\\_end' ESCAPE '\\'
               OR key LIKE '%\\_bridged\\_kwh' ESCAPE '\\')
            AND type IN ('integer', 'real');
END;
"""


class Pending(NamedTuple):
    id: int
    stream: str
    payload: str


class _Job(NamedTuple):
    future: Future[Any]
    run: Callable[..., Any]
    args: tuple[Any, ...]


def meter_path(database: str) -> str:
    """``meter.database`` with its environment variables expanded; ValueError when one is
    not set (a path with a literal ``$`` in it would be made in the working directory)."""
    path = os.path.expandvars(database)
    if "$" in path:
        raise ValueError(f"meter.database {database!r}: a variable in it is not set; give a path")
    return path


def check_intact(db: sqlite3.Connection) -> None:
    """Raise sqlite3.DatabaseError unless SQLite's quick check finds the file sound. Run
    before anything is written: SQLite writes into a file whose header is sound but whose
    pages are not, and a malformed file holds the operator's records, to be mended or
    kept, never written over."""
    found = [row[0] for row in db.execute("PRAGMA quick_check(1)")]
    if found != ["ok"]:
        raise sqlite3.DatabaseError(f"database disk image is malformed ({'; '.join(found)})")


def file_problem(path: str) -> str | None:
    """Why the meter's file at ``path`` could not be used, read without writing to it or
    making anything; None when it looks usable (a file not there yet is made by heatd if
    its nearest existing folder is writable)."""
    target = Path(path)
    if target.is_dir():
        return "is a directory"
    if not target.exists():
        folder = next((p for p in target.parents if p.exists()), Path("/"))
        if not folder.is_dir():
            return f"{folder}: Not a directory"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"{folder}: cannot write in this folder"
        return None
    try:
        db = sqlite3.connect(f"{target.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        check_intact(db)
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        db.close()
    if not os.access(target, os.W_OK) or not os.access(target.parent, os.W_OK | os.X_OK):
        return "not writable (the file and its folder must be, for its journal)"
    return None


class StoredEnd(NamedTuple):
    """Where a site's interval records end: the last record's end (epoch s) and, per
    ``*_counter_end`` field, (time, value) of the counter's last known reading there."""

    end: float
    counters: dict[str, tuple[float, float]]


class DurableOutbox:
    """One SQLite file of unacknowledged records, each tagged with its stream, written by
    a thread of its own."""

    def __init__(self, path: str | Path, *, busy_timeout: float = BUSY_TIMEOUT_S,
                 loop: asyncio.AbstractEventLoop | None = None,
                 wrote: Wrote | None = None) -> None:
        """``loop`` is the event loop that forwards (default: the running one, if any), for
        a store opened in another thread; ``wrote`` hears there how each insert and
        delete went (``heatd.meter_health``). Raises sqlite3.Error or OSError when the
        file cannot be used, malformed included (see :func:`check_intact`)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._lock = threading.Lock()
        """Holds ``_closed`` and the queue together: nothing is queued after the end."""
        self._wake = asyncio.Event()
        self._spares: dict[Future[None], tuple[bytes, Fallback]] = {}
        """Records with a fallback queued and not written yet (under ``_lock``)."""
        self._wrote = wrote
        self._unremoved: set[int] = set()
        """Rows the broker has whose delete failed (writer thread only): not sent again
        by this store, deleted at a later try."""
        self._loop = loop
        if loop is None:
            with contextlib.suppress(RuntimeError):
                self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._work, name="meter-store", daemon=True)
        self._thread.start()
        try:
            self._submit(self._open, str(path), busy_timeout).result()
        except BaseException:
            self.close()
            raise

    # --- in the writer thread ---------------------------------------------------------
    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                job.future.set_result(job.run(*job.args))
            except BaseException as exc:
                job.future.set_exception(exc)
        if self._db is not None:
            # the journal emptied into this file (through its open descriptor) and cut to
            # nothing: were the file replaced at its path meanwhile, the journal left at
            # the path would otherwise be read as the new file's pages, and written into it
            with contextlib.suppress(sqlite3.Error):  # not waiting on another's lock
                self._db.execute("PRAGMA busy_timeout = 0")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    def _open(self, path: str, busy_timeout: float) -> None:
        self._busy_timeout = busy_timeout
        db = self._db = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout)
        check_intact(db)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                   " payload TEXT NOT NULL)")
        columns = {row[1] for row in db.execute("PRAGMA table_info(pending)")}
        if "stream" not in columns:  # a file written before audits were kept: meter only
            db.execute(
                f"ALTER TABLE pending ADD COLUMN stream TEXT NOT NULL DEFAULT '{METER}'")
        db.executescript(_RESUME_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        assert self._db is not None, "opened by the first job"
        return self._db

    def _insert(self, stream: str, text: str, fallback: Fallback | None) -> None:
        """Keep one record; one with a fallback waits ``SPARE_BUSY_TIMEOUT_S`` at most for
        a lock another connection holds (its fallback sends it from memory), others the
        full busy timeout (they have nowhere else to go)."""
        db = self._connection()
        started = time.monotonic()
        try:
            if fallback is not None:
                db.execute(f"PRAGMA busy_timeout = {int(SPARE_BUSY_TIMEOUT_S * 1000)}")
            db.execute("INSERT INTO pending (stream, payload) VALUES (?, ?)", (stream, text))
        except sqlite3.Error as exc:
            log.warning("record not kept durably", stream=stream, error=str(exc))
            self._tell(exc, started)
            if fallback is not None:
                self._on_loop(fallback, text.encode())
            return
        finally:
            if fallback is not None:
                db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        self._tell(None, started)
        self._on_loop(self._wake.set)

    def _tell(self, error: sqlite3.Error | None, started: float) -> None:
        """How a write went, to ``wrote`` on the event loop."""
        if self._wrote is not None:
            self._on_loop(self._wrote, error, time.monotonic() - started)

    def _select(self, streams: tuple[str, ...], limit: int) -> list[Pending]:
        """The oldest rows not sent yet: a row the broker has whose delete failed (a full
        disk) is deleted again first and never sent twice by this store."""
        if self._unremoved:
            self._delete(*self._unremoved)
        marks = ",".join("?" * len(streams))
        rows = self._connection().execute(
            f"SELECT id, stream, payload FROM pending WHERE stream IN ({marks})"
            " ORDER BY id LIMIT ?", (*streams, limit + len(self._unremoved)))
        return [Pending(*row) for row in rows if row[0] not in self._unremoved][:limit]

    def _stored_end(self, site: str) -> StoredEnd | None:
        rows = self._connection().execute(
            "SELECT name, at_ms, value FROM meter_resume WHERE site = ?", (site,)).fetchall()
        end = next((at_ms for name, at_ms, _ in rows if name == END), None)
        if end is None:
            return None
        return StoredEnd(end / 1000, {name: (at_ms / 1000, float(value))
                                      for name, at_ms, value in rows if name != END})

    def _delete(self, *row_ids: int) -> None:
        started = time.monotonic()
        marks = ",".join("?" * len(row_ids))
        try:
            self._connection().execute(f"DELETE FROM pending WHERE id IN ({marks})", row_ids)
        except sqlite3.Error as exc:  # deleted later, or sent again after a restart
            if not self._unremoved.issuperset(row_ids):
                log.warning("acknowledged record not removed", ids=list(row_ids),
                            error=str(exc))
            self._unremoved.update(row_ids)
            self._tell(exc, started)
            return
        self._unremoved.difference_update(row_ids)
        self._tell(None, started)

    def _on_loop(self, call: Callable[..., None], *args: Any) -> None:
        """Run ``call`` on the event loop that forwards (now, when there is none)."""
        loop = self._loop
        if loop is None:
            call(*args)
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(call, *args)

    # --- from any thread --------------------------------------------------------------
    def _submit(self, run: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if not self._closed:
                self._jobs.put(_Job(future, run, args))
                return future
        future.set_exception(sqlite3.ProgrammingError("the meter store is closed"))
        return future

    def append(self, record: Mapping[str, object]) -> None:
        """Keep a meter record until it is acknowledged (written by the thread, in order)."""
        self.keep(METER, json.dumps(record).encode())

    def keep(self, stream: str, payload: bytes, fallback: Fallback | None = None) -> bool:
        """Queue a ready payload (an audit record) to be kept until it is acknowledged.
        False when the store is closed or the payload is no text, so the caller can fall
        back at once; ``fallback`` gets it later if the file refuses it (disk full)."""
        try:
            text = payload.decode()
        except UnicodeDecodeError as exc:
            log.warning("record not kept durably", stream=stream, error=str(exc))
            return False
        queued = self._submit(self._insert, stream, text, fallback)
        if queued.done() and queued.exception() is not None:
            return False  # refused: closed
        if fallback is not None:
            with self._lock:
                self._spares[queued] = (payload, fallback)
            queued.add_done_callback(self._written)
        return True

    def _written(self, job: Future[None]) -> None:
        with self._lock:
            self._spares.pop(job, None)

    def pending(self, streams: Iterable[str] = STREAMS, limit: int = 100) -> list[Pending]:
        """The oldest unacknowledged rows of ``streams``, after every write queued before
        (blocks: for tools and tests; the forwarder awaits them)."""
        return self._submit(self._select, tuple(streams), limit).result()

    def stored_end(self, site: str) -> StoredEnd | None:
        """Where ``site``'s interval records end, after every write queued before; None
        before its first record (blocks: read once, when the meter starts)."""
        return self._submit(self._stored_end, site).result()

    def acknowledge(self, row_id: int) -> None:
        """The broker has the row: delete it (queued behind the writes before it)."""
        self._submit(self._delete, row_id)

    def wake(self) -> None:
        """Rows were added by another connection to the file (the ledger): send them."""
        self._on_loop(self._wake.set)

    async def flush(self) -> None:
        """Wait until everything queued so far is written."""
        await asyncio.wrap_future(self._submit(lambda: None))

    def hand_back(self) -> None:
        """Records with a fallback (audits, which their link can send from memory) still
        queued go to their fallback now: a stopping link waits for its audits, and while
        another connection held the file's lock they waited behind it until the link was
        gone. Called on the event loop's thread, where the fallbacks run."""
        with self._lock:
            waiting = list(self._spares.items())
        for job, (payload, fallback) in waiting:
            if job.cancel():  # not started yet
                fallback(payload)

    def close(self) -> None:
        """Write everything queued, then close the file (blocks until it is written)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._jobs.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join()

    async def aclose(self) -> None:
        """:meth:`close` from the event loop, without holding it up."""
        await asyncio.to_thread(self.close)

    # --- on the event loop ------------------------------------------------------------
    async def forward(self, sends: Mapping[str, Send]) -> None:
        """Send pending rows of the streams in ``sends`` oldest first, for ever; stop at
        the first one the broker does not acknowledge and try again a little later (a row
        of a stream without a sender waits for a heatd that has one). A failure to read
        the file or to send is logged and tried again, less often while it lasts: it
        never ends forwarding, which only a cancellation does."""
        self._loop = asyncio.get_running_loop()
        wait = RETRY_S
        while True:
            self._wake.clear()
            try:
                batch = await asyncio.wrap_future(self._submit(self._select, tuple(sends), 100))
                sent = await self._send(batch, sends)
            except Exception as exc:  # store-and-forward keeps trying; the rows stay
                log.warning("forwarding failed: trying again", error=repr(exc), in_s=wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, RETRY_MAX_S)
                continue
            if wait > RETRY_S:
                log.info("forwarding again")
                wait = RETRY_S
            if not batch:
                await self._wake.wait()
            elif not sent:
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
