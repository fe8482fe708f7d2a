"""Logs: in JSON mode (under systemd) a logged exception keeps its type, message and frames,
from heatd's own loggers and from the libraries' standard-library loggers alike; on a
terminal the traceback stays a readable traceback."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from heatd.logs import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def _fail_deep() -> None:
    secret = "hunter2"  # a local a traceback must not carry into the log
    raise ValueError(f"register 7 unreadable ({len(secret)})")


def _log_failure(logger: Any, **fields: Any) -> None:
    try:
        _fail_deep()
    except ValueError:
        logger.exception("control cycle failed", **fields)


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_exception_carries_type_message_and_frames() -> None:
    out = io.StringIO()
    configure_logging("info", json_output=True, stream=out)
    _log_failure(structlog.get_logger("heatd.test"), cycle=3)
    [record] = _records(out)
    assert record["event"] == "control cycle failed" and record["cycle"] == 3
    assert record["level"] == "error"
    assert "exc_info" not in record
    [exception] = record["exception"]
    assert exception["exc_type"] == "ValueError"
    assert exception["exc_value"] == "register 7 unreadable (7)"
    names = [frame["name"] for frame in exception["frames"]]
    assert names[-2:] == ["_log_failure", "_fail_deep"]
    assert all(frame["filename"].endswith("test_logs.py") for frame in exception["frames"])
    assert "hunter2" not in out.getvalue()


def test_json_exception_from_a_standard_library_logger() -> None:
    out = io.StringIO()
    configure_logging("info", json_output=True, stream=out)
    _log_failure(logging.getLogger("somelibrary"))
    [record] = _records(out)
    assert record["event"] == "control cycle failed"
    [exception] = record["exception"]
    assert exception["exc_type"] == "ValueError"
    assert exception["frames"][-1]["name"] == "_fail_deep"


def test_chained_exceptions_are_all_kept() -> None:
    out = io.StringIO()
    configure_logging("info", json_output=True, stream=out)
    try:
        try:
            _fail_deep()
        except ValueError as exc:
            raise RuntimeError("poll failed") from exc
    except RuntimeError:
        structlog.get_logger("heatd.test").exception("device error")
    [record] = _records(out)
    assert [e["exc_type"] for e in record["exception"]] == ["RuntimeError", "ValueError"]


def test_console_mode_prints_a_readable_traceback() -> None:
    out = io.StringIO()
    configure_logging("info", json_output=False, stream=out)
    _log_failure(structlog.get_logger("heatd.test"))
    text = out.getvalue()
    assert "control cycle failed" in text
    assert "ValueError" in text and "register 7 unreadable (7)" in text
    assert "_fail_deep" in text
    assert not text.lstrip().startswith("{")
