"""The MQTT link under a command flood: reloads and overrides as fast as the broker takes
them, against a private mosquitto.

The link runs in this process with a handler that takes 50 ms over a reload; a second
process floods ``cmd/override`` (and ``cmd/mode``) without pause and ``cmd/reload`` every
``--reload-every`` seconds for ``--seconds``, and counts the replies and audit events it
receives. Printed: what was sent, what came back, what the link counted as lost
(``dropped_by_kind``, ``inbox_dropped``) or turned away (rate limited, busy, merged), how
many reloads ran, and how late this process's event loop woke up meanwhile (what a
control cycle sharing the loop would feel), with CPU time and RSS.

    .venv/bin/python bench/bench_command_flood.py [--seconds 60] [--rate 10] [--burst 20]
        [--reload-every 0.05] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
import structlog

from heatd.config_loader import parse_site
from heatd.hil.rig.broker import Mosquitto
from heatd.hil.rig.waiting import until
from heatd.mqtt.command_payloads import Command, CommandResult, ReloadCommand
from heatd.mqtt.link import MqttLink
from heatd.mqtt.settings import MqttSettings

SITE = parse_site("""
site: {id: flood, name: Flood bench}
devices:
  loop:
    protocol: opcua
    endpoint: opc.tcp://127.0.0.1:4840
    points:
      valve: {node_id: "ns=2;s=Valve", data_type: float64, unit: "%", writable: true,
              write_min: 0, write_max: 100}
roles:
  valve.recovery: loop.valve
""", "flood.yaml")
BASE = "heatd/flood"
NO_DELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
QUIET_S = 2.0
"""The flooder stops listening once nothing has arrived for this long."""
QUIET_WAIT_S = 300.0
"""Replies still arriving after this long: the bench fails."""
BROKER_DROPPED = "$SYS/broker/publish/messages/dropped"


class Broker(Mosquitto):
    """The test broker, with its counters published every second."""

    def _config(self) -> Path:
        conf = super()._config()
        with conf.open("a") as out:
            out.write("sys_interval 1\n")
        return conf


async def broker_dropped(broker: Mosquitto) -> int:
    """Messages the broker itself dropped (queues of slow clients full), all clients."""
    async with broker.client() as client:
        await client.subscribe(BROKER_DROPPED)
        async for message in client.messages:
            return int(message.payload)  # type: ignore[arg-type]
    return -1


class Handler:
    """Stands in for the runtime: a reload takes 50 ms, anything else is immediate."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    async def __call__(self, command: Command) -> CommandResult:
        self.calls[command.name] = self.calls.get(command.name, 0) + 1
        if isinstance(command, ReloadCommand):
            await asyncio.sleep(0.05)
        return CommandResult(True, "ok")


# ------------------------------------------------------------------ flooder process


async def flood(port: int, seconds: float, reload_every: float) -> dict[str, Any]:
    """Send, then listen until quiet; the counts go to stdout as JSON."""
    sent = {"override": 0, "mode": 0, "reload": 0}
    got = {"replies": 0, "events": 0}
    last_heard = [time.monotonic()]
    async with aiomqtt.Client("127.0.0.1", port, identifier="flooder",
                              protocol=aiomqtt.ProtocolVersion.V5,
                              socket_options=(NO_DELAY,)) as client:
        await client.subscribe(f"{BASE}/cmd/+/response", qos=1)
        await client.subscribe(f"{BASE}/events", qos=1)

        async def listen() -> None:
            async for message in client.messages:
                kind = "events" if message.topic.value.endswith("/events") else "replies"
                got[kind] += 1
                last_heard[0] = time.monotonic()

        listener = asyncio.create_task(listen())
        began = time.monotonic()
        end, next_reload, n = began + seconds, began, 0
        while (now := time.monotonic()) < end:
            if now >= next_reload:
                await client.publish(f"{BASE}/cmd/reload", b"{}", qos=1)
                sent["reload"] += 1
                next_reload = now + reload_every
            name = "override" if n % 4 else "mode"
            payload = (json.dumps({"role": "valve.recovery", "value": 0.5, "ttl": 30})
                       if name == "override" else '{"mode": "auto"}')
            await client.publish(f"{BASE}/cmd/{name}", payload, qos=1)
            sent[name] += 1
            n += 1
        flood_s = time.monotonic() - began
        await until(lambda: time.monotonic() - last_heard[0] >= QUIET_S, QUIET_WAIT_S,
                    poll=0.1, what=f"{QUIET_S} s without replies")
        listener.cancel()
    return {"sent": sent, "flood_s": round(flood_s, 2), **got}


# ------------------------------------------------------------------ link process


async def probe_lag(stop: asyncio.Event, period: float = 0.01) -> list[float]:
    """How late each 10 ms sleep of this loop wakes up, in seconds."""
    late: list[float] = []
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + period
        await asyncio.sleep(period)
        late.append(loop.time() - due)
    return late


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    handler = Handler()
    async with Broker() as broker:
        settings = MqttSettings.model_validate({
            "host": broker.host, "port": broker.port, "command_rate": args.rate,
            "command_burst": args.burst, "reload_min_interval": args.reload_min_interval})
        link = MqttLink(settings, SITE, handler)
        await link.start()
        await link.wait_connected()
        stop = asyncio.Event()
        lag = asyncio.create_task(probe_lag(stop))
        cpu0, rss0 = resource.getrusage(resource.RUSAGE_SELF), _rss_kib()
        flooder = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--flooder", str(broker.port), "--seconds",
            str(args.seconds), "--reload-every", str(args.reload_every),
            stdout=subprocess.PIPE)
        out, _ = await flooder.communicate()
        cpu1, rss1 = resource.getrusage(resource.RUSAGE_SELF), _rss_kib()
        stop.set()
        late = await lag
        await link.stop()
        dropped_by_broker = await asyncio.wait_for(broker_dropped(broker), 5)
    seen = json.loads(out.decode().strip().splitlines()[-1])
    stats = link.stats.summary()
    total = sum(seen["sent"].values())
    late_ms = sorted(x * 1000 for x in late)
    return {
        "seconds": args.seconds,
        "sent": seen["sent"], "sent_total": total, "flood_s": seen["flood_s"],
        "replies_received": seen["replies"], "events_received": seen["events"],
        "replies_lost_counted": stats["dropped_by_kind"]["reply"],
        "events_lost_counted": stats["dropped_by_kind"]["audit"],
        "unread_counted": stats["inbox_dropped"],
        "broker_dropped": dropped_by_broker,
        "replies_unaccounted": (total - seen["replies"] - stats["dropped_by_kind"]["reply"]
                                - stats["inbox_dropped"]),
        "events_unaccounted": (total - seen["events"] - stats["dropped_by_kind"]["audit"]
                               - stats["inbox_dropped"]),
        "handler_calls": handler.calls,
        "link_stats": stats,
        "loop_lag_ms": {"p50": round(statistics.median(late_ms), 2),
                        "p99": round(late_ms[int(len(late_ms) * 0.99)], 2),
                        "max": round(late_ms[-1], 2)},
        "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2),
        "rss_kib": {"before": rss0, "after": rss1},
    }


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def report(r: dict[str, Any]) -> None:
    s = r["link_stats"]
    print(f"flood of {r['flood_s']} s: sent {r['sent_total']} commands {r['sent']}, of "
          f"which {r['unread_counted']} discarded unread (inbox full) and counted")
    print(f"  the broker dropped {r['broker_dropped']} messages itself (any client's "
          "queue full): heatd cannot count those")
    print(f"  replies received {r['replies_received']} + lost and counted "
          f"{r['replies_lost_counted']} (unaccounted {r['replies_unaccounted']})")
    print(f"  audit events received {r['events_received']} + lost and counted "
          f"{r['events_lost_counted']} (unaccounted {r['events_unaccounted']})")
    print(f"  link: commands {s['commands']}, refused {s['refused']}, rate limited "
          f"{s['rate_limited']}, busy {s['busy']}, merged reloads {s['merged']}, "
          f"internal errors {s['internal_errors']}, broker refused {s['broker_refused']}, "
          f"dropped {s['dropped_by_kind']}")
    print(f"  handler calls {r['handler_calls']}")
    lag = r["loop_lag_ms"]
    print(f"  event loop lag p50 {lag['p50']} ms, p99 {lag['p99']} ms, max {lag['max']} ms; "
          f"CPU {r['cpu_s']} s; RSS {r['rss_kib']['before']} -> {r['rss_kib']['after']} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=10.0, help="mqtt.command_rate")
    parser.add_argument("--burst", type=int, default=20, help="mqtt.command_burst")
    parser.add_argument("--reload-every", type=float, default=0.05)
    parser.add_argument("--reload-min-interval", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--flooder", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flooder:
        print(json.dumps(asyncio.run(flood(args.flooder, args.seconds, args.reload_every))))
        return
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings
    result = asyncio.run(bench(args))
    print(json.dumps(result, indent=2)) if args.json else report(result)


if __name__ == "__main__":
    main()
