"""What heatd logs, read by a test, whatever logging set-up an earlier test left behind."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from typing import Any

from heatd.logs import configure_logging


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, dict):  # a structlog event, wrapped for the formatter
            self.events.append(record.msg)


@contextlib.contextmanager
def heatd_events(level: str = "info") -> Iterator[list[dict[str, Any]]]:
    """Every event heatd logs inside the block, as its structlog event dict (``event``,
    ``level`` and the fields).

    ``structlog.testing.capture_logs`` misses a module's logger once an earlier
    in-process ``configure_logging`` (which caches loggers on first use) has cached it.
    Logging is set up here as the daemon sets it up, so every heatd logger reaches the
    standard library's root logger, where this listens."""
    configure_logging(level, json_output=True, stream=io.StringIO())
    collect = _Collect()
    root = logging.getLogger()
    root.addHandler(collect)
    try:
        yield collect.events
    finally:
        root.removeHandler(collect)
