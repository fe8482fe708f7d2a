"""Audit records of commands through the durable outbox, against a real mosquitto: the
audits of commands that passed the rate limit and the shape check are kept in SQLite
until the broker acknowledged them, so a stop before that loses none; a flood beyond the
rate limit is not written to the file."""

from __future__ import annotations

import asyncio
import json
from functools import partial
from pathlib import Path
from typing import Any

from heatd.config_loader import parse_site
from heatd.hil.rig.broker import Mosquitto, Recorder, broker_fixture
from heatd.hil.rig.waiting import until
from heatd.meter_store import AUDIT, DurableOutbox
from heatd.mqtt.command_payloads import Command, CommandResult, ModeCommand
from heatd.mqtt.link import MqttLink
from heatd.mqtt.settings import MqttSettings

broker = broker_fixture()
SITE = parse_site("site: {id: a1}\ndevices: {}\n", "site.yaml")
BASE = "heatd/a1"
EVENTS = f"{BASE}/events"


async def runtime(command: Command) -> CommandResult:
    """Accepts every command but manual mode."""
    if isinstance(command, ModeCommand) and command.mode == "manual":
        return CommandResult(False, "not at this site")
    return CommandResult(True, "ok")


async def started(b: Mosquitto, outbox: DurableOutbox, **extra: Any) -> MqttLink:
    settings = MqttSettings.model_validate_json(json.dumps(
        {"host": b.host, "port": b.port, "reconnect_min": 0.05, "reconnect_max": 0.3,
         **extra}), strict=True)
    link = MqttLink(settings, SITE, runtime, audit_store=partial(outbox.keep, AUDIT))
    await link.start()
    await asyncio.wait_for(link.wait_connected(), 10)
    return link


def audit_ids(rec: Recorder) -> list[str | None]:
    return [json.loads(m.payload)["id"] for m in rec.on(EVENTS)]


async def command(rec: Recorder, name: str, body: dict[str, Any]) -> None:
    """Send one command and wait for its answer, so audits are kept in a known order."""
    mark = rec.mark()
    await rec.client.publish(f"{BASE}/cmd/{name}", json.dumps(body), qos=1)
    await rec.wait(f"{BASE}/cmd/{name}/response", after=mark)


async def test_audits_kept_at_a_stop_arrive_once_and_in_order_after_a_restart(
        broker: Mosquitto, tmp_path: Path) -> None:
    """No forwarder runs for the first link: its audits stay in the file as they would
    when the broker went away before acknowledging them. The next start sends each of
    them once, in order, with the payload the link made; a command refused by the shape
    guard is audited at once from memory, as before."""
    db = tmp_path / "meter.sqlite"
    outbox = DurableOutbox(db)
    async with Recorder(broker, EVENTS, f"{BASE}/cmd/+/response") as rec:
        link = await started(broker, outbox)
        try:
            await command(rec, "mode", {"mode": "auto", "id": "c1"})  # accepted
            await command(rec, "mode", {"mode": "nope", "id": "c2"})  # refused: validation
            await command(rec, "mode", {"mode": "manual", "id": "c3"})  # refused: handler
            await rec.client.publish(f"{BASE}/cmd/mode", b'{"id": "r", "mode": "safe"}',
                                     qos=1, retain=True)  # ignored
            await rec.client.publish(f"{BASE}/cmd/mode", b"[" * 20)  # refused: shape
            await rec.wait(EVENTS)
            await until(lambda: link.stats.commands == 5)
        finally:
            await link.stop()
        assert audit_ids(rec) == [None]  # only the misshapen one, from memory
        kept = [row.payload for row in outbox.pending()]
        outbox.close()
        assert [json.loads(p)["id"] for p in kept] == ["c1", "c2", "c3", "r"]

        outbox = DurableOutbox(db)  # heatd restarted
        link = await started(broker, outbox)
        forwarder = asyncio.create_task(outbox.forward(
            {AUDIT: partial(link.publish_confirmed, link.topics.events)}))
        try:
            await until(lambda: len(rec.on(EVENTS)) == 5, timeout=10)
            await asyncio.sleep(0.3)  # time for a duplicate to show
        finally:
            forwarder.cancel()
            await link.stop()
    sent = [m.payload for m in rec.on(EVENTS)[1:]]
    assert sent == [p.encode() for p in kept]  # once each, in order, payload as made
    assert [json.loads(p)["accepted"] for p in sent] == [True, False, False, False]
    assert len(outbox.pending([AUDIT], limit=1000)) == 0
    outbox.close()


async def test_a_burst_beyond_the_rate_limit_is_not_written(
        broker: Mosquitto, tmp_path: Path) -> None:
    outbox = DurableOutbox(tmp_path / "meter.sqlite")
    async with Recorder(broker, EVENTS) as rec:
        link = await started(broker, outbox, command_rate=0.01, command_burst=3)
        try:
            for n in range(25):
                await rec.client.publish(f"{BASE}/cmd/mode", json.dumps(
                    {"mode": "auto", "id": f"m{n}"}), qos=1)
            await until(lambda: link.stats.commands == 25)
            await until(lambda: len(rec.on(EVENTS)) == 22)
        finally:
            await link.stop()
    assert link.stats.rate_limited == 22
    # the burst; the 22 beyond went through memory
    assert len(outbox.pending([AUDIT], limit=1000)) == 3
    assert sorted(map(str, audit_ids(rec))) == sorted(f"m{n}" for n in range(3, 25))
    outbox.close()
