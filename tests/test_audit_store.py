"""Audit records of commands through the durable outbox, against a real mosquitto: the
audits of commands that passed the rate limit and the shape check are kept in SQLite
until the broker acknowledged them, so a stop before that loses none; a flood beyond the
rate limit is not written to the file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

from heatd.config import SiteConfig
from heatd.config_loader import parse_site
from heatd.hil.rig.broker import Mosquitto, Recorder, broker_fixture
from heatd.hil.rig.logs import heatd_events
from heatd.hil.rig.waiting import until
from heatd.meter_store import AUDIT, DurableOutbox
from heatd.metering import Metering
from heatd.mqtt.command_payloads import Command, CommandHandler, CommandResult, ModeCommand
from heatd.mqtt.link import MqttLink
from heatd.mqtt.settings import MqttSettings
from heatd.publisher import Publisher

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


METERED = """\
site: {{id: a1}}
devices: {{}}
mqtt: {{host: 127.0.0.1, port: {port}, reconnect_min: 0.05, reconnect_max: 0.3}}
meter: {{interval: 60, database: {db}}}
"""


class Host:
    """What the publisher reads of the daemon: a site without devices."""

    def __init__(self, site: SiteConfig) -> None:
        self.site = site
        self.config_hash = "0123456789abcdef"

    def online(self, device: str) -> bool:
        return False

    def last_error(self, device: str) -> str | None:
        return None


async def metered_publisher(site: SiteConfig, handler: CommandHandler
                            ) -> tuple[Metering, Publisher]:
    """The site's meter and a publisher that keeps its audits there, connected."""
    assert site.meter is not None
    metering = Metering(site, site.meter)
    metering.start()
    publisher = Publisher(Host(site), handler, metering)
    await publisher.start()
    assert publisher.link is not None
    await asyncio.wait_for(publisher.link.wait_connected(), 10)
    return metering, publisher


def refuse_audits(db: Path) -> None:
    """The file takes meter records but refuses every audit, as a full disk would."""
    DurableOutbox(db).close()  # the table, as heatd makes it
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("CREATE TRIGGER refuse_audits BEFORE INSERT ON pending"
                " WHEN NEW.stream = 'audit'"
                " BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END")
    con.close()


async def test_an_audit_the_file_refuses_while_the_link_stops_goes_out_from_memory(
        broker: Mosquitto, tmp_path: Path) -> None:
    """A command still being carried out when the publisher stops is answered through the
    stopping link; when the file then refuses its audit (disk full), the audit takes the
    link's own queue, as it does while the link runs, and reaches the broker before the
    link says offline."""
    db = tmp_path / "meter.sqlite"
    refuse_audits(db)
    site = parse_site(METERED.format(port=broker.port, db=db), "site.yaml")
    assert site.meter is not None
    running, release = asyncio.Event(), asyncio.Event()

    async def slow(command: Command) -> CommandResult:
        running.set()
        await release.wait()
        return CommandResult(True, "ok")

    metering, publisher = await metered_publisher(site, slow)
    async with Recorder(broker, EVENTS, f"{BASE}/cmd/+/response") as rec:
        await rec.client.publish(f"{BASE}/cmd/mode", json.dumps({"mode": "auto", "id": "w"}),
                                 qos=1)
        await asyncio.wait_for(running.wait(), 10)
        stopping = asyncio.create_task(publisher.stop())
        await asyncio.sleep(0.2)  # the stop waits for the command in progress
        release.set()
        await asyncio.wait_for(stopping, 15)
        await metering.stop()
        await rec.wait(f"{BASE}/cmd/mode/response")
        await until(lambda: audited(rec, "w"), timeout=5, what="the audit from memory")
    store = DurableOutbox(db)
    try:
        assert not list(store.pending([AUDIT]))
    finally:
        store.close()


async def test_audits_behind_another_connections_lock_go_out_before_the_link_stops(
        broker: Mosquitto, tmp_path: Path) -> None:
    """Another connection holds the file's lock (a backup, an operator's sqlite3 session)
    when three commands come and heatd stops: their audits, queued behind a write that
    waits out the lock, are handed back and go out through the stopping link, and the
    stop does not wait for the lock (each audit waited 30 s, then found the link gone)."""
    db = tmp_path / "meter.sqlite"
    site = parse_site(METERED.format(port=broker.port, db=db), "site.yaml")
    assert site.meter is not None
    metering, publisher = await metered_publisher(site, runtime)
    async with Recorder(broker, EVENTS, f"{BASE}/cmd/+/response") as rec:
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            metering.outbox.acknowledge(12345)  # a write ahead of the audits, held up
            for n in range(3):
                await command(rec, "mode", {"mode": "auto", "id": f"s{n}"})
            await asyncio.wait_for(publisher.stop(), 10)
            await until(lambda: all(audited(rec, f"s{n}") for n in range(3)), timeout=5,
                        what="the three audits")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await metering.stop()


async def test_an_audit_waits_a_moment_for_a_held_lock_then_goes_to_its_fallback(
        tmp_path: Path) -> None:
    """An audit has somewhere else to go (its link sends it from memory): it waits for
    another connection's lock about a second, not the 30 s a meter record waits."""
    db = tmp_path / "meter.sqlite"
    store = DurableOutbox(db)
    handed: list[bytes] = []
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert store.keep(AUDIT, b'{"id": "a"}', fallback=handed.append)
        await until(lambda: handed == [b'{"id": "a"}'], timeout=10, what="the fallback")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()
    check = DurableOutbox(db)
    try:
        assert not list(check.pending([AUDIT]))
    finally:
        check.close()


async def fail_one_read(db: Path, outbox: DurableOutbox,
                        logged: list[dict[str, Any]]) -> None:
    """Another connection drops the table the forwarder reads and the forwarder is woken;
    once its failed read is logged, the table is made again as heatd makes it."""
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("DROP TABLE pending")
    con.close()
    outbox.wake()
    await until(lambda: any(x["event"] == "forwarding failed: trying again" for x in logged),
                timeout=5, what="the failed read")
    DurableOutbox(db).close()


def audited(rec: Recorder, ident: str) -> bool:
    return any(json.loads(m.payload).get("id") == ident for m in rec.on(EVENTS))


async def test_forwarding_goes_on_after_the_file_could_not_be_read(
        broker: Mosquitto, tmp_path: Path) -> None:
    """Another connection drops the table the forwarder reads, and the forwarder is woken
    (as the ledger wakes it): its read fails, is logged, and is tried again. Once the
    table is back, an audit kept in it reaches the broker, and the publisher stops, its
    forwarder with it, without raising."""
    db = tmp_path / "meter.sqlite"
    site = parse_site(METERED.format(port=broker.port, db=db), "site.yaml")
    assert site.meter is not None
    metering = Metering(site, site.meter)
    metering.start()
    publisher = Publisher(Host(site), runtime, metering)
    async with Recorder(broker, EVENTS) as rec:
        await publisher.start()
        try:
            assert publisher.link is not None
            await asyncio.wait_for(publisher.link.wait_connected(), 10)
            with heatd_events() as logged:
                await fail_one_read(db, metering.outbox, logged)
                metering.outbox.keep(AUDIT, json.dumps({"id": "after"}).encode())
                await until(lambda: audited(rec, "after"), timeout=15, what="the audit")
            assert any(x["event"] == "forwarding again" for x in logged)
        finally:
            await asyncio.wait_for(publisher.stop(), 15)
            await metering.stop()
    store = DurableOutbox(db)
    try:
        assert not store.pending([AUDIT])
    finally:
        store.close()
