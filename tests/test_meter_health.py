"""When the meter's file counts as not taking writes: errors from a real SQLite file (a
lock another connection holds, a read-only connection), judged on a clock the test
moves."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from heatd.meter_health import LOCK_ALARM_S, WriteHealth


def locked_error(db: Path) -> sqlite3.Error:
    """The error SQLite gives a write that gave up on another connection's lock."""
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE IF NOT EXISTS t (x)")
    holder.execute("BEGIN IMMEDIATE")
    writer = sqlite3.connect(db, isolation_level=None, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError) as caught:
            writer.execute("INSERT INTO t VALUES (1)")
        return caught.value
    finally:
        writer.close()
        holder.execute("ROLLBACK")
        holder.close()


def read_only_error(db: Path) -> sqlite3.Error:
    """The error of a write to a file that cannot take one."""
    sqlite3.connect(db).execute("CREATE TABLE IF NOT EXISTS t (x)").connection.close()
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        with pytest.raises(sqlite3.OperationalError) as caught:
            con.execute("INSERT INTO t VALUES (1)")
        return caught.value
    finally:
        con.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watched() -> tuple[WriteHealth, Clock, list[str | None]]:
    clock = Clock()
    health = WriteHealth(clock)
    changes: list[str | None] = []
    health.tell(changes.append)
    return health, clock, changes


def test_a_refused_write_is_one_fault_until_a_write_goes_through(tmp_path: Path) -> None:
    health, clock, changes = watched()
    error = read_only_error(tmp_path / "m.sqlite")
    for _ in range(50):  # a record, an audit, a delete...: one fault
        health.wrote(error, 0.001)
        clock.now += 1
    assert changes == [str(error)] and "readonly" in str(error)
    health.wrote(None, 0.01)
    health.wrote(None, 0.01)
    assert changes == [str(error), None] and health.fault is None


def test_a_lock_counts_only_once_it_has_kept_writes_out_for_long(tmp_path: Path) -> None:
    health, clock, changes = watched()
    error = locked_error(tmp_path / "m.sqlite")
    health.wrote(error, 1.0)  # an audit's second
    clock.now += LOCK_ALARM_S / 2
    health.wrote(error, 1.0)
    assert changes == []  # a young lock: the file's normal life
    health.wrote(None, 0.5)  # it went: the next lock is reckoned afresh
    clock.now += LOCK_ALARM_S / 2
    health.wrote(error, 1.0)
    assert changes == []
    clock.now += LOCK_ALARM_S
    health.wrote(error, 1.0)
    [fault] = changes
    assert fault is not None and "locked" in fault and f"{LOCK_ALARM_S + 1:.0f} s" in fault


def test_a_write_that_waited_out_the_whole_lock_time_counts_at_once(tmp_path: Path) -> None:
    health, _, changes = watched()
    health.wrote(locked_error(tmp_path / "m.sqlite"), LOCK_ALARM_S)
    assert len(changes) == 1 and health.fault is not None


def test_a_fault_carried_from_an_earlier_meter_ends_at_its_first_write() -> None:
    health, _, changes = watched()
    health.carry("database or disk is full")
    health.wrote(None, 0.01)
    assert changes == [None]
