"""End-to-end rig: the demo site on free ports, the plant simulator serving it over real
Modbus TCP and OPC UA (in this process), a real mosquitto, and heatd as a separate process,
watched through MQTT like an operator would.

heatd's timers run on the wall clock and the plant's on plant time; with the plant running
``speed`` times faster, the site file scales heatd's control durations by the same factor
(see DESIGN.md, "Time"), so no clock hack is needed in the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from heatd.config_loader import load_site
from heatd.hil.rig.broker import Mosquitto
from heatd.hil.rig.waiting import until
from heatd.hil.scenario import load_scenario
from heatd.hil.serve import PlantServer
from heatd.hil.siteports import accelerated_copy

ROOT = Path(__file__).resolve().parents[3]
DEMO_SITE = ROOT / "config" / "demo-site.yaml"


def write_site(tmp: Path, broker_port: int, *, speed: float, cycle_period: float) -> Path:
    """The demo site on free ports, publishing to the test broker, its control timers
    scaled to the plant's speed."""
    return accelerated_copy(DEMO_SITE, tmp / "site.yaml", speed, {
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "reconnect_min": 0.1,
                 "reconnect_max": 0.5, "full_refresh": 5.0},
        "runtime": {"cycle_period": cycle_period, "stop_timeout": 2.0},
        "meter": {"interval": 2.0, "database": str(tmp / "meter.sqlite")},
    })


@dataclass
class Observer:
    """Last payload per topic and every event, as an MQTT subscriber sees them."""

    last: dict[str, Any] = field(default_factory=dict)
    retained: dict[str, bool] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def feed(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        raw = message.payload if isinstance(message.payload, bytes) else b""
        try:
            payload: Any = json.loads(raw)
        except ValueError:
            payload = raw.decode()
        self.last[topic] = payload
        self.retained[topic] = bool(message.retain)
        if topic.endswith("/events"):
            self.events.append(payload)


@dataclass
class Stack:
    tmp: Path
    site_path: Path
    broker: Mosquitto
    sim: PlantServer
    observer: Observer
    base: str
    proc: subprocess.Popen[bytes] | None = None
    client: aiomqtt.Client | None = None
    _watch: asyncio.Task[None] | None = None

    def start_daemon(self, extra_env: dict[str, str] | None = None) -> None:
        log = (self.tmp / "heatd.log").open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "heatd.cli", "run",
                                      str(self.site_path)], stdout=log, stderr=log, env=env)

    def daemon_log(self) -> str:
        return (self.tmp / "heatd.log").read_text(errors="replace")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int:
        proc = self.proc
        assert proc is not None
        await until(lambda: proc.poll() is not None, timeout, what="heatd's exit")
        return proc.returncode

    def topic(self, suffix: str) -> str:
        return f"{self.base}/{suffix}"

    def control(self) -> dict[str, Any]:
        return self.observer.last.get(self.topic("control/state"), {})

    async def until(self, condition: Callable[[], Any], timeout: float = 20.0,
                    what: str = "condition") -> Any:
        """:func:`heatd.hil.rig.waiting.until`, with the tail of heatd's log when it fails."""
        return await until(condition, timeout, poll=0.05, what=what,
                           explain=lambda: f"--- heatd log tail ---\n{self.daemon_log()[-3000:]}")

    async def reconnect_observer(self) -> None:
        """After a broker restart: a fresh observer connection and subscription."""
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.__aexit__(None, None, None)
        self.client = aiomqtt.Client("127.0.0.1", self.broker.port, identifier="observer",
                                     protocol=aiomqtt.ProtocolVersion.V5)
        await self.client.__aenter__()
        await self.client.subscribe(f"{self.base}/#", qos=1)
        self._watch = asyncio.create_task(self._feed(self.client))

    async def _feed(self, client: aiomqtt.Client) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            async for message in client.messages:
                self.observer.feed(message)

    async def retained(self, settle: float = 1.0) -> dict[str, Any]:
        """What a subscriber arriving now gets from the broker's retained store."""
        found: dict[str, Any] = {}
        async with aiomqtt.Client("127.0.0.1", self.broker.port,
                                  identifier="late-subscriber") as late:
            await late.subscribe(f"{self.base}/#", qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settle):
                    async for message in late.messages:
                        if message.retain:
                            raw = message.payload if isinstance(message.payload, bytes) else b""
                            try:
                                found[message.topic.value] = json.loads(raw)
                            except ValueError:
                                found[message.topic.value] = raw.decode()
        return found

    async def command(self, name: str, payload: dict[str, Any], timeout: float = 10.0
                      ) -> dict[str, Any]:
        """Send a 3.1.1-style command with an id and wait for its response."""
        assert self.client is not None
        reply_topic = self.topic(f"cmd/{name}/response")
        ident = f"t{len(self.observer.events)}-{id(payload)}"
        await self.client.publish(self.topic(f"cmd/{name}"), json.dumps({**payload, "id": ident}),
                                  qos=1)

        def answered() -> dict[str, Any] | None:
            reply = self.observer.last.get(reply_topic)
            return reply if isinstance(reply, dict) and reply.get("id") == ident else None

        return await self.until(answered, timeout, f"answer to {name}")


@contextlib.asynccontextmanager
async def running_stack(tmp: Path, *, scenario: str | Path = "winter_week", speed: float = 10.0,
                        cycle_period: float = 0.2, start_daemon: bool = True
                        ) -> AsyncIterator[Stack]:
    broker = Mosquitto()
    await broker.start()
    site_path = write_site(tmp, broker.port, speed=speed, cycle_period=cycle_period)
    site = load_site(site_path)
    sim = PlantServer(site, load_scenario(str(scenario)), speed=speed,
                      record_dir=tmp / "record", record_interval_s=5.0, status_interval_s=1e9,
                      ptys=True)
    stack = Stack(tmp, site_path, broker, sim, Observer(), f"heatd/{site.site.id}")
    try:
        await sim.__aenter__()
        await stack.reconnect_observer()
        if start_daemon:
            stack.start_daemon()
        yield stack
    finally:
        if stack.proc is not None and stack.proc.poll() is None:
            stack.proc.send_signal(signal.SIGKILL)
            stack.proc.wait()
        if stack._watch is not None:
            stack._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stack._watch
        if stack.client is not None:
            with contextlib.suppress(Exception):
                await stack.client.__aexit__(None, None, None)
        await sim.__aexit__(None, None, None)
        await broker.stop()
