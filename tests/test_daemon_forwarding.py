"""Forwarding the meter's file to the broker, in a daemon run in-process against a real
Modbus server, a real broker and a real meter file: a read of the file that fails is
logged and tried again, and it keeps no reload from replacing the listeners; nor does an
old link that fails to stop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from test_audit_store import fail_one_read
from test_daemon_stop import modbus, site

from heatd.config_loader import load_site
from heatd.hil.rig.broker import Mosquitto, Recorder, broker_fixture
from heatd.hil.rig.logs import heatd_events
from heatd.hil.rig.waiting import until
from heatd.mqtt.link import MqttLink
from heatd.publisher import FORWARDER
from heatd.runtime import Daemon

broker = broker_fixture()
ENERGY = "heatd/stop/meter/energy"


async def test_a_reload_after_a_failed_read_of_the_meter_file_starts_new_listeners(
        tmp_path: Path, broker: Mosquitto) -> None:
    """Another connection drops the table the forwarder reads and the forwarder is woken:
    its read fails and is logged. The table is made again, and a reload that changes the
    meter replaces the listeners: the old publisher stops, new ones start, and the new
    meter's records reach the broker; the daemon then stops cleanly."""
    server = await modbus()
    try:
        path = site(tmp_path, server.port, broker.port)
        db = tmp_path / "meter.sqlite"
        daemon = Daemon(path, load_site(path))
        async with Recorder(broker, ENERGY) as rec:
            task = asyncio.create_task(daemon.run())
            try:
                await rec.wait(ENERGY, timeout=15)
                old = daemon.reporting.metering
                assert old is not None
                with heatd_events() as logged:
                    await fail_one_read(db, old.outbox, logged)
                    path.write_text(path.read_text().replace("interval: 1,", "interval: 2,"))
                    accepted, reason = await daemon.reload()
                    assert accepted, reason
                    await until(lambda: daemon.reporting.metering not in (None, old),
                                timeout=15, what="the new meter")
                    mark = rec.mark()
                    record = await rec.wait(ENERGY, after=mark, timeout=15)
                payload = json.loads(record.payload)
                assert payload["end"] - payload["start"] == 2000
            finally:
                daemon.request_stop()
                assert await asyncio.wait_for(task, 20) == 0
    finally:
        await server.stop()


async def test_a_link_that_fails_to_stop_keeps_no_reload_from_replacing_the_listeners(
        tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> None:
    """Staged with one heatd method made to raise, as no real broker can make it (the
    link's stop only ends its own tasks): stopping the old link fails during a reload
    that replaces the listeners. The failure is logged; the old publisher's forwarder
    stops all the same, so two forwarders never send the meter's rows, and the new
    listeners start: the new meter's records reach the broker."""
    stop = MqttLink.stop

    async def broken(self: MqttLink) -> None:
        await stop(self)
        raise RuntimeError("a bug in stopping the link")

    server = await modbus()
    try:
        path = site(tmp_path, server.port, broker.port)
        daemon = Daemon(path, load_site(path))
        async with Recorder(broker, ENERGY) as rec:
            task = asyncio.create_task(daemon.run())
            try:
                await rec.wait(ENERGY, timeout=15)
                assert forwarders() == 1
                monkeypatch.setattr(MqttLink, "stop", broken)
                path.write_text(path.read_text().replace("interval: 1,", "interval: 2,"))
                with heatd_events() as logged:
                    accepted, reason = await daemon.reload()
                    assert accepted, reason
                    mark = rec.mark()
                    record = await rec.wait(ENERGY, after=mark, timeout=15)
                    while json.loads(record.payload)["end"] - json.loads(
                            record.payload)["start"] != 2000:  # the old meter's last ones
                        record = await rec.wait(ENERGY, after=rec.mark(), timeout=15)
                assert any(x["event"] == "stopping the old listeners failed" for x in logged)
                assert forwarders() == 1
            finally:
                monkeypatch.undo()
                daemon.request_stop()
                assert await asyncio.wait_for(task, 20) == 0
        assert forwarders() == 0
    finally:
        await server.stop()


def forwarders() -> int:
    """Meter forwarders running in this process."""
    return sum(1 for t in asyncio.all_tasks() if t.get_name() == FORWARDER and not t.done())
