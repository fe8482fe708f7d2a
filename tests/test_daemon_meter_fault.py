"""Control does not depend on the meter's file. A file heatd cannot use (not a database,
malformed, a directory, under a file) is reported with its name and SQLite's words and
tried again, never written over; the heartbeat and the cycle run all the while, command
audits take the in-memory path, and once the file can be used metering resumes. A file
replaced or removed while heatd runs stops the meter, not control.

The daemon in this process against a real Modbus server and a real broker; ``heatd run``
and ``heatd check-config`` through the CLI in a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import heatd.meter_health
import heatd.meter_keeper
from heatd.config_loader import load_site
from heatd.drivers.modbus import Table
from heatd.hil.rig.broker import Mosquitto, Recorder, Seen, broker_fixture
from heatd.hil.rig.metered_site import metered_site
from heatd.hil.rig.modbus import SimServer, unit
from heatd.hil.rig.waiting import until
from heatd.runtime import Daemon

broker = broker_fixture()

ROOT = Path(__file__).resolve().parents[1]

BASE = "heatd/mf"
ENERGY, EVENTS, CONTROL = f"{BASE}/meter/energy", f"{BASE}/events", f"{BASE}/control/state"


def garbage(db: Path) -> None:
    db.write_bytes(os.urandom(8192))


def truncated(db: Path) -> None:
    """A sound file cut short, as a full disk or a bad copy leaves it."""
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
    con.commit()
    con.close()
    os.truncate(db, 3000)


def a_bad_page(db: Path) -> None:
    """A sound header over a page of noise: SQLite itself would write into this one."""
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.execute("CREATE INDEX tx ON t (x)")
    con.executemany("INSERT INTO t VALUES (?)", [(f"x{i}" * 50,) for i in range(400)])
    con.commit()
    con.close()
    with db.open("r+b") as fh:
        fh.seek(4096 * 5)
        fh.write(os.urandom(4096))


def a_directory(db: Path) -> None:
    db.mkdir()


FAULTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "garbage": (garbage, "file is not a database"),
    "truncated": (truncated, "database disk image is malformed"),
    "bad page": (a_bad_page, "database disk image is malformed"),
    "directory": (a_directory, "it is a directory"),
}


def snapshot(db: Path) -> bytes | None:
    return db.read_bytes() if db.is_file() else None


def alarms(rec: Recorder, name: str) -> list[dict[str, object]]:
    found = [json.loads(m.payload) for m in rec.on(EVENTS)]
    return [e for e in found if e.get("kind") == "alarm" and e.get("name") == name]


def meter_file(message: Seen) -> object:
    """What the retained control state says of the meter's file (None: nothing wrong)."""
    return json.loads(message.payload).get("meter_file")


def audited(rec: Recorder, ident: str) -> bool:
    return any(json.loads(m.payload).get("id") == ident for m in rec.on(EVENTS))


async def _start(tmp_path: Path, broker: Mosquitto, db: Path) -> tuple[SimServer, Daemon]:
    server = SimServer([unit(1)])
    await server.start()
    await server.set(1, Table.INPUT, 0, [1200, 0, 5000])  # 120 kW, counter at 5000 kWh
    path = tmp_path / "site.yaml"
    path.write_text(metered_site("mf", port=server.port, mqtt=broker.port, db=db,
                                 heartbeat=10))
    return server, Daemon(path, load_site(path))


async def _beating(server: SimServer, daemon: Daemon) -> None:
    """The cycle runs and the heartbeat register keeps changing at the device."""
    cycles, writes = daemon.stats.cycles, len(server.writes(1, 10))
    await until(lambda: daemon.stats.cycles >= cycles + 10
                and len(server.writes(1, 10)) >= writes + 5,
                timeout=15, what="cycles and heartbeats")


async def _command(rec: Recorder, ident: str) -> None:
    """A command is answered and its audit reaches ``events``."""
    await rec.client.publish(f"{BASE}/cmd/mode", json.dumps({"mode": "auto", "id": ident}),
                             qos=1)
    await until(lambda: audited(rec, ident), timeout=15, what=f"the audit of {ident}")


@contextlib.asynccontextmanager
async def _running(daemon: Daemon, server: SimServer) -> AsyncIterator[None]:
    """The daemon runs for the body; then it stops cleanly (exit 0) and so does its
    Modbus server."""
    task = asyncio.create_task(daemon.run())
    try:
        yield
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, 20) == 0
        await server.stop()


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_an_unusable_meter_file_at_start_stops_metering_not_control(
        tmp_path: Path, broker: Mosquitto, fault: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """heatd starts on a meter file it cannot use: the cycle and the heartbeat run, an
    ``alarm`` names the file and SQLite's error (and the retained control state, while it
    lasts), audits go out from memory, and the file is left byte for byte as it was. Once
    the operator moves it away, the file is made anew at the next try and metering
    resumes."""
    monkeypatch.setattr(heatd.meter_keeper, "RETRY_S", 0.5)
    make, error = FAULTS[fault]
    db = tmp_path / "meter.sqlite"
    make(db)
    before = snapshot(db)
    server, daemon = await _start(tmp_path, broker, db)
    async with Recorder(broker, f"{BASE}/#") as rec, _running(daemon, server):
        await until(lambda: alarms(rec, "meter_file_unusable"), timeout=15,
                    what="the meter alarm")
        await _beating(server, daemon)
        await _command(rec, "unmetered")
        await asyncio.sleep(1.5)  # wall time is the subject: three tries, none writes
        assert snapshot(db) == before
        assert daemon.reporting.metering is None and not rec.on(ENERGY)
        [alarm] = alarms(rec, "meter_file_unusable")  # said once, not at every try
        assert alarm["file"] == str(db) and error in str(alarm["error"])
        state = await rec.wait(CONTROL, lambda m: meter_file(m) is not None)
        assert meter_file(state) == {"file": alarm["file"], "error": alarm["error"]}
        if db.is_dir():
            db.rmdir()
        else:
            db.rename(tmp_path / "meter.broken")
        await rec.wait(ENERGY, timeout=15)
        assert alarms(rec, "meter_file_usable")
        mark = rec.mark()
        await rec.wait(CONTROL, lambda m: meter_file(m) is None, after=mark)
        await _beating(server, daemon)
        await _command(rec, "metered")
    if before is not None:
        assert (tmp_path / "meter.broken").read_bytes() == before


async def test_a_meter_file_under_a_file_is_reported(
        tmp_path: Path, broker: Mosquitto) -> None:
    """The meter's folder cannot be made (its parent is a file): control runs, the alarm
    gives the system's reason."""
    (tmp_path / "state").write_text("not a folder")
    db = tmp_path / "state" / "meter.sqlite"
    server, daemon = await _start(tmp_path, broker, db)
    async with Recorder(broker, f"{BASE}/#") as rec, _running(daemon, server):
        await until(lambda: alarms(rec, "meter_file_unusable"), timeout=15,
                    what="the meter alarm")
        await _beating(server, daemon)
    [alarm] = alarms(rec, "meter_file_unusable")
    assert alarm["error"] == f"{tmp_path / 'state'}: Not a directory"


class ReadOnlyFolder:
    """A folder heatd cannot write in, made writable on demand: a read-only tmpfs for
    root (who writes anywhere a permission bit forbids), mode 0555 for anyone else."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mounted = False

    def __enter__(self) -> ReadOnlyFolder:
        self.path.mkdir()
        if os.geteuid() != 0:
            self.path.chmod(0o555)
            return self
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=4m", "tmpfs", str(self.path)],
            capture_output=True, text=True, check=False)
        if mounted.returncode != 0:  # root in a container without CAP_SYS_ADMIN
            pytest.skip("root may write in any folder and may not mount a read-only one "
                        f"here: {mounted.stderr.strip()}")
        self.mounted = True
        return self

    def make_writable(self) -> None:
        if self.mounted:
            subprocess.run(["mount", "-o", "remount,rw", str(self.path)], check=True)
        else:
            self.path.chmod(0o755)

    def __exit__(self, *exc: object) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.path)], check=True)
        else:
            self.path.chmod(0o755)


async def test_a_read_only_folder_made_writable_while_heatd_runs_is_metered_into(
        tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> None:
    """The meter's folder is read-only at the start (SQLite cannot make the file): control
    runs and the alarm says why; made writable, the next try makes the file and metering
    starts."""
    monkeypatch.setattr(heatd.meter_keeper, "RETRY_S", 0.5)
    with ReadOnlyFolder(tmp_path / "state") as read_only:
        folder = read_only.path
        db = folder / "meter.sqlite"
        server, daemon = await _start(tmp_path, broker, db)
        async with Recorder(broker, f"{BASE}/#") as rec, _running(daemon, server):
            await until(lambda: alarms(rec, "meter_file_unusable"), timeout=15,
                        what="the meter alarm")
            await _beating(server, daemon)
            [alarm] = alarms(rec, "meter_file_unusable")
            assert alarm["error"] == f"unable to open database file: cannot write in {folder}"
            await asyncio.to_thread(read_only.make_writable)
            await rec.wait(ENERGY, timeout=15)
            assert alarms(rec, "meter_file_usable") and db.is_file()


@pytest.mark.parametrize("change", ["replaced by garbage", "removed", "overwritten in place"])
async def test_a_meter_file_replaced_while_heatd_runs_stops_metering_not_control(
        tmp_path: Path, broker: Mosquitto, change: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """While heatd meters, the file at the path is swapped for noise, or removed: control
    goes on; the meter stops with an alarm and opens what is at the path now (noise:
    refused and kept; nothing: a new file, metered into). Noise written over the open
    file itself fails the meter's writes (logged, tried again), never a cycle."""
    monkeypatch.setattr(heatd.meter_keeper, "RETRY_S", 0.5)
    db = tmp_path / "meter.sqlite"
    server, daemon = await _start(tmp_path, broker, db)
    async with Recorder(broker, f"{BASE}/#") as rec, _running(daemon, server):
        await rec.wait(ENERGY, timeout=15)
        old = daemon.reporting.metering
        if change == "overwritten in place":
            with db.open("r+b") as fh:
                fh.write(os.urandom(db.stat().st_size))
            await asyncio.sleep(2.5)  # wall time is the subject: intervals close, fail
            await _beating(server, daemon)
            await _command(rec, "after the noise")
            return
        if change == "removed":
            db.unlink()
        else:
            noise = tmp_path / "noise"
            garbage(noise)
            noise.replace(db)
        before = snapshot(db)
        await until(lambda: alarms(rec, "meter_file_unusable"), timeout=15,
                    what="the meter alarm")
        await _beating(server, daemon)
        if change == "removed":
            await until(lambda: daemon.reporting.metering not in (None, old),
                        timeout=15, what="a meter on a new file")
            mark = rec.mark()
            await rec.wait(ENERGY, after=mark, timeout=15)
            assert db.is_file()
        else:
            await _command(rec, "unmetered")
            await asyncio.sleep(1.5)  # wall time is the subject: tries that write nothing
            assert daemon.reporting.metering is None
            assert snapshot(db) == before


class SmallDisk:
    """A 2 MiB file system of its own (a tmpfs: root only), to fill while heatd meters
    into it and to empty again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def __enter__(self) -> SmallDisk:
        self.path.mkdir()
        if os.geteuid() != 0:
            pytest.skip("a file system to fill needs a tmpfs mount, which needs root")
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(self.path)],
            capture_output=True, text=True, check=False)
        if mounted.returncode != 0:
            pytest.skip(f"root may not mount a tmpfs here: {mounted.stderr.strip()}")
        return self

    def fill(self) -> None:
        """Write a file until the system says the disk is full."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        finally:
            os.close(fd)

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", str(self.path)], check=True)


def energy(rec: Recorder) -> list[dict[str, object]]:
    return [json.loads(m.payload) for m in rec.on(ENERGY)]


def stored_energy(db: Path) -> dict[int, dict[str, object]]:
    """The interval records still in the file, by row id."""
    con = sqlite3.connect(db, timeout=10.0)
    try:
        rows = con.execute("SELECT id, payload FROM pending WHERE stream = 'meter'")
        return {row_id: json.loads(payload) for row_id, payload in rows}
    finally:
        con.close()


def assert_whole(rec: Recorder, db: Path) -> None:
    """Every interval record reached the broker once or is still in the file (one the
    broker has whose delete the file refused is still there, to be sent again after a
    restart: at least once, its id tells), and each starts where the one before it
    ended: none lost, none twice."""
    sent: dict[int, dict[str, object]] = {}
    for record in energy(rec):
        row_id = record.pop("id")
        assert isinstance(row_id, int) and row_id not in sent, "a record sent twice"
        sent[row_id] = record
    records = {**stored_energy(db), **sent}
    ordered = [records[k] for k in sorted(records)]
    assert all(b["start"] == a["end"] for a, b in itertools.pairwise(ordered)), ordered


async def test_a_disk_that_fills_while_metering_raises_one_alarm_and_loses_nothing(
        tmp_path: Path, broker: Mosquitto) -> None:
    """The meter's file system fills up while heatd meters into it: one alarm names the
    file and SQLite's error (and the control state carries it) however many records and
    audits the file refuses; control runs, audits go out from memory, records wait in
    memory. Once there is room again, one alarm says the file is written again, and the
    records kept meanwhile reach the broker, none lost, none twice."""
    with SmallDisk(tmp_path / "disk") as disk:
        db = disk.path / "meter.sqlite"
        server, daemon = await _start(tmp_path, broker, db)
        async with Recorder(broker, f"{BASE}/#") as rec, _running(daemon, server):
            await rec.wait(ENERGY, timeout=15)
            disk.fill()
            await until(lambda: alarms(rec, "meter_file_unwritable"), timeout=20,
                        what="the alarm of a full disk")
            sent = len(rec.on(ENERGY))
            await _beating(server, daemon)
            await _command(rec, "on a full disk")  # from memory
            await asyncio.sleep(3)  # wall time is the subject: records closed, not kept
            [alarm] = alarms(rec, "meter_file_unwritable")
            assert alarm["file"] == str(db) and "full" in str(alarm["error"]), alarm
            assert len(rec.on(ENERGY)) == sent  # nothing written, so nothing forwarded
            state = await rec.wait(CONTROL, lambda m: meter_file(m) is not None)
            assert meter_file(state) == {"file": str(db), "error": alarm["error"]}
            disk.filler.unlink()
            await until(lambda: alarms(rec, "meter_file_writable"), timeout=20,
                        what="the file written again")
            await until(lambda: len(rec.on(ENERGY)) >= sent + 4, timeout=15,
                        what="the records kept in memory")
            mark = rec.mark()
            await rec.wait(CONTROL, lambda m: meter_file(m) is None, after=mark)
            await _command(rec, "with room again")
            assert len(alarms(rec, "meter_file_unwritable")) == 1
            assert len(alarms(rec, "meter_file_writable")) == 1
        assert_whole(rec, db)


async def test_a_lock_held_past_its_time_raises_one_alarm(
        tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another connection holds the meter file's write lock and keeps it: the records
    wait (each write gives up after the ledger's busy timeout and is tried again), a
    command's audit goes out from memory or waits behind them, and control runs; once
    the file has been locked for ``LOCK_ALARM_S`` (3 s here, 30 s in heatd), not before,
    one alarm says so. Once the lock goes, one more says the file is written again, and
    the records that waited and the audit reach the broker once each."""
    monkeypatch.setattr(heatd.meter_health, "LOCK_ALARM_S", 3.0)
    db = tmp_path / "meter.sqlite"
    server, daemon = await _start(tmp_path, broker, db)
    async with Recorder(broker, f"{BASE}/#") as rec, _running(daemon, server):
        await rec.wait(ENERGY, timeout=15)
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            locked = asyncio.get_running_loop().time()
            await rec.client.publish(f"{BASE}/cmd/mode",
                                     json.dumps({"mode": "auto", "id": "locked"}), qos=1)
            await until(lambda: alarms(rec, "meter_file_unwritable"), timeout=45,
                        what="the alarm of a lock held for long")
            held = asyncio.get_running_loop().time() - locked
            assert held >= 3.0  # not before the lock had lasted that long
            sent = len(rec.on(ENERGY))
            await _beating(server, daemon)
            [alarm] = alarms(rec, "meter_file_unwritable")
            assert alarm["file"] == str(db) and "locked" in str(alarm["error"]), alarm
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await until(lambda: alarms(rec, "meter_file_writable"), timeout=20,
                    what="the file written again")
        await until(lambda: len(rec.on(ENERGY)) >= sent + 2, timeout=20,
                    what="the records that waited")
        await until(lambda: audited(rec, "locked"), timeout=15, what="the audit")
        assert len(alarms(rec, "meter_file_unwritable")) == 1
        assert sum(json.loads(m.payload).get("id") == "locked" for m in rec.on(EVENTS)) == 1
    assert_whole(rec, db)


def _cli_site(tmp_path: Path, db: Path) -> Path:
    """The demo site with its devices on closed ports and no broker: heatd controls,
    devices offline."""
    text = (ROOT / "config" / "demo-site.yaml").read_text()
    text = text.replace("15020", "1").replace("14840", "2")
    text = text.replace("/tmp/heatd-demo-rs485", str(tmp_path / "nothere"))
    text += f"\nmqtt: {{host: 127.0.0.1, port: 3}}\nmeter: {{interval: 10, database: {db}}}\n"
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def _heatd(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from heatd.cli import main; sys.exit(main())",
            *args]


def test_heatd_run_controls_beside_a_meter_file_that_is_not_a_database(
        tmp_path: Path) -> None:
    """Through the CLI: one error line names the file and the error, heatd runs on until
    told to stop and exits 0, without a traceback, the file as it was."""
    db = tmp_path / "meter.sqlite"
    garbage(db)
    before = db.read_bytes()
    site = _cli_site(tmp_path, db)
    proc = subprocess.Popen(_heatd("run", str(site)), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "meter file unusable" in line:
                break
        for line in proc.stdout:  # cycles go on: a device reported offline after it
            lines.append(line)
            if "device error" in line:
                break
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    text = "".join(lines) + out
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    [line] = [x for x in text.splitlines() if "meter file unusable" in x]
    assert str(db) in line and "file is not a database" in line
    assert db.read_bytes() == before


def _check_config(site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_heatd("check-config", str(site)), cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)


def test_check_config_notes_a_meter_file_heatd_could_not_use(tmp_path: Path) -> None:
    """check-config runs before every start of the unit, so an unusable meter file is a
    note (exit 0: heatd controls without it), read without writing to the file."""
    db = tmp_path / "meter.sqlite"
    truncated(db)
    before = db.read_bytes()
    result = _check_config(_cli_site(tmp_path, db))
    assert result.returncode == 0, result.stderr
    assert (f"meter.database: {db}: database disk image is malformed: heatd would control "
            "without metering") in result.stderr
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meter.sqlite", "site.yaml"]
    db.unlink()
    result = _check_config(_cli_site(tmp_path, db))
    assert result.returncode == 0 and "meter.database" not in result.stderr
    assert not db.exists()
