"""The site's own messages under a command flood: how late they reach a subscriber, and
how many are lost, beside the same run without a flood, against a private mosquitto.

The link runs in this process and publishes a message every ``--tick`` seconds through a
queue of ``--queue``; another process floods ``cmd/mode`` and ``cmd/x1`` as fast as one
paho client publishes (about 20,000 commands a second here); a third subscribes to the
site's messages and measures each one's delay from the time it carries. Printed per run:
messages sent and lost, delay median / 95th percentile / max, the link's session
failures; then the flood's delays as a ratio of the quiet run's.

    .venv/bin/python bench/bench_flood_site_messages.py [--seconds 20] [--tick 0.2]
        [--queue 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

import structlog

from heatd.config_loader import parse_site
from heatd.hil.rig.broker import Mosquitto
from heatd.hil.rig.flood import flood
from heatd.mqtt.command_payloads import Command, CommandResult
from heatd.mqtt.link import MqttLink
from heatd.mqtt.settings import MqttSettings

SITE = parse_site("site: {id: sm}\ndevices: {}\n", "sm.yaml")
BASE = "heatd/sm"
TOPIC = f"{BASE}/events"
SUBSCRIBER = """
import json, sys, time
import paho.mqtt.client as mqtt
port, topic, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
seen = []
def on_message(client, userdata, message):
    body = json.loads(message.payload)
    if "n" in body:
        seen.append((body["n"], time.time() - body["t"]))
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
client.on_message = on_message
client.connect("127.0.0.1", port)
client.subscribe(topic, qos=1)
client.loop_start()
time.sleep(seconds)
client.loop_stop()
print(json.dumps(seen))
"""


async def accept(command: Command) -> CommandResult:
    return CommandResult(True, "ok")


async def run(seconds: float, tick: float, queue: int, flooded: bool) -> dict[str, Any]:
    async with Mosquitto() as broker:
        settings = MqttSettings.model_validate_json(json.dumps(
            {"host": broker.host, "port": broker.port, "queue_size": queue}), strict=True)
        link = MqttLink(settings, SITE, accept)
        await link.start()
        await asyncio.wait_for(link.wait_connected(), 10)
        subscriber = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SUBSCRIBER, str(broker.port), TOPIC, str(seconds + 6),
            stdout=asyncio.subprocess.PIPE)
        await asyncio.sleep(1.0)
        sent = 0

        async def site_messages() -> None:
            nonlocal sent
            while True:
                link.publish(TOPIC, json.dumps({"n": sent, "t": time.time()}), kind="event")
                sent += 1
                await asyncio.sleep(tick)

        ticking = asyncio.create_task(site_messages())
        commands = 0
        if flooded:
            commands = await flood(broker.port, seconds, BASE)
        else:
            await asyncio.sleep(seconds)
        ticking.cancel()
        seen = json.loads((await subscriber.communicate())[0])
        await link.stop()
    delays = sorted(d for _, d in seen)
    return {"flood": flooded, "commands": commands, "sent": sent,
            "lost": sent - len({n for n, _ in seen}),
            "p50_s": statistics.median(delays), "p95_s": delays[int(len(delays) * 0.95)],
            "max_s": delays[-1], "failures": link.stats.failures,
            "command_failures": link.stats.command_failures}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tick", type=float, default=0.2)
    parser.add_argument("--queue", type=int, default=50)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    quiet = await run(args.seconds, args.tick, args.queue, flooded=False)
    flooding = await run(args.seconds, args.tick, args.queue, flooded=True)
    for row in (quiet, flooding):
        print(f"{'flood' if row['flood'] else 'quiet'}: {row['commands']} commands; site "
              f"messages {row['sent']}, lost {row['lost']}; delay p50 {row['p50_s']:.4f} s, "
              f"p95 {row['p95_s']:.4f} s, max {row['max_s']:.4f} s; session failures "
              f"{row['failures']} + {row['command_failures']} (commands)")
    print(f"flood/quiet: p95 {flooding['p95_s'] / quiet['p95_s']:.1f}x, "
          f"max {flooding['max_s'] / quiet['max_s']:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
