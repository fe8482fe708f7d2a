"""Contract records end to end: a 32-bit Wh counter served by a real Modbus server wraps
and is read across its wrap; the records are chained into SQLite, survive a restart,
reach a real broker on meter/records, and the verifier finds a removed or altered one."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from heatd.acquisition import Acquisition
from heatd.billing.hourly import GRACE_S, HOUR_S
from heatd.billing.ledger import GENESIS, RECORDS, Ledger, record_hash, verify
from heatd.billing.service import Billing
from heatd.cli import main as heatd_main
from heatd.config import SiteConfig
from heatd.config_loader import parse_site
from heatd.devices import point_limits
from heatd.drivers.modbus import Table
from heatd.hil.rig.broker import Mosquitto
from heatd.hil.rig.modbus import SimServer, unit
from heatd.hil.rig.waiting import until
from heatd.meter_store import DurableOutbox
from heatd.mqtt.command_payloads import CommandLimits, CommandResult
from heatd.mqtt.discovery import components
from heatd.mqtt.link import MqttLink
from heatd.mqtt.settings import HomeAssistantSettings, MqttSettings
from heatd.mqtt.topics import Topics
from heatd.points import PointImage

T_HOUR = 1_767_229_200.0  # 2026-01-01 01:00 UTC
TOP = 2**32


def record(n: int, contract: str = "city") -> dict:
    start = int((T_HOUR + n * HOUR_S) * 1000)
    return {"contract": contract, "kind": "heat_purchase", "start": start,
            "end": start + 3_600_000, "heat_kwh": float(n), "counter_end": 100.0 + n,
            "flags": []}


def test_records_are_chained_and_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "meter.sqlite"
    ledger = Ledger(db)
    first = ledger.append([record(0), record(1)], send=False)
    ledger.close()
    ledger = Ledger(db)  # heatd restarted
    third, = ledger.append([record(2)], send=False)
    assert [r["seq"] for r in ledger.records()] == [1, 2, 3]
    assert first[0]["prev"] == GENESIS and third["prev"] == first[1]["hash"]
    assert third["hash"] == record_hash(third)
    resume = ledger.resume("city", ["energy"])
    assert resume is not None and resume.end == T_HOUR + 3 * HOUR_S
    assert resume.counters == {"energy": (T_HOUR + 3 * HOUR_S, 102.0)}
    with pytest.raises(sqlite3.DatabaseError, match="immutable"):
        ledger._db.execute("UPDATE records SET payload = '{}' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="immutable"):
        ledger._db.execute("DELETE FROM records WHERE seq = 2")
    ledger.close()
    assert verify(db) == (3, [])


def _tamper(db: Path, sql: str, *args: object) -> None:
    """What someone with the file could do: drop the guard, then edit."""
    raw = sqlite3.connect(db)
    raw.executescript("DROP TRIGGER records_no_update; DROP TRIGGER records_no_delete;")
    raw.execute(sql, args)
    raw.commit()
    raw.close()


def _ledger_of(db: Path, n: int) -> None:
    ledger = Ledger(db)
    ledger.append([record(k) for k in range(n)], send=False)
    ledger.close()


def test_the_verifier_finds_a_removed_record(tmp_path: Path, capsys) -> None:
    db = tmp_path / "meter.sqlite"
    _ledger_of(db, 4)
    _tamper(db, "DELETE FROM records WHERE seq = 2")
    count, problems = verify(db)
    assert count == 3 and [p.seq for p in problems] == [3, 3]
    assert "missing" in str(problems[0]) and "prev" in str(problems[1])
    assert heatd_main(["verify-records", str(db)]) == 2
    assert "chain is broken" in capsys.readouterr().out


def test_the_verifier_finds_an_altered_record(tmp_path: Path, capsys) -> None:
    db = tmp_path / "meter.sqlite"
    _ledger_of(db, 3)
    assert heatd_main(["verify-records", str(db)]) == 0
    assert "3 records, chain intact" in capsys.readouterr().out
    payload = sqlite3.connect(db).execute("SELECT payload FROM records WHERE seq = 2"
                                          ).fetchone()[0]
    _tamper(db, "UPDATE records SET payload = ? WHERE seq = 2",
            payload.replace('"heat_kwh":1.0', '"heat_kwh":0.5'))
    _, problems = verify(db)
    assert [(p.seq, "altered" in p.problem) for p in problems] == [(2, True)]


SITE = """\
site: {{id: w1}}
poll_groups:
  default: {{interval: 0.1}}
devices:
  hm:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {port}
    address_base: 0
    timeout: 0.3
    backoff: {{min: 0.1, max: 0.3}}
    points:
      energy: {{table: holding, address: 0, data_type: uint32, scale: 0.001, unit: kWh,
                wrap: 32}}
      supply: {{table: holding, address: 2, data_type: uint16, scale: 0.1, unit: degC}}
mqtt: {{host: 127.0.0.1, port: {broker}}}
meter: {{database: {db}}}
contracts:
  heat_purchase:
    - name: city
      customer: City heat network
      min_supply_temp_c: 65
      meter: {{energy: hm.energy, supply_temp: hm.supply}}
"""


def _words(raw: int) -> list[int]:
    return [raw >> 16, raw & 0xFFFF]


async def _publish_records(broker: Mosquitto, site: SiteConfig,
                           outbox: DurableOutbox) -> list[dict]:
    """The records the outbox forwards to a real broker, as a subscriber receives them."""
    settings = MqttSettings.model_validate_json(json.dumps(
        {"host": broker.host, "port": broker.port}), strict=True)

    async def refuse(_command: object) -> CommandResult:
        return CommandResult(False, "not here")

    link = MqttLink(settings, site, refuse)
    received: list[dict] = []
    async with broker.client(identifier="billing") as client:
        await client.subscribe("heatd/w1/meter/records", qos=1)

        async def collect() -> None:
            async for message in client.messages:
                received.append(json.loads(message.payload))

        collector = asyncio.create_task(collect())
        await link.start()
        forwarder = asyncio.create_task(outbox.forward(
            {RECORDS: lambda p: link.publish_confirmed(link.topics.records, p)}))
        try:
            await until(lambda: len(received) == 2)
        finally:
            forwarder.cancel()
            collector.cancel()
            await link.stop()
    return received


async def test_a_wrapping_counter_on_a_real_modbus_server_is_billed_and_published(
        tmp_path: Path) -> None:
    db = tmp_path / "meter.sqlite"
    server = SimServer([unit(1)])
    await server.start()
    await server.set(1, Table.HOLDING, 0, [*_words(TOP - 2000), 700])  # 2 kWh below the top
    async with Mosquitto() as broker:
        site = parse_site(SITE.format(port=server.port, broker=broker.port, db=db), "s.yaml")
        outbox = DurableOutbox(db)
        published: list[dict] = []
        billing = Billing(site, str(db), outbox.wake,
                          lambda totals: published.append(json.loads(json.dumps(totals))))
        assert billing.totals == {"city": {"heat_kwh": 0.0}}
        image = PointImage(point_limits(site))
        acquisition = Acquisition(site, image)
        await acquisition.start()
        base = T_HOUR - time.monotonic() - 2.0  # the hour ends 2 s into the test
        jump = 0.0

        async def cycles(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                mono = time.monotonic()
                billing.observe(base + jump + mono, image.snapshot(mono))
                await asyncio.sleep(0.1)

        try:
            await cycles(1.0)
            await server.set(1, Table.HOLDING, 0, _words(TOP - 1000))
            await cycles(1.5)  # past the hour's end
            await server.set(1, Table.HOLDING, 0, _words(500))  # wrapped: +1.5 kWh
            await cycles(1.0)
            await server.set(1, Table.HOLDING, 0, _words(1500))
            await cycles(1.0)
            jump = HOUR_S + GRACE_S  # let the next hour end: no more energy in it
            await cycles(1.0)
        finally:
            await acquisition.stop()
            await server.stop()
        await billing.flush()
        kept = list(billing.ledger.records())
        assert [r["seq"] for r in kept] == [1, 2]
        assert sum(r["heat_kwh"] for r in kept) == pytest.approx(3.5, abs=1e-6)
        assert all("counter_reset" not in r["flags"] for r in kept)
        assert kept[1]["heat_coverage"] == 1.0 and kept[1]["supply_avg_c"] == 70.0
        assert kept[1]["below_contract_s"] == 0.0
        assert published[-1]["city"]["heat_kwh"] == pytest.approx(3.5, abs=1e-6)

        received = await _publish_records(broker, site, outbox)
        assert received == kept  # byte for byte what the ledger holds
        assert outbox.pending() == []
        billing.close()
        restarted = Billing(site, str(db), outbox.wake)  # the running total carries over
        assert restarted.totals["city"]["heat_kwh"] == pytest.approx(3.5, abs=1e-6)
        restarted.close()
        outbox.close()
    assert verify(db) == (2, [])


def test_home_assistant_gets_an_energy_sensor_per_contract_total() -> None:
    site = parse_site(SITE.format(port=1502, broker=1883, db="/tmp/x.sqlite"), "s.yaml")
    cmps = components(site, Topics("heatd/w1"), HomeAssistantSettings(),
                      CommandLimits.from_site(site, max_ttl=3600))
    sensor = cmps["contract_city_heat_kwh"]
    assert sensor["state_topic"] == "heatd/w1/meter/totals"
    assert (sensor["device_class"], sensor["unit_of_measurement"], sensor["state_class"]) == (
        "energy", "kWh", "total_increasing")
    assert sensor["value_template"] == "{{ value_json['city']['heat_kwh'] }}"


def test_a_counter_silent_at_an_hours_end_is_resumed_from_its_last_reading(
        tmp_path: Path) -> None:
    """An hour closed while its counter was silent ends its counter energy at the last
    reading (``counter_end_at``), not at the hour's end: a restart goes on from there, or
    the delta after it would count that reading's energy again."""
    ledger = Ledger(tmp_path / "meter.sqlite")
    last_read = int((T_HOUR + 1800) * 1000)
    ledger.append([record(0), {**record(1), "counter_end_at": last_read}], send=False)
    resume = ledger.resume("city", ["energy"])
    assert resume is not None and resume.counters == {"energy": (T_HOUR + 1800, 101.0)}
    ledger.close()
