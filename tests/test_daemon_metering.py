"""Metering as the daemon does it: without any broker, beside a disk that is slow to
write (a lock held on the meter's file), and across a stop and start of heatd, never at
the cost of a control cycle or a record, nor of the energy that flowed meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from heatd.billing.ledger import verify
from heatd.config_loader import load_site
from heatd.drivers.modbus import Table
from heatd.hil.rig.broker import Mosquitto, Recorder, broker_fixture
from heatd.hil.rig.daemon import running_stack
from heatd.hil.rig.metered_site import metered_site
from heatd.hil.rig.modbus import SimServer, unit
from heatd.hil.rig.waiting import until
from heatd.runtime import Daemon

broker = broker_fixture()

CONTRACTS = {"heat_purchase": [{"name": "city", "customer": "City heat network",
                                "min_supply_temp_c": 65.0}]}


def meter_rows(db: Path) -> list[dict[str, Any]]:
    """The interval records kept in the file, oldest first (read by a connection of its
    own, as a billing tool would)."""
    if not db.exists():
        return []
    con = sqlite3.connect(db, timeout=10.0)
    try:
        rows = con.execute("SELECT payload FROM pending WHERE stream = 'meter' ORDER BY id")
        return [json.loads(payload) for (payload,) in rows]
    except sqlite3.OperationalError:  # the daemon has not made the table yet
        return []
    finally:
        con.close()


def all_records(rec: Recorder, db: Path) -> list[dict[str, Any]]:
    """The interval records the broker delivered (once each: delivery is at least once,
    a repeat has its id), then those still in the file."""
    received = {}
    for message in rec.on(ENERGY):
        record = json.loads(message.payload)
        received[record.pop("id")] = record
    return [received[k] for k in sorted(received)] + meter_rows(db)


def assert_contiguous(records: list[dict[str, Any]]) -> None:
    """Each interval starts where the one before it ended: none lost, none twice."""
    assert all(b["start"] == a["end"] for a, b in itertools.pairwise(records))


def assert_measured(records: list[dict[str, Any]]) -> None:
    """Each record has its IT energy from the counter or from power, but the first may
    have none: a heatd that starts just before an interval boundary closes that interval
    before the device first answers, and says so (source ``none``, coverage 0)."""
    first, *rest = records
    assert first["it_source"] in ("counter", "power") or (
        first["it_source"] == "none" and first["it_coverage"] == 0.0
        and first["it_kwh"] is None)
    assert all(r["it_source"] in ("counter", "power") for r in rest)


def it_kwh(records: list[dict[str, Any]]) -> float:
    """The IT energy the records add up to (a record with none measured adds nothing)."""
    assert_measured(records)
    return sum(r["it_kwh"] or 0.0 for r in records)


def without_mqtt(path: Path) -> None:
    yaml = YAML(typ="rt")
    tree = yaml.load(path.read_text())
    del tree["mqtt"]
    tree["contracts"] = CONTRACTS
    with path.open("w") as stream:
        yaml.dump(tree, stream)


async def test_a_site_without_mqtt_still_meters_its_heat_into_the_file(tmp_path: Path) -> None:
    """The demo site against the simulator, its mqtt: section removed: heatd runs, meters
    heat and IT energy per interval into SQLite (kept for a heatd that has a broker), and
    keeps its contract ledger."""
    async with running_stack(tmp_path, start_daemon=False) as stack:
        without_mqtt(stack.site_path)
        stack.start_daemon()
        db = tmp_path / "meter.sqlite"

        def heat_metered() -> list[dict[str, Any]] | None:
            rows = meter_rows(db)
            heat = [r for r in rows if r["it_source"] == "counter" and r["heat_kwh"]]
            return rows if len(heat) >= 2 else None

        await stack.until(heat_metered, timeout=60, what="heat metered into the file")
        stack.signal(signal.SIGTERM)
        assert await stack.wait_exit(20) == 0
        log = stack.daemon_log()
        assert "no mqtt section: not publishing" in log
        assert "publishing failed" not in log and "Traceback" not in log
        assert not [t for t in stack.observer.last if t.startswith(stack.base)]
    records = meter_rows(db)
    assert {r["site"] for r in records} == {"demo"}
    assert all(r["end"] - r["start"] == 2000 for r in records)
    assert_contiguous(records)
    assert sum(r["heat_kwh"] or 0.0 for r in records) > 0
    assert verify(db)[1] == []


BASE = "heatd/slow"
ENERGY, EVENTS = f"{BASE}/meter/energy", f"{BASE}/events"


def audits(rec: Recorder, ident: str) -> int:
    """How many audits of the command ``ident`` reached the broker."""
    return sum(json.loads(m.payload).get("id") == ident for m in rec.on(EVENTS))


def audited(rec: Recorder, ident: str) -> bool:
    return audits(rec, ident) > 0


def meter_alarms(rec: Recorder) -> list[str]:
    """The names of the alarms about the meter's file that reached the broker."""
    events = [json.loads(m.payload) for m in rec.on(EVENTS)]
    return [e["name"] for e in events
            if e.get("kind") == "alarm" and e.get("name", "").startswith("meter_file")]


async def test_a_reload_that_changes_only_mqtt_keeps_the_meter_and_its_records_whole(
        tmp_path: Path, broker: Mosquitto) -> None:
    """A broker setting changed by a reload gives a new MQTT link beside the meter that
    runs on: the same meter, no interval cut short or called heatd's downtime, and the
    records go on reaching the broker through the new link (the meter was replaced, its
    open intervals dropped and recorded as downtime)."""
    server = SimServer([unit(1)])
    await server.start()
    await server.set(1, Table.INPUT, 0, [1200, 0, 5000])
    db = tmp_path / "meter.sqlite"
    path = tmp_path / "site.yaml"
    path.write_text(metered_site("slow", port=server.port, mqtt=broker.port, db=db))
    daemon = Daemon(path, load_site(path))
    async with Recorder(broker, ENERGY) as rec:
        task = asyncio.create_task(daemon.run())
        try:
            await until(lambda: daemon.reporting.metering is not None, timeout=15,
                        what="the meter")
            meter, link = daemon.reporting.metering, daemon.reporting.publisher
            await rec.wait(ENERGY, timeout=15)
            path.write_text(path.read_text().replace("reconnect_max: 0.3", "reconnect_max: 0.4"))
            accepted, reason = await daemon.reload()
            assert accepted, reason
            await until(lambda: daemon.reporting.publisher not in (None, link), timeout=15,
                        what="the new link")
            assert daemon.reporting.metering is meter
            sent = len(rec.on(ENERGY))
            await until(lambda: len(rec.on(ENERGY)) >= sent + 2, timeout=15,
                        what="records through the new link")
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 15)
            await server.stop()
    records = all_records(rec, db)
    assert len(records) >= 3
    assert_contiguous(records)
    assert [r for r in records if r["downtime_s"] > 0] == []
    assert_measured(records)


async def test_a_held_lock_on_the_meter_file_stalls_no_cycle_and_loses_no_record(
        tmp_path: Path, broker: Mosquitto) -> None:
    """The daemon in this process against a real Modbus server and broker. While another
    connection holds the meter file's write lock, a command is answered, interval records
    close and wait, and the cycle keeps its pace, with no alarm about the file (a lock
    held for seconds is normal); once the lock goes, every record reaches
    the broker, in order, and the audit has reached it once: kept by the file, or sent
    from memory when the file did not take it within ``SPARE_BUSY_TIMEOUT_S`` (whether
    it went behind a record already waiting for the lock is a matter of timing)."""
    server = SimServer([unit(1)])
    await server.start()
    await server.set(1, Table.INPUT, 0, [1200, 0, 5000])  # 120 kW, counter at 5000 kWh
    db = tmp_path / "meter.sqlite"
    path = tmp_path / "site.yaml"
    path.write_text(metered_site("slow", port=server.port, mqtt=broker.port, db=db))
    daemon = Daemon(path, load_site(path))
    async with Recorder(broker, f"{BASE}/#") as rec:
        task = asyncio.create_task(daemon.run())
        try:
            await rec.wait(ENERGY, timeout=15)
            holder = sqlite3.connect(db, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            try:
                cycles, sent = daemon.stats.cycles, len(rec.on(ENERGY))
                mark = rec.mark()
                await rec.client.publish(f"{BASE}/cmd/mode",
                                         json.dumps({"mode": "auto", "id": "locked"}), qos=1)
                await rec.wait(f"{BASE}/cmd/mode/response", after=mark)
                # 2.5 s of cycles: two or more intervals close while the lock is held
                await until(lambda: daemon.stats.cycles >= cycles + 25, timeout=15,
                            what="cycles while the file is locked")
                # wall time is the subject: a write on the loop would have held a cycle
                # for as long as the lock (or the busy timeout); none started 1 s late
                late = daemon.stats.figures().jitter_max
                assert late is not None and late < 1.0
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            await until(lambda: audited(rec, "locked"), timeout=15, what="the audit")
            await until(lambda: len(rec.on(ENERGY)) >= sent + 2, timeout=15,
                        what="the waiting records")
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 15)
            await server.stop()
    assert audits(rec, "locked") == 1  # neither lost nor sent both ways
    assert meter_alarms(rec) == []  # a lock for seconds is the file's normal life
    records = all_records(rec, db)
    assert len(records) >= sent + 2
    assert_contiguous(records)
    assert_measured(records)


async def _metered_without_broker(tmp_path: Path) -> tuple[SimServer, Path, Path]:
    """A started Modbus server at 120 kW and the site metering it with no mqtt section,
    so the meter's rows stay in its file: (server, site file, meter file)."""
    server = SimServer([unit(1)])
    await server.start()
    await server.set(1, Table.INPUT, 0, [1200, 0, 5000])
    db = tmp_path / "meter.sqlite"
    path = tmp_path / "site.yaml"
    path.write_text(metered_site("slow", port=server.port, db=db))
    return server, path, db



@contextlib.asynccontextmanager
async def _meter_replaced_while_locked(daemon: Daemon, path: Path, db: Path
                                       ) -> AsyncIterator[float]:
    """Once two records are kept, another connection locks the file; an interval closes
    (its write waits for the lock) and a reload changes the meter's interval, so the old
    meter is stopping with its write still waiting when the body runs. Yields when the
    lock was taken; the lock goes when the body ends."""
    await until(lambda: len(meter_rows(db)) >= 2, timeout=15, what="records kept")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        locked_at = time.time()
        await asyncio.sleep(1.5)  # an interval closes; its write waits for the lock
        _longer_interval(path)
        accepted, reason = await daemon.reload()
        assert accepted, reason
        await asyncio.sleep(0.3)  # the old meter is stopping, its write still waiting
        yield locked_at
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _longer_interval(path: Path) -> None:
    """The meter's interval from 1 s to 2 s: a change that replaces the meter."""
    path.write_text(path.read_text().replace("interval: 1,", "interval: 2,"))


async def test_a_stop_during_a_listener_replacement_keeps_every_record(tmp_path: Path) -> None:
    """A reload that changes the meter replaces the listeners; the old meter is stopping,
    its last records waiting for a file another connection holds locked, when heatd is
    told to stop. The stop lets the old meter finish rather than cutting it off: every
    interval closed before the stop is kept once the lock goes, none lost."""
    server, path, db = await _metered_without_broker(tmp_path)
    daemon = Daemon(path, load_site(path))
    task = asyncio.create_task(daemon.run())
    try:
        async with _meter_replaced_while_locked(daemon, path, db) as locked_at:
            daemon.request_stop()
            await asyncio.sleep(1.5)
        await asyncio.wait_for(task, 20)
    finally:
        if not task.done():
            task.cancel()
        await server.stop()
    records = meter_rows(db)
    assert_contiguous(records)
    assert records[-1]["end"] >= locked_at * 1000  # closed while the file was locked
    assert verify(db)[1] == []


async def test_a_second_reload_during_a_replacement_leaves_one_meter(tmp_path: Path) -> None:
    """Two reloads that each change the meter, the second while the first replacement is
    still stopping the old meter (its file locked by another connection): the listeners
    are replaced one after the other, so heatd ends with one meter, never two metering the
    same cycles into the file, and a stop closes every file it opened."""
    server, path, db = await _metered_without_broker(tmp_path)
    before = set(threading.enumerate())  # other tests' stores are not this one's to judge
    daemon = Daemon(path, load_site(path))
    task = asyncio.create_task(daemon.run())
    try:
        await until(lambda: len(meter_rows(db)) >= 2, timeout=15, what="records kept")
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            await asyncio.sleep(1.2)  # an interval closes; its write waits for the lock
            for interval in (2, 3):
                text = path.read_text()
                path.write_text(text.replace(f"interval: {interval - 1},",
                                             f"interval: {interval},"))
                accepted, reason = await daemon.reload()
                assert accepted, reason
                await asyncio.sleep(0.3)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await until(lambda: daemon.reporting.metering is not None, timeout=15,
                    what="the new meter")
        await asyncio.sleep(4.0)  # records of the new meter, 3 s each
        meters = [x for x in daemon.reporting.listeners if type(x).__name__ == "Metering"]
        assert meters == [daemon.reporting.metering]
        daemon.request_stop()
        await asyncio.wait_for(task, 20)
    finally:
        if not task.done():
            task.cancel()
        await server.stop()
    left = [t.name for t in set(threading.enumerate()) - before if t.name == "meter-store"]
    assert left == []
    assert verify(db)[1] == []


async def test_a_restart_recovers_the_energy_that_flowed_while_heatd_was_down(
        tmp_path: Path) -> None:
    """heatd meters a still IT counter, stops; 30 kWh flow while it is down; a new heatd
    on the same file goes on where the records end: the intervals it missed are made from
    the counter's delta (source ``counter``, full coverage, flagged ``downtime`` with
    ``downtime_s``), so the series is contiguous and adds up to the counter's delta."""
    server, path, db = await _metered_without_broker(tmp_path)
    try:
        await _run_for_records(path, db, 3)
        await server.set(1, Table.INPUT, 0, [1200, 0, 5030])  # heatd is down
        await asyncio.sleep(2.5)
        await _run_for_records(path, db, 3)
    finally:
        await server.stop()
    records = meter_rows(db)
    assert_contiguous(records)
    missed = [r for r in records if r["downtime_s"] > 0]
    assert sum(r["downtime_s"] for r in missed) >= 2.5
    assert [r["downtime_s"] for r in missed].count(1.0) >= 2  # whole intervals missed
    for record in missed:
        assert record["it_source"] == "counter" and record["it_coverage"] == 1.0
        assert "downtime" in record["it_flags"]
    assert it_kwh(records) == pytest.approx(30.0)
    assert records[-1]["it_counter_end"] == pytest.approx(5030.0)
    assert verify(db)[1] == []


async def test_a_reload_that_replaces_the_meter_loses_no_counter_energy(
        tmp_path: Path) -> None:
    """A reload that changes the meter's interval replaces it; 30 kWh flow while the old
    meter is stopping (its last write waiting for a file another connection holds
    locked). The new meter goes on from where the old one's records end, so the records
    add up to the counter's delta."""
    server, path, db = await _metered_without_broker(tmp_path)
    daemon = Daemon(path, load_site(path))
    task = asyncio.create_task(daemon.run())
    try:
        async with _meter_replaced_while_locked(daemon, path, db):
            assert daemon.reporting.metering is None
            await server.set(1, Table.INPUT, 0, [1200, 0, 5030])
            await asyncio.sleep(0.5)
        await until(lambda: any(r["end"] - r["start"] == 2000 and r["it_kwh"]
                                for r in meter_rows(db)), timeout=15, what="the new meter")
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 15)
        await server.stop()
    records = meter_rows(db)
    assert it_kwh(records) == pytest.approx(30.0)
    assert verify(db)[1] == []


async def _run_for_records(path: Path, db: Path, count: int) -> None:
    """Run a heatd on ``path`` until it has kept ``count`` more records, then stop it."""
    kept = len(meter_rows(db))
    daemon = Daemon(path, load_site(path))
    task = asyncio.create_task(daemon.run())
    try:
        await until(lambda: len(meter_rows(db)) >= kept + count, timeout=15,
                    what="records kept")
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 15)
