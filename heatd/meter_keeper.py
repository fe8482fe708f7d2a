"""The meter's file, kept apart from control: heatd controls whatever state that file is
in. A file that cannot be used (not a database, malformed, a directory, a folder heatd
may not write in) is reported, once per error, and tried again every ``RETRY_S`` until it
can; meanwhile nothing is metered, command audits take the in-memory path, and a
malformed file is left as it is (it holds the operator's records). A meter that runs is
watched: once the path no longer names the file it opened (replaced, removed), the meter
stops and the file at the path is opened as at the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Awaitable, Callable

import structlog

from heatd.config import MeterSettings, SiteConfig
from heatd.meter_store import meter_path
from heatd.metering import Metering

log = structlog.get_logger(__name__)

RETRY_S = 30.0
"""How often an unusable file is tried again, and a running meter's file looked at."""

FileId = tuple[int, int]


class MeterKeeper:
    """Opens the site's meter off the event loop, hands it to ``attach`` once it runs, and
    takes it back with ``detach`` before it stops (the file replaced, or :meth:`stop`)."""

    def __init__(self, site: SiteConfig, settings: MeterSettings,
                 attach: Callable[[Metering], None],
                 detach: Callable[[Metering], Awaitable[None]],
                 fault_changed: Callable[[str, str | None], None]) -> None:
        """``fault_changed(file, error)`` hears each new reason the file is not in use,
        and ``error`` None once it is again."""
        self._site = site
        self._settings = settings
        self.path = meter_path(settings.database)
        self._attach = attach
        self._detach = detach
        self._fault_changed = fault_changed
        self.fault: str | None = None
        """Why the file is not in use now (None while metering, or before the first try)."""
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="meter keeper")

    async def stop(self) -> None:
        """End the tries; a meter running (or being opened) keeps what it has and closes.
        Never cancels an open under way: its SQLite work would go on in its thread."""
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while not self._stopping.is_set():
            opened = await self._open()
            if opened is None:
                await self._pause()
                continue
            metering, file_id = opened
            if self._stopping.is_set():
                await metering.stop()
                return
            metering.start()
            self._attach(metering)
            if self.fault is not None:
                log.info("meter file usable again: metering", file=self.path)
                self.fault = None
                self._fault_changed(self.path, None)
            while not self._stopping.is_set():
                await self._pause()
                now = _file_id(self.path)
                if now != file_id and not self._stopping.is_set():
                    self._report("replaced or removed while heatd ran: metering stops, "
                                 "opening the file now at the path")
                    break
            try:
                await self._detach(metering)
                await metering.stop()
            except Exception:  # gone all the same: the keeper goes on with the path
                log.exception("the meter did not stop cleanly", file=self.path)

    async def _open(self) -> tuple[Metering, FileId | None] | None:
        """The meter on the file at the path, with the file's identity; None (reported)
        when the file cannot be used."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.to_thread(self._make, loop)
        except (sqlite3.Error, OSError) as exc:
            self._report(_why(self.path, exc))
        except Exception as exc:  # a bug: said in full, control goes on all the same
            log.exception("meter could not be made", file=self.path)
            self._report(repr(exc))
        return None

    def _make(self, loop: asyncio.AbstractEventLoop) -> tuple[Metering, FileId | None]:
        metering = Metering(self._site, self._settings, loop=loop)
        return metering, _file_id(self.path)

    def _report(self, error: str) -> None:
        """One log line per new error, told to ``fault_changed``."""
        if error == self.fault:
            return
        self.fault = error
        log.error("meter file unusable: not metering, trying again", file=self.path,
                  error=error, every_s=RETRY_S)
        self._fault_changed(self.path, error)

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), RETRY_S)


def _file_id(path: str) -> FileId | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _why(path: str, exc: BaseException) -> str:
    """The error as SQLite or the system gave it, with the reason where SQLite's own
    words do not say it ("unable to open database file")."""
    if isinstance(exc, FileExistsError) and exc.filename:  # its folder, made: a file
        return f"{exc.filename}: Not a directory"
    if isinstance(exc, OSError):
        return f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)
    error = str(exc)
    if os.path.isdir(path):
        return f"{error}: it is a directory"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{error}: cannot write in {folder}"
    return error
