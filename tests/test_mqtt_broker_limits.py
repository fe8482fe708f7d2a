"""What heatd sends within a broker's limits, against a real mosquitto: a message above
the broker's Maximum Packet Size is held back (the broker would end the session for it),
a broker that ends each session at once is not hammered, and over a slow link (a broker
300 ms away) every lane of messages gets its turn."""

from __future__ import annotations

import asyncio
import json
import logging

import aiomqtt
import pytest
from test_mqtt_link import BASE, SITE, Runtime, settings, started

from heatd.hil.rig.broker import Mosquitto, Recorder, broker_fixture
from heatd.hil.rig.latency import LatencyProxy
from heatd.hil.rig.waiting import until
from heatd.mqtt.link import MqttLink
from heatd.mqtt.session import keep_session, make_client

small_broker = broker_fixture(settings=("max_packet_size 2000",))
broker = broker_fixture()


async def test_a_message_above_the_brokers_packet_size_is_held_back_and_the_rest_goes(
        small_broker: Mosquitto) -> None:
    """The broker announces 2000 bytes: a 5000-byte retained topic and event are not sent
    (counted, the retained one kept), everything else is, on the one session (the broker
    used to drop heatd for it, and heatd reconnected and sent it again, for ever)."""
    link = await started(small_broker)
    try:
        async with Recorder(small_broker, f"{BASE}/#") as rec:
            link.publish(f"{BASE}/big", b"x" * 5000, retain=True)
            link.publish(f"{BASE}/events", b"y" * 5000, kind="event")
            link.publish(f"{BASE}/fits", b"z" * 1500, retain=True)
            link.publish_event("after")
            await rec.wait(f"{BASE}/events", lambda m: b'"after"' in m.payload)
            await rec.wait(f"{BASE}/fits")
            await rec.wait(f"{BASE}/stats", lambda m: json.loads(m.payload)["too_large"] == 2)
            assert not rec.on(f"{BASE}/big")
            assert all(len(m.payload) < 2000 for m in rec.on(f"{BASE}/events"))
    finally:
        await link.stop()
    stats = link.stats
    assert (stats.connects, stats.failures) == (1, 0)
    assert stats.too_large == 2 and stats.dropped_by_kind["event"] == 1


async def test_a_configured_packet_size_holds_back_what_the_broker_did_not_announce(
        broker: Mosquitto) -> None:
    link = await started(broker, max_packet_size=1000)
    try:
        async with Recorder(broker, f"{BASE}/events") as rec:
            link.publish(f"{BASE}/events", b"y" * 1200, kind="event")
            link.publish_event("after")
            await rec.wait(f"{BASE}/events", lambda m: b'"after"' in m.payload)
    finally:
        await link.stop()
    assert len(rec.on(f"{BASE}/events")) == 1
    assert link.stats.too_large == 1 and link.stats.dropped_by_kind["event"] == 1


async def test_a_broker_that_ends_each_session_at_once_sees_the_reconnects_slow_down(
        broker: Mosquitto) -> None:
    """Each session breaks as soon as it starts: the pause before the next grows from
    ``reconnect_min`` (0.02 s) to ``reconnect_max`` (0.64 s), about 8 connects in 2 s, where
    a backoff reset at every connect made one every 0.02 s."""
    connects: list[str | None] = []
    stopping, connected = asyncio.Event(), asyncio.Event()
    config = settings(broker, reconnect_min=0.02, reconnect_max=0.64)

    async def broken(client: aiomqtt.Client) -> None:
        raise aiomqtt.MqttError("the broker ended the session")

    task = asyncio.create_task(keep_session(
        config, lambda: make_client(config, "kicked", None, None, inbox=1), broken,
        stopping=stopping, connected=connected, counted=connects.append, name="test"))
    await asyncio.sleep(2.0)
    stopping.set()
    await asyncio.wait_for(task, 5)
    sessions = connects.count(None)
    assert 3 <= sessions <= 15, sessions
    assert connects.count("the broker ended the session") == sessions


async def test_over_a_slow_link_answers_and_events_are_not_starved(broker: Mosquitto) -> None:
    """A broker 300 ms away while the site changes 60 retained topics a second: a command
    is answered and the site's events arrive (retained changes used to go first, one
    publish at a time, and the answer never went out)."""
    async with LatencyProxy(broker.port, 0.15) as proxy:
        link = MqttLink(settings(broker, port=proxy.port), SITE, Runtime())
        await link.start()

        async def changing() -> None:
            n = 0
            while True:
                n += 1
                for k in range(6):
                    link.publish(f"{BASE}/busy/{k}", json.dumps({"n": n}), retain=True)
                await asyncio.sleep(0.1)

        busy = asyncio.create_task(changing())
        response = f"{BASE}/cmd/mode/response"
        try:
            await asyncio.wait_for(link.wait_connected(), 10)
            async with Recorder(broker, response, f"{BASE}/events",
                                protocol=aiomqtt.ProtocolVersion.V311) as rec:
                await asyncio.sleep(1.0)  # the retained changes pile up
                for n in range(5):
                    link.publish_event("site", n=n)
                await rec.client.publish(f"{BASE}/cmd/mode",
                                         json.dumps({"mode": "auto", "id": "far"}), qos=1)
                answer = await rec.wait(response, lambda m: b'"far"' in m.payload, timeout=20)
                await until(lambda: len([m for m in rec.on(f"{BASE}/events")
                                         if b'"site"' in m.payload]) == 5, timeout=20,
                            what="the site's events")
        finally:
            busy.cancel()
            await link.stop()
    assert json.loads(answer.payload)["accepted"] is True


async def test_a_full_window_of_publishes_logs_no_warning(
        broker: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    """Over a link 300 ms away, 60 retained topics at once keep the outbox's 16 publishes
    awaiting their PUBACK, as designed: all arrive and the MQTT library logs no "pending
    publish calls" warning (it warned above 10, dozens of lines at every start)."""
    caplog.set_level(logging.WARNING, logger="mqtt")
    async with LatencyProxy(broker.port, 0.15) as proxy:
        link = MqttLink(settings(broker, port=proxy.port), SITE, Runtime())
        await link.start()
        try:
            await asyncio.wait_for(link.wait_connected(), 10)
            async with Recorder(broker, f"{BASE}/many/#") as rec:
                for k in range(60):
                    link.publish(f"{BASE}/many/{k}", json.dumps({"k": k}), retain=True)
                await until(lambda: len({m.topic for m in rec.seen}) == 60, timeout=30,
                            what="the 60 topics")
        finally:
            await link.stop()
    pending = [r.getMessage() for r in caplog.records if "pending publish" in r.getMessage()]
    assert pending == []
