"""MQTT throughput: events per second heatd's link delivers, against a bare aiomqtt client
publishing the same payloads, through one private mosquitto in the same run.

Both publish ``--messages`` QoS 1 events on one topic and a subscriber counts them as
they arrive: heatd through ``MqttLink.publish_event`` (its queue, JSON and bookkeeping),
the baseline with ``await client.publish(...)`` in a loop, as a minimal program would.
Rounds alternate, so both see the same machine state; the median round counts.

    .venv/bin/python bench/bench_mqtt.py [--messages 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import uvloop

from heatd.config_loader import parse_site
from heatd.hil.rig.broker import Mosquitto
from heatd.mqtt.command_payloads import Command, CommandResult
from heatd.mqtt.link import MqttLink
from heatd.mqtt.payload import dumps, epoch_ms
from heatd.mqtt.settings import MqttSettings

SITE = parse_site("""
site: {id: mqttbench}
devices:
  loop:
    protocol: modbus_tcp
    host: 127.0.0.1
    address_base: 0
    points:
      temp: {table: holding, address: 0, data_type: int16}
""", "mqttbench.yaml")
EVENTS = "heatd/mqttbench/events"
BARE = "bare/events"


async def refuse(command: Command) -> CommandResult:
    return CommandResult(False, "benchmark")


class Counter:
    """A subscriber that notes when the n-th message on a topic arrived."""

    def __init__(self, broker: Mosquitto) -> None:
        self.client = broker.client(identifier="counter")
        self.counts: dict[str, int] = {}
        self.done = asyncio.Event()
        self.topic, self.wanted = "", 0

    async def __aenter__(self) -> Counter:
        await self.client.__aenter__()
        for topic in (EVENTS, BARE):
            await self.client.subscribe(topic, qos=1)
        self._task = asyncio.create_task(self._count())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        await self.client.__aexit__(None, None, None)

    def expect(self, topic: str, wanted: int) -> None:
        self.topic, self.wanted = topic, wanted
        self.counts[topic] = 0
        self.done.clear()

    async def _count(self) -> None:
        async for message in self.client.messages:
            topic = message.topic.value
            self.counts[topic] = self.counts.get(topic, 0) + 1
            if topic == self.topic and self.counts[topic] >= self.wanted:
                self.done.set()


async def heatd_round(broker: Mosquitto, counter: Counter, messages: int) -> float:
    settings = MqttSettings.model_validate({"host": broker.host, "port": broker.port,
                                            "queue_size": messages})
    link = MqttLink(settings, SITE, refuse)
    await link.start()
    await link.wait_connected()
    counter.expect(EVENTS, messages)
    started = time.perf_counter()
    for seq in range(messages):
        link.publish_event("bench", seq=seq)
    await asyncio.wait_for(counter.done.wait(), 120)
    elapsed = time.perf_counter() - started
    await link.stop()
    return messages / elapsed


async def bare_round(broker: Mosquitto, counter: Counter, messages: int) -> float:
    async with broker.client(identifier="bare") as client:
        counter.expect(BARE, messages)
        started = time.perf_counter()
        for seq in range(messages):
            payload = dumps({"ts": epoch_ms(time.time()), "kind": "bench", "seq": seq})
            await client.publish(BARE, payload, qos=1)
        await asyncio.wait_for(counter.done.wait(), 120)
        return messages / (time.perf_counter() - started)


async def measure(messages: int = 5000, rounds: int = 3) -> dict[str, float]:
    """Median messages per second of heatd's link and of the bare client."""
    heatd, bare = [], []
    async with Mosquitto() as broker, Counter(broker) as counter:
        for _ in range(rounds):
            heatd.append(await heatd_round(broker, counter, messages))
            bare.append(await bare_round(broker, counter, messages))
    return {"heatd_msg_s": statistics.median(heatd), "bare_msg_s": statistics.median(bare),
            "messages": messages, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    figures = uvloop.run(measure(args.messages, args.rounds))
    print(f"[MQTT: {args.messages} QoS 1 events, median of {args.rounds} rounds]")
    print(f"  heatd link   {figures['heatd_msg_s']:8.0f} msg/s")
    print(f"  bare aiomqtt {figures['bare_msg_s']:8.0f} msg/s")
    print(f"  ratio        {figures['heatd_msg_s'] / figures['bare_msg_s']:8.2f}")


if __name__ == "__main__":
    main()
