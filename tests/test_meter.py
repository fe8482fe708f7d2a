"""Energy metering: per-interval records from counters or integrated power, with their
coverage; store-and-forward through SQLite and a real broker, nothing lost across a broker
outage or a restart of the store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from heatd.config_loader import parse_site
from heatd.hil.rig.broker import Mosquitto
from heatd.hil.rig.waiting import until
from heatd.meter import EnergyMeter, counter_name, power_name
from heatd.meter_store import AUDIT, METER, DurableOutbox
from heatd.mqtt.command_payloads import CommandResult
from heatd.mqtt.link import MqttLink
from heatd.mqtt.settings import MqttSettings

HEAT_COUNTER, HEAT_POWER = counter_name("heat_kwh"), power_name("heat_kwh")
IT_COUNTER, IT_POWER = counter_name("it_kwh"), power_name("it_kwh")
HP_POWER = power_name("hp_electricity_kwh")


def feed(meter: EnergyMeter, t: float, counters: dict | None = None, **powers: float | None
         ) -> list[dict]:
    counters = counters or {}
    return meter.observe(t, {n: (t, v) for n, v in counters.items()},
                         dict.fromkeys(counters, True),
                         {HEAT_POWER: powers.get("heat"), IT_POWER: powers.get("it"),
                          HP_POWER: powers.get("hp")})


def test_counter_deltas_make_the_record_and_carry_across_intervals() -> None:
    meter = EnergyMeter("s", interval_s=900, counters={HEAT_COUNTER: None})
    records = []
    counter = 1000.0
    for t in range(0, 1801, 10):  # two quarter hours, 360 kW of heat, counter in kWh
        records += feed(meter, t, {HEAT_COUNTER: counter}, heat=360.0)
        counter += 360.0 * 10 / 3600
    first, second = records
    assert (first["start"], first["end"]) == (0, 900_000)
    assert first["heat_kwh"] == pytest.approx(90.0) and first["heat_source"] == "counter"
    assert second["heat_kwh"] == pytest.approx(90.0)  # nothing falls between
    assert first["it_source"] == "none" and first["it_kwh"] is None


def test_a_counter_read_less_often_than_the_interval_is_never_zero_energy() -> None:
    """A 5 s slow poll group and 2 s records: each record gets its share of the counter's
    delta (a counter not re-read since the last record used to count as zero)."""
    meter = EnergyMeter("s", interval_s=2, counters={IT_COUNTER: None})
    records: list[dict] = []
    for t in range(0, 61):
        counters = {IT_COUNTER: 100.0 + 960.0 * t / 3600} if t % 5 == 0 else {}
        records += feed(meter, t, counters, it=960.0)
    kwh = [r["it_kwh"] for r in records]
    assert len(kwh) >= 25 and all(k == pytest.approx(960.0 * 2 / 3600) for k in kwh)


def test_power_is_integrated_with_its_coverage_when_there_is_no_counter() -> None:
    meter = EnergyMeter("s", interval_s=600)
    records = []
    for t in range(0, 601, 1):
        power = None if 100 <= t < 250 else 120.0  # a 150 s hole in the data
        records += feed(meter, t, it=power, hp=30.0)
    record, = records
    assert record["it_source"] == "power"
    assert record["it_coverage"] == pytest.approx((600 - 151) / 600, abs=0.01)
    assert record["it_kwh"] == pytest.approx(120.0 * (600 - 151) / 3600, rel=0.01)
    assert record["hp_electricity_kwh"] == pytest.approx(30.0 * 600 / 3600, rel=0.01)


def test_a_counter_that_went_backwards_falls_back_to_power() -> None:
    meter = EnergyMeter("s", interval_s=100, counters={HEAT_COUNTER: None})
    records = []
    for t in range(0, 101):
        counter = 5000.0 if t < 50 else 3.0  # meter replaced mid-interval
        records += feed(meter, t, {HEAT_COUNTER: counter}, heat=36.0)
    assert records[0]["heat_source"] == "power"
    assert records[0]["heat_kwh"] == pytest.approx(1.0, rel=0.02)


SITE = parse_site("site: {id: m1}\ndevices: {}\n", "site.yaml")


async def test_records_survive_a_broker_outage_and_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "meter.sqlite"
    store = DurableOutbox(db)
    store.append({"start": 0, "end": 900_000, "heat_kwh": 1.0})
    store.close()
    store = DurableOutbox(db)  # heatd restarted: the record is still there
    assert [json.loads(r.payload)["heat_kwh"] for r in store.pending()] == [1.0]

    async with Mosquitto() as broker:
        settings = MqttSettings.model_validate_json(json.dumps(
            {"host": broker.host, "port": broker.port, "reconnect_min": 0.05,
             "reconnect_max": 0.2}), strict=True)

        async def handler(_command: object) -> CommandResult:
            return CommandResult(False, "not here")

        link = MqttLink(settings, SITE, handler)
        received: list[dict] = []
        async with broker.client(identifier="billing") as billing:
            await billing.subscribe("heatd/m1/meter/energy", qos=1)

            async def collect() -> None:
                async for message in billing.messages:
                    received.append(json.loads(message.payload))

            collector = asyncio.create_task(collect())
            await link.start()
            forwarder = asyncio.create_task(store.forward(
                {METER: lambda payload: link.publish_confirmed(link.topics.meter, payload)}))
            try:
                await until(lambda: len(received) == 1)
                assert store.pending() == []
                await broker.kill()
                store.append({"start": 900_000, "end": 1_800_000, "heat_kwh": 2.0})
                store.append({"start": 1_800_000, "end": 2_700_000, "heat_kwh": 3.0})
                await asyncio.sleep(0.5)
                assert len(store.pending()) == 2  # kept while the broker is away
            finally:
                collector.cancel()
        await broker.start()
        async with broker.client(identifier="billing2") as billing:
            await billing.subscribe("heatd/m1/meter/energy", qos=1)
            collector = asyncio.create_task(_collect(billing, received))
            try:
                await until(lambda: len(received) == 3, timeout=15)
            finally:
                collector.cancel()
                forwarder.cancel()
                await link.stop()
        assert [r["heat_kwh"] for r in received] == [1.0, 2.0, 3.0]
        assert [r["id"] for r in received] == sorted({r["id"] for r in received})
        assert store.pending() == []
    store.close()


async def _collect(client, received: list[dict]) -> None:
    async for message in client.messages:
        received.append(json.loads(message.payload))



def test_a_file_written_before_audits_were_kept_still_forwards_its_records(
        tmp_path: Path) -> None:
    db = tmp_path / "meter.sqlite"
    old = sqlite3.connect(db)
    old.execute("CREATE TABLE pending (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " payload TEXT NOT NULL)")
    old.execute("INSERT INTO pending (payload) VALUES (?)", (json.dumps({"heat_kwh": 4.0}),))
    old.commit()
    old.close()
    store = DurableOutbox(db)
    assert [(r.stream, json.loads(r.payload)) for r in store.pending()] == [
        (METER, {"heat_kwh": 4.0})]
    store.close()


async def test_a_backlog_longer_than_one_batch_is_sent_without_a_new_record(
        tmp_path: Path) -> None:
    store = DurableOutbox(tmp_path / "meter.sqlite")
    for n in range(250):
        store.append({"n": n})
    sent: list[int] = []

    async def send(payload: bytes) -> bool:
        sent.append(json.loads(payload)["n"])
        return True

    forwarder = asyncio.create_task(store.forward({METER: send}))
    try:
        await until(lambda: len(sent) == 250)
    finally:
        forwarder.cancel()
    assert sent == list(range(250)) and store.pending() == []
    store.close()


class Locked:
    """Another connection to the meter's file holding its write lock, as the ledger's
    writer does during a transaction, or a backup tool."""

    def __init__(self, db: Path) -> None:
        self.db = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        self.db.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.db.execute("ROLLBACK")
        self.db.close()


async def test_a_held_lock_delays_the_writes_but_not_the_caller_and_loses_nothing(
        tmp_path: Path) -> None:
    """Records kept while another connection holds the file's lock return at once (the
    event loop, and the control cycle on it, go on); they are written in order once the
    lock goes, and a close writes what is still queued."""
    db = tmp_path / "meter.sqlite"
    store = DurableOutbox(db)
    lock = Locked(db)
    ticks = 0

    async def cycle() -> None:  # stands in for the control cycle on the same loop
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    cycling = asyncio.create_task(cycle())
    try:
        for n in range(40):
            store.append({"n": n})
            assert store.keep(AUDIT, json.dumps({"audit": n}).encode())
            await asyncio.sleep(0)
        before = ticks
        await until(lambda: ticks >= before + 20)  # the loop runs while the writes wait
        with pytest.raises(TimeoutError):  # wall time is the subject: still held
            await asyncio.wait_for(asyncio.shield(store.flush()), 0.2)
        lock.release()
        await store.flush()
        rows = store.pending(limit=1000)
        assert [json.loads(r.payload) for r in rows] == [
            x for n in range(40) for x in ({"n": n}, {"audit": n})]
        assert [r.stream for r in rows[:2]] == [METER, AUDIT]

        lock = Locked(db)
        for n in range(40, 60):
            store.append({"n": n})
        releasing = asyncio.get_running_loop().call_later(0.3, lock.release)
        await store.aclose()  # waits for the lock, then writes everything queued
        releasing.cancel()
    finally:
        cycling.cancel()
    store = DurableOutbox(db)
    kept = [json.loads(r.payload) for r in store.pending([METER], limit=1000)]
    assert kept == [{"n": n} for n in range(60)]
    store.close()
    assert not store.keep(AUDIT, b"{}")  # closed: the caller falls back at once


async def test_an_audit_the_file_refuses_goes_to_the_fallback(tmp_path: Path) -> None:
    """A file that stays locked beyond the busy timeout (or a full disk) refuses the
    insert; the audit then goes the bounded in-memory way instead of being lost."""
    db = tmp_path / "meter.sqlite"
    store = DurableOutbox(db, busy_timeout=0.05)
    lock = Locked(db)
    fallen: list[bytes] = []
    try:
        assert store.keep(AUDIT, b'{"id": "c1"}', fallback=fallen.append)
        await until(lambda: fallen == [b'{"id": "c1"}'])
    finally:
        lock.release()
    assert store.pending() == []
    store.close()
