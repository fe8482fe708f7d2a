"""A command flood against a real mosquitto: heatd sheds what goes beyond the rate limit
without building its answers, and reads commands on a session of its own, so the site's
own messages go out as they are made (on a shared session their acknowledgements queued
behind the flood: the site's queue overflowed within seconds and the session timed out).

The flood comes from another process, as fast as one paho client publishes, for a few
seconds; nothing here is judged on speed, only on what arrived and what the link counted."""

from __future__ import annotations

import asyncio
import json

from test_mqtt_link import BASE, started

from heatd.hil.rig.broker import Mosquitto, Recorder, broker_fixture
from heatd.hil.rig.flood import flood
from heatd.hil.rig.waiting import until

FLOOD_S = 4.0


broker = broker_fixture()


async def test_a_command_flood_is_shed_and_the_sites_messages_all_go_out(
        broker: Mosquitto) -> None:
    """While the flood lasts, the site publishes a message every 50 ms through a queue of
    20: every one reaches a subscriber (a shared session lost about 90 of them in 4 s),
    and neither session breaks."""
    link = await started(broker, queue_size=20)
    published = 0

    async def site_messages() -> None:
        nonlocal published
        while True:
            link.publish(f"{BASE}/events", json.dumps({"n": published}), kind="event")
            published += 1
            await asyncio.sleep(0.05)

    try:
        async with Recorder(broker, f"{BASE}/events") as events:
            ticking = asyncio.create_task(site_messages())
            sent = await flood(broker.port, FLOOD_S, BASE)
            ticking.cancel()

            def site_numbers() -> set[int]:
                return {json.loads(m.payload)["n"] for m in events.seen
                        if "n" in json.loads(m.payload)}

            await until(lambda: len(site_numbers()) >= published, timeout=15,
                        what="every site message")
        async with Recorder(broker, f"{BASE}/cmd/mode/response") as rec:
            n = 0

            def answered() -> bool:
                return any(json.loads(m.payload).get("accepted") for m in rec.seen)

            while not answered():  # the mode bucket refills: a later command is carried out
                n += 1
                await rec.client.publish(f"{BASE}/cmd/mode", json.dumps(
                    {"mode": "auto", "id": f"after{n}"}), qos=1)
                await asyncio.sleep(0.2)
    finally:
        await link.stop()
    stats = link.stats
    print(f"\nflood: {sent} commands sent in {FLOOD_S:g} s; read "
          f"{stats.commands + stats.inbox_dropped} (inbox_dropped {stats.inbox_dropped}), "
          f"rate_limited {stats.rate_limited}, dropped {stats.dropped_by_kind}; "
          f"site messages {published}; connects {stats.connects}+{stats.command_connects}, "
          f"failures {stats.failures}+{stats.command_failures}")
    assert sent > 0
    assert stats.rate_limited > stats.commands // 2  # the flood went beyond the limit...
    assert stats.dropped_by_kind["reply"] > 0  # ...and its answers were shed
    assert stats.dropped_by_kind["event"] == 0 and published > 20
    assert (stats.connects, stats.failures, stats.last_error) == (1, 0, None)
    assert (stats.command_connects, stats.command_failures) == (1, 0)
