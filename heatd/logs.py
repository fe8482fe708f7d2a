"""Logging through structlog: readable on a terminal, one JSON object per line otherwise
(journald and log shippers parse it without guessing).

An exception logged in JSON mode carries its type, message and frames as structured data
(``exception``), without the frames' local variables: they may hold a password read from
a credential file. On a terminal the console renderer prints the usual traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer

json_tracebacks = structlog.processors.ExceptionRenderer(
    ExceptionDictTransformer(show_locals=False)
)
"""``exc_info`` -> ``exception``: a list of {exc_type, exc_value, frames, ...} (chained
exceptions in order), for JSON output."""


def configure_logging(level: str = "info", json_output: bool | None = None,
                      stream: TextIO | None = None) -> None:
    """Set up structlog and route the standard library's loggers (pymodbus, asyncua)
    through the same renderer. ``stream`` defaults to standard error."""
    stream = sys.stderr if stream is None else stream
    if json_output is None:
        json_output = not stream.isatty()
    final: list[structlog.types.Processor] = (
        [json_tracebacks, structlog.processors.JSONRenderer()] if json_output
        else [structlog.dev.ConsoleRenderer()]
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries log every failed poll at ERROR with a traceback; heatd reports those itself
    # as point quality and device availability, once per transition.
    for noisy in ("pymodbus", "asyncua"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
