"""The PLC heartbeat while an unauthenticated client floods heatd's command topics.

heatd runs as a process against the simulated demo site (real Modbus TCP/RTU, OPC UA)
and a private mosquitto, in real time with a 1 s cycle. For ``--seconds`` a second
client sends ``{}`` on ``cmd/reload`` every 0.2 s and overrides and mode commands as
fast as the broker takes them. The simulator's PLC sees every heartbeat write; the figures
are the heartbeat's worst interval (bound: one cycle plus one request timeout), whether the
PLC fell back to local control, the replies that came back and the availability messages
the flood caused.

    .venv/bin/python bench/bench_flood_heartbeat.py [--seconds 60] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiomqtt

from heatd.config_loader import load_site
from heatd.hil.rig.daemon import running_stack

HEARTBEAT = "plc.heartbeat"
CYCLE = 1.0


async def watch_heartbeat(stack, stop: asyncio.Event) -> list[float]:
    """Times the heartbeat register changed, as the simulated PLC holds it."""
    changes: list[float] = []
    last = stack.sim.outputs()[HEARTBEAT]
    while not stop.is_set():
        now = stack.sim.outputs()[HEARTBEAT]
        if now != last:
            changes.append(time.monotonic())
            last = now
        await asyncio.sleep(0.01)
    return changes


def count_availability(stack) -> list[int]:
    """A counter of the availability messages the observer sees from now on."""
    count = [0]
    feed = stack.observer.feed

    def counting(message: aiomqtt.Message) -> None:
        if message.topic.value.endswith("/availability"):
            count[0] += 1
        feed(message)

    stack.observer.feed = counting
    return count


async def flood(stack, seconds: float) -> dict[str, int]:
    """Reloads every 0.2 s; overrides and mode commands in between, unthrottled."""
    sent = {"reload": 0, "override": 0, "mode": 0}
    base = stack.topic("cmd")
    async with aiomqtt.Client("127.0.0.1", stack.broker.port, identifier="flooder") as client:
        end = time.monotonic() + seconds
        next_reload = 0.0
        while time.monotonic() < end:
            if time.monotonic() >= next_reload:
                await client.publish(f"{base}/reload", b"{}", qos=1)
                sent["reload"] += 1
                next_reload = time.monotonic() + 0.2
            await client.publish(f"{base}/override", json.dumps(
                {"role": "drycooler.fan", "value": 0.9, "ttl": 5}), qos=1)
            await client.publish(f"{base}/mode", b'{"mode": "auto"}', qos=1)
            sent["override"] += 1
            sent["mode"] += 1
            await asyncio.sleep(0.005)
    return sent


async def main(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        async with running_stack(Path(tmp), speed=1.0, cycle_period=CYCLE) as stack:
            last = stack.observer.last
            await stack.until(lambda: last.get(stack.topic("status")) == "online", timeout=60,
                              what="heatd online")
            await asyncio.sleep(5.0)  # every device polled, the heartbeat running
            availability = count_availability(stack)
            stop = asyncio.Event()
            watcher = asyncio.create_task(watch_heartbeat(stack, stop))
            started = time.monotonic()
            sent = await flood(stack, args.seconds)
            await asyncio.sleep(2.0)
            stop.set()
            changes = await watcher
            gaps = [b - a for a, b in zip([started, *changes], changes, strict=False)]
            stats = last.get(stack.topic("stats")) or {}
            return {
                "flood_s": args.seconds,
                "commands_sent": sent,
                "heartbeat_writes": len(changes),
                "heartbeat_worst_interval_s": round(max(gaps, default=float("inf")), 3),
                "bound_s": CYCLE + load_site(stack.site_path).devices["plc"].timeout,
                "plc_fell_back": bool(stack.sim.plant.state.plc_fallback),
                "availability_messages_during_flood": availability[0],
                "link_stats": stats,
                "heatd_running": stack.proc is not None and stack.proc.poll() is None,
            }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
