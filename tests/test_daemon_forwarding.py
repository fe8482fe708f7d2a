"""Forwarding the meter's file to the broker, in a daemon run in-process against a real
Modbus server, a real broker and a real meter file: a read of the file that fails is
logged and tried again, and it keeps no reload from replacing the listeners."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from test_audit_store import fail_one_read
from test_daemon_stop import modbus, site

from heatd.config_loader import load_site
from heatd.hil.rig.broker import Mosquitto, Recorder, broker_fixture
from heatd.hil.rig.logs import heatd_events
from heatd.hil.rig.waiting import until
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
