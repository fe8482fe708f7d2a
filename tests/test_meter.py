"""Energy metering: per-interval records from counters or integrated power, with their
coverage; heatd's own downtime recovered from the counters' delta, never from power;
store-and-forward through SQLite and a real broker, nothing lost across a broker outage or
a restart of the store."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from heatd.config_loader import parse_site
from heatd.hil.rig.broker import Mosquitto
from heatd.hil.rig.waiting import until
from heatd.meter import (
    MAX_RECOVERED,
    EnergyMeter,
    bridged_at_resume,
    counter_name,
    interval_resume,
    power_name,
)
from heatd.meter_store import AUDIT, METER, DurableOutbox, StoredEnd
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


def test_an_interval_that_closes_before_the_first_reading_says_nothing_was_measured() -> None:
    """heatd starts 70 ms before a boundary and its device first answers 30 ms after it:
    the first record says nothing was measured (source ``none``, coverage 0, no energy),
    never zero energy, and the next one goes on from it with the counter."""
    meter = EnergyMeter("s", interval_s=1, counters={IT_COUNTER: None})
    records = feed(meter, 100.93)  # the device has not answered yet
    for step in range(12):
        t = 101.03 + step * 0.1
        records += feed(meter, t, {IT_COUNTER: 5000.0 + step * 0.01}, it=36.0)
    first, second = records[:2]
    assert (first["start"], first["end"], second["start"]) == (100_000, 101_000, 101_000)
    assert (first["it_source"], first["it_coverage"], first["it_kwh"]) == ("none", 0.0, None)
    assert second["it_source"] == "counter" and second["it_coverage"] == 0.97
    assert second["it_kwh"] == pytest.approx(0.097)


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


def test_power_bridging_a_silent_counter_is_not_counted_again_when_it_answers() -> None:
    """The heat meter stops answering for four minutes while the heat-pump power stays
    good: those intervals are bridged from power, and the record the counter's delta
    lands in (late) deducts what power already gave, so the records sum to the delta."""
    meter = EnergyMeter("s", interval_s=100, counters={HEAT_COUNTER: None})
    records: list[dict] = []
    for t in range(0, 1001):
        counter = 1000.0 + 360.0 * t / 3600
        silent = 200 <= t < 600
        records += meter.observe(
            t, {} if silent else {HEAT_COUNTER: (t, counter)}, {HEAT_COUNTER: not silent},
            {HEAT_POWER: 360.0, IT_POWER: None, HP_POWER: None})
    sources = [r["heat_source"] for r in records]
    assert sources[2:5] == ["power"] * 3
    back = records[5]
    assert back["heat_source"] == "counter"
    assert {"late", "corrected"} <= set(back["heat_flags"])
    assert back["heat_kwh"] == pytest.approx(10.0, abs=0.2)
    assert sum(r["heat_kwh"] for r in records) == pytest.approx(360.0 * 1000 / 3600)
    assert all("corrected" not in r["heat_flags"] for r in records[6:])



def silent_counter(meter: EnergyMeter, t0: int, t1: int, silent: tuple[int, int],
                   power: float | None) -> list[dict]:
    """Readings every second from ``t0`` to ``t1``: the heat counter at 360 kW, silent
    over ``silent`` = [from, to); the heat power point at ``power`` throughout."""
    out: list[dict] = []
    for t in range(t0, t1 + 1):
        quiet = silent[0] <= t < silent[1]
        counters = {} if quiet else {HEAT_COUNTER: (t, 1000.0 + 360.0 * t / 3600)}
        out += meter.observe(t, counters, {HEAT_COUNTER: not quiet},
                             {HEAT_POWER: power, IT_POWER: None, HP_POWER: None})
    return out


def restarted(records: list[dict], tmp_path: Path) -> EnergyMeter:
    """A meter started after ``records`` went through the real store (its trigger keeps
    where they end) and were sent and deleted."""
    store = DurableOutbox(tmp_path / "meter.sqlite")
    for record in records:
        store.append(record)
    for row in store.pending():
        store.acknowledge(row.id)
    stored = store.stored_end("s")
    store.close()
    assert stored is not None
    return EnergyMeter("s", 100, {HEAT_COUNTER: None}, interval_resume(*stored),
                       bridged_at_resume(stored.counters))


@pytest.mark.parametrize(("power", "restart_at"), [(None, 650), (360.0, 650), (360.0, 60_000)],
                         ids=["no-power", "bridged", "bridged-one-record"])
def test_a_counter_silent_at_a_stop_is_counted_once_across_the_restart(
        tmp_path: Path, power: float | None, restart_at: int) -> None:
    """The heat meter falls silent at 250 s, mid-interval; heatd stops at 500 s and starts
    again later, when the counter answers. The stored records end where the counter's
    last reading (249 s) and the power bridging the silence (if any) leave them, so the
    restart neither counts the interval's counter share again nor the bridged power."""
    before = silent_counter(EnergyMeter("s", 100, {HEAT_COUNTER: None}), 0, 500,
                            (250, 10**9), power)
    partial = before[2]
    assert partial["heat_source"] == "counter" and partial["heat_coverage"] < 1.0
    assert partial["heat_counter_end_at"] == 249_000
    after = silent_counter(restarted(before, tmp_path), restart_at, restart_at + 300,
                           (0, 0), power)
    records = before + after
    assert contiguous(records)
    assert sum(r["heat_kwh"] or 0.0 for r in records) == pytest.approx(
        360.0 * records[-1]["end"] / 1000 / 3600)
    if power is not None:
        assert before[-1]["heat_bridged_kwh"] == pytest.approx(10.0)  # [300, 400) s
        corrected = [r for r in after if "corrected" in r["heat_flags"]]
        assert len(corrected) == 1 and corrected[0]["heat_bridged_kwh"] == 0.0


def run(meter: EnergyMeter, t0: float, t1: float, heat: Callable[[float], float],
        step: float = 5.0) -> list[dict]:
    """Readings every ``step`` s from ``t0`` to ``t1`` (included): the heat counter
    ``heat(t)``, 36 kW of heat-pump electricity (power only)."""
    records: list[dict] = []
    t = t0
    while t <= t1:
        records += feed(meter, t, {HEAT_COUNTER: heat(t)}, hp=36.0)
        t += step
    return records


def resumed(records: list[dict], interval_s: float, moduli: dict | None = None
            ) -> EnergyMeter:
    """A meter started after ``records`` were kept, resumed from the last one as the store
    keeps it."""
    last = records[-1]
    ends = {"heat_counter_end": (last["end"] / 1000, last["heat_counter_end"])}
    return EnergyMeter("s", interval_s, moduli or {HEAT_COUNTER: None},
                       interval_resume(last["end"] / 1000, ends))


def contiguous(records: list[dict]) -> bool:
    return all(b["start"] == a["end"] for a, b in itertools.pairwise(records))


def rate(t: float) -> float:
    """A heat counter at 360 kW (0.1 kWh/s)."""
    return 1000.0 + 0.1 * t


def test_a_restart_recovers_the_intervals_heatd_missed_from_the_counter() -> None:
    """heatd stops at 205 s and starts again at 555 s; the heat counter ran on. The
    intervals it missed are made from the counter's delta across the gap, flagged, and
    the series adds up to the counter's delta; the power-only heat-pump electricity
    shows the gap as coverage it does not have, no energy invented."""
    before = run(EnergyMeter("s", 100, {HEAT_COUNTER: None}), 0, 205, rate)
    assert [r["end"] for r in before] == [100_000, 200_000]
    assert before[-1]["heat_counter_end"] == pytest.approx(rate(200))
    assert before[-1]["downtime_s"] == 0.0 and before[-1]["heat_flags"] == []
    after = run(resumed(before, 100), 555, 800, rate)
    records = before + after
    assert contiguous(records)
    missed = {r["start"]: r for r in after if r["end"] <= 500_000}
    assert sorted(missed) == [200_000, 300_000, 400_000]
    for record in missed.values():
        assert record["downtime_s"] == 100.0
        assert record["heat_source"] == "counter" and record["heat_coverage"] == 1.0
        assert record["heat_flags"] == ["downtime", "estimated"]
        assert record["heat_kwh"] == pytest.approx(10.0)
        assert record["hp_electricity_kwh"] is None and record["hp_electricity_coverage"] == 0.0
        assert record["hp_electricity_flags"] == ["downtime"]
    restart = next(r for r in after if r["start"] == 500_000)
    assert restart["downtime_s"] == 55.0
    assert restart["heat_flags"] == ["downtime", "estimated"]
    assert restart["hp_electricity_coverage"] == pytest.approx(0.45)  # measured from 555 s only
    assert restart["hp_electricity_kwh"] == pytest.approx(36.0 * 45 / 3600)
    assert after[-1]["downtime_s"] == 0.0 and after[-1]["heat_flags"] == []
    assert sum(r["heat_kwh"] for r in records) == pytest.approx(rate(800) - rate(0))


def test_a_counter_not_read_soon_after_the_restart_loses_no_energy() -> None:
    """The heat meter answers only 145 s after heatd started again: the intervals missed
    close without energy (none was measured for them) and the counter's delta since the
    stored end comes with its first reading, in the interval open then (``late``)."""
    before = run(EnergyMeter("s", 100, {HEAT_COUNTER: None}), 0, 205, rate)
    meter = resumed(before, 100)
    after = [r for t in range(555, 700, 5) for r in feed(meter, t, hp=36.0)]
    assert [r["heat_source"] for r in after] == ["none"] * 4  # 200 s to 600 s
    assert all(r["heat_flags"] == ["downtime"] for r in after)
    after += run(meter, 700, 805, rate)
    assert contiguous(before + after)
    assert after[4]["heat_flags"] == ["estimated", "late"]
    assert sum(r["heat_kwh"] or 0.0 for r in before + after) == pytest.approx(
        rate(800) - rate(0))


def test_a_counter_that_went_backwards_across_the_downtime_is_not_energy() -> None:
    """The heat meter was replaced while heatd was down (5000 kWh, then 3 kWh): the
    intervals missed have no energy and say so, the one heatd started in is flagged
    ``counter_reset``; no negative or invented energy anywhere."""
    before = run(EnergyMeter("s", 100, {HEAT_COUNTER: None}), 0, 205, rate)
    after = run(resumed(before, 100), 555, 800, lambda t: 3.0 + 0.1 * (t - 555))
    assert contiguous(before + after)
    missed = [r for r in after if r["end"] <= 500_000]
    assert len(missed) == 3
    assert all(r["heat_kwh"] is None and r["heat_coverage"] == 0.0 for r in missed)
    assert all(r["heat_flags"] == ["downtime"] for r in missed)
    restart = next(r for r in after if r["start"] == 500_000)
    assert restart["heat_flags"] == ["counter_reset", "downtime"]
    assert restart["heat_source"] != "counter"
    assert after[-1]["heat_kwh"] == pytest.approx(10.0)  # the new counter, measured


def test_a_counter_that_wrapped_across_the_downtime_is_energy() -> None:
    """A 16-bit kWh counter passes its top while heatd is down: the delta is wrap-aware."""
    moduli = {HEAT_COUNTER: 65536.0}
    before = run(EnergyMeter("s", 100, moduli), 0, 205, lambda t: 65500.0 + 0.1 * t)
    after = run(resumed(before, 100, moduli), 555, 800,
                lambda t: (65500.0 + 0.1 * t) % 65536.0)
    missed = [r for r in after if r["end"] <= 500_000]
    assert [r["heat_kwh"] for r in missed] == pytest.approx([10.0] * 3)
    assert sum(r["heat_kwh"] for r in before + after) == pytest.approx(80.0)


def test_a_downtime_longer_than_the_bound_is_one_record() -> None:
    """Down for more than ``MAX_RECOVERED`` intervals: one record spans the downtime up
    to the interval heatd started in (bounded work, no fiction of thousands of equal
    intervals), the series stays contiguous and complete."""
    before = run(EnergyMeter("s", 60, {HEAT_COUNTER: None}), 0, 125, rate)
    start = 120 + 60 * (MAX_RECOVERED + 10) + 30
    after = run(resumed(before, 60), start, start + 60, rate)
    assert len(after) == 2 and contiguous(before + after)
    gap, first = after
    assert (gap["start"], gap["end"]) == (120_000, (start - 30) * 1000)
    assert gap["downtime_s"] == start - 30 - 120
    assert gap["heat_kwh"] == pytest.approx(0.1 * (start - 30 - 120))
    assert gap["heat_flags"] == ["downtime", "estimated"]
    assert gap["hp_electricity_flags"] == ["downtime"]
    assert gap["hp_electricity_kwh"] is None and gap["hp_electricity_coverage"] == 0.0
    assert first["heat_kwh"] == pytest.approx(6.0) and first["downtime_s"] == 30.0
    assert first["heat_flags"] == ["downtime", "estimated"]
    assert sum(r["heat_kwh"] for r in before + after) == pytest.approx(rate(start + 30)
                                                                       - rate(0))


def test_a_clock_behind_the_stored_records_makes_no_interval_twice() -> None:
    """The clock was stepped back while heatd was down: nothing is recorded until it
    passes the stored end again, then the series goes on from there, the energy of the
    downtime in the first record (flagged estimated), none lost and none twice."""
    before = run(EnergyMeter("s", 100, {HEAT_COUNTER: None}), 0, 505, rate)
    assert before[-1]["end"] == 500_000
    counter = before[-1]["heat_counter_end"] + 40.0  # what flowed while heatd was down

    def stepped_back(t: float) -> float:
        return counter + 0.1 * (t - 300)

    after = run(resumed(before, 100), 302, 702, stepped_back)
    assert after[0]["start"] == 500_000 and contiguous(before + after)
    assert after[0]["heat_flags"] == ["downtime", "estimated"]
    assert after[1]["heat_flags"] == []
    assert after[0]["downtime_s"] == 2.0  # the clock passed the end at 502 s
    assert sum(r["heat_kwh"] for r in before + after) == pytest.approx(
        stepped_back(700) - rate(0))


def test_a_changed_interval_resumes_at_its_next_boundary() -> None:
    """Records of 100 s end at 500 s; the interval is now 300 s. Started at 520 s, the
    series goes on at 600 s (the time between is in no record: nothing of it was
    measured per interval), and the counter's energy from 500 s is in its first record,
    flagged estimated; none is lost."""
    before = run(EnergyMeter("s", 100, {HEAT_COUNTER: None}), 0, 505, rate)
    after = run(resumed(before, 300), 520, 1300, rate)
    assert after[0]["start"] == 600_000 and after[0]["downtime_s"] == 0.0
    assert after[0]["heat_flags"] == ["estimated", "late"] and after[1]["heat_flags"] == []
    assert sum(r["heat_kwh"] for r in before + after) == pytest.approx(rate(1200) - rate(0))
    late = run(resumed(before, 300), 1250, 1300, rate)  # started after the new boundary
    assert late[0]["start"] == 600_000 and late[0]["downtime_s"] == 300.0
    assert late[0]["heat_flags"] == ["downtime", "estimated", "late"]


def test_a_first_start_has_no_downtime() -> None:
    """No stored records: the meter starts in the interval heatd started in, and claims
    no downtime before it (nothing is known of it)."""
    records = run(EnergyMeter("s", 100, {HEAT_COUNTER: None}), 250, 505, rate)
    assert records[0]["start"] == 200_000 and records[0]["heat_coverage"] == 0.5
    assert all(r["downtime_s"] == 0.0 and r["heat_flags"] == [] for r in records)


def test_the_store_keeps_where_the_records_end_after_they_were_sent(tmp_path: Path) -> None:
    """Each counter's last known reading and the last record's end outlive the rows (sent
    and deleted) and a reopening of the file; a counter not known in the last record keeps
    the reading of an earlier one."""
    db = tmp_path / "meter.sqlite"
    store = DurableOutbox(db)
    assert store.stored_end("m1") is None
    store.append({"site": "m1", "start": 0, "end": 900_000, "heat_counter_end": 12.5,
                  "it_counter_end": 7.0})
    store.append({"site": "m1", "start": 900_000, "end": 1_800_000,
                  "heat_counter_end": None, "it_counter_end": 9.0, "it_counter_end_at": 1_750_000,
                  "heat_bridged_kwh": 4.5})
    store.append({"site": "other", "start": 0, "end": 60_000, "heat_counter_end": 1.0})
    for row in store.pending():
        store.acknowledge(row.id)
    assert store.pending() == []
    store.close()
    store = DurableOutbox(db)
    assert store.stored_end("m1") == StoredEnd(
        1800.0, {"heat_counter_end": (900.0, 12.5), "it_counter_end": (1750.0, 9.0),
                 "heat_bridged_kwh": (1800.0, 4.5)})
    store.close()


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


async def test_a_row_whose_delete_fails_is_not_sent_again(tmp_path: Path) -> None:
    """The broker has two rows, but the file refuses their deletes (another connection
    took its lock as they went out): forwarding does not send them again and again while
    the file refuses, and deletes them at a later try once it takes writes."""
    db = tmp_path / "meter.sqlite"
    store = DurableOutbox(db, busy_timeout=0.05)
    store.append({"n": 1})
    store.append({"n": 2})
    await store.flush()
    sent: list[int] = []
    locks: list[Locked] = []

    async def send(payload: bytes) -> bool:
        sent.append(json.loads(payload)["n"])
        if not locks:
            locks.append(Locked(db))
        return True

    forwarding = asyncio.create_task(store.forward({METER: send}))
    try:
        await until(lambda: len(sent) >= 2)
        await asyncio.sleep(0.5)  # wall time is the subject: ten times the busy timeout
        assert sent == [1, 2]
        locks[0].release()
        store.wake()  # as the next record kept would
        await until(lambda: store.pending() == [])
        assert sent == [1, 2]
    finally:
        forwarding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await forwarding
        store.close()
