"""The daemon's start and stop when one part fails, in-process against a real Modbus
server, a real broker and a real meter file: each part that started is stopped, the
last started first, and one that fails to stop keeps none after it from stopping (the
link says offline, the meter's file keeps what is queued and closes); a cycle report
that cannot be made stops no cycle; a reload whose new drivers fail to start puts the old
ones back, or stops the daemon with a failure when it cannot."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from heatd.acquisition import Acquisition
from heatd.config_loader import load_site
from heatd.drivers.modbus import Table
from heatd.hil.rig.broker import Mosquitto, broker_fixture, retained
from heatd.hil.rig.logs import heatd_events
from heatd.hil.rig.metered_site import metered_site
from heatd.hil.rig.modbus import SimServer, unit
from heatd.hil.rig.waiting import until
from heatd.runtime import Daemon
from heatd.writer import SetpointWriter

broker = broker_fixture()

STATUS = "heatd/stop/status"
HEARTBEAT = 0


def site(tmp_path: Path, port: int, mqtt: int | None) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(metered_site("stop", port=port, mqtt=mqtt, db=tmp_path / "meter.sqlite",
                                 heartbeat=HEARTBEAT, stop_timeout=0.5))
    return path


def io_tasks() -> list[str]:
    """The drivers' tasks still running: their polls and their Modbus link."""
    return sorted(t.get_name() for t in asyncio.all_tasks()
                  if t.get_name().startswith(("poll ", "modbus link ")))


def meter_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """The meter files' writer threads started since ``before`` and still running (other
    tests' stores are not this one's to judge)."""
    return [t for t in set(threading.enumerate()) - before if t.name == "meter-store"]


async def modbus() -> SimServer:
    server = SimServer([unit(1)])
    await server.start()
    await server.set(1, Table.INPUT, 0, [1200, 0, 5000])  # 120 kW, counter at 5000 kWh
    return server


async def test_a_writer_that_fails_to_stop_keeps_nothing_after_it_running(
        tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> None:
    """Staged with one heatd method made to raise, as no real device can do it (the
    drivers turn every failure of a device into a WriteError the writer handles): the
    writer's heartbeat task dies of a bug, so stopping the writer raises. The stop logs
    it and goes on: the drivers stop, the link says offline, and the meter's file is
    closed with everything queued written (its writer thread would not outlive the
    process, taking queued audits with it)."""
    async def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug in the writer")

    monkeypatch.setattr(SetpointWriter, "_write_one", broken)
    server = await modbus()
    try:
        path = site(tmp_path, server.port, broker.port)
        before = set(threading.enumerate())
        daemon = Daemon(path, load_site(path))
        task = asyncio.create_task(daemon.run())
        await until(lambda: daemon.reporting.publisher is not None
                    and daemon.reporting.publisher.link is not None
                    and daemon.stats.cycles >= 5, timeout=15, what="the daemon running")
        assert daemon.reporting.publisher is not None
        link = daemon.reporting.publisher.link
        assert link is not None
        await asyncio.wait_for(link.wait_connected(), 10)
        assert await retained(broker, STATUS) == b"online"
        with heatd_events() as logged:
            daemon.request_stop()
            assert await asyncio.wait_for(task, 20) == 0
        failed = [x for x in logged if x["event"] == "stopping: a stage failed"]
        assert [x["stage"] for x in failed] == ["stopping the drivers"]
        assert io_tasks() == []
        assert meter_threads(before) == []
        assert await retained(broker, STATUS) == b"offline"
    finally:
        await server.stop()


async def test_a_part_that_fails_to_start_stops_those_started_before_it(
        tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> None:
    """Staged with one heatd method made to raise, as no real component can make it
    (starting the writer only makes its tasks): the listeners and the drivers had
    started. ``run`` raises the error, and nothing it started is left running: no poll,
    no Modbus link, no meter file open, and the link has said offline."""
    def broken(_: SetpointWriter) -> None:
        raise RuntimeError("a bug in the writer")

    monkeypatch.setattr(SetpointWriter, "start", broken)
    server = await modbus()
    try:
        path = site(tmp_path, server.port, broker.port)
        before = set(threading.enumerate())
        daemon = Daemon(path, load_site(path))
        with pytest.raises(RuntimeError, match="a bug in the writer"):
            await asyncio.wait_for(daemon.run(), 20)
        assert io_tasks() == []
        assert meter_threads(before) == []
        assert await retained(broker, STATUS) == b"offline"
    finally:
        await server.stop()


async def test_a_cycle_report_that_cannot_be_made_stops_no_cycle(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Staged with one heatd method made to raise, as no real component can make it:
    building the cycle report fails. Each failure is logged, and the cycles, with the
    heartbeat they write to the device, go on."""
    def broken(*_: object) -> None:
        raise RuntimeError("a bug in the cycle report")

    monkeypatch.setattr(Daemon, "_make_report", broken)
    server = await modbus()
    try:
        path = site(tmp_path, server.port, None)
        daemon = Daemon(path, load_site(path))
        with heatd_events() as logged:
            task = asyncio.create_task(daemon.run())
            await until(lambda: daemon.stats.cycles >= 20 or task.done(), timeout=15,
                        what="20 cycles")
            assert not task.done()
            beats = len(server.writes(1, HEARTBEAT))
            await until(lambda: len(server.writes(1, HEARTBEAT)) >= beats + 5, timeout=10,
                        what="heartbeats written after the failed reports")
            daemon.request_stop()
            assert await asyncio.wait_for(task, 20) == 0
        failures = [x for x in logged if x["event"] == "cycle report failed: not reported"]
        assert len(failures) >= 20
    finally:
        await server.stop()


def edited(path: Path) -> None:
    """The site file changed in a way any reload takes: the device's timeout."""
    path.write_text(path.read_text().replace("timeout: 0.5", "timeout: 0.4"))


async def cycling(path: Path) -> tuple[Daemon, asyncio.Task[int]]:
    """A daemon run in-process on the site at ``path``, once it has made five cycles."""
    daemon = Daemon(path, load_site(path))
    task = asyncio.create_task(daemon.run())
    await until(lambda: daemon.stats.cycles >= 5, timeout=15, what="the daemon running")
    return daemon, task


def failing_start_of(new_only: bool) -> Callable[[Acquisition], Awaitable[None]]:
    """Acquisition.start that raises for the edited site (or, unless ``new_only``, for
    every site), having started the drivers of the first device as a real part-way
    failure would."""
    start = Acquisition.start

    async def broken(self: Acquisition) -> None:
        if new_only and self.site.devices["m"].timeout != 0.4:
            return await start(self)
        await next(iter(self.devices.values())).driver.start()
        raise RuntimeError("a bug in starting the drivers")

    return broken


async def test_a_reload_whose_drivers_fail_to_start_puts_the_old_ones_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Staged with one heatd method made to raise, as no real device can make it (a
    driver's start only makes its tasks): the new site's drivers fail to start part-way
    through a reload. The reload is refused, what the new site started is stopped, and
    the old site runs again: its polls, and the heartbeat it writes to the device."""
    server = await modbus()
    try:
        path = site(tmp_path, server.port, None)
        daemon, task = await cycling(path)
        old_site, old_hash = daemon.site, daemon.config_hash
        monkeypatch.setattr(Acquisition, "start", failing_start_of(new_only=True))
        edited(path)
        accepted, message = await daemon.reload()
        assert not accepted and message.endswith("running the old one again"), message
        assert daemon.site is old_site and daemon.config_hash == old_hash
        assert io_tasks() == [f"modbus link 127.0.0.1:{server.port}", "poll m/default"]
        beats = len(server.writes(1, HEARTBEAT))
        await until(lambda: len(server.writes(1, HEARTBEAT)) >= beats + 5, timeout=10,
                    what="heartbeats written by the old site's drivers")
        monkeypatch.undo()  # the fault is gone: the same file now reloads
        accepted, message = await daemon.reload()
        assert accepted, message
        assert daemon.site.devices["m"].timeout == 0.4
        daemon.request_stop()
        assert await asyncio.wait_for(task, 20) == 0
    finally:
        await server.stop()


async def test_a_reload_that_cannot_put_the_old_drivers_back_stops_with_a_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Staged as above, but the old site's drivers fail to start again too: the daemon
    stops with exit status 1, so systemd (Restart=on-failure) starts it afresh, and it
    leaves no poll or link running."""
    server = await modbus()
    try:
        path = site(tmp_path, server.port, None)
        daemon, task = await cycling(path)
        monkeypatch.setattr(Acquisition, "start", failing_start_of(new_only=False))
        edited(path)
        accepted, message = await daemon.reload()
        assert not accepted and message.endswith("stopping"), message
        assert await asyncio.wait_for(task, 20) == 1
        assert io_tasks() == []
    finally:
        await server.stop()
