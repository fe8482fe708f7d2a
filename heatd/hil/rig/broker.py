"""A real mosquitto on its own port with its own temporary config, never the system
broker, and the clients that watch it: for the tests and the benchmarks.

``Mosquitto`` is an async context manager that can also be stopped, killed and restarted
on the same port while a client under test keeps running. ``Recorder`` is an observer
client that keeps every message it sees, so tests wait for what they expect instead of
sleeping; ``retained`` reads the broker's retained copy of a topic; ``broker_fixture()``
makes a pytest fixture of a started broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from heatd.hil.rig.waiting import until
from heatd.hil.siteports import free_port

MOSQUITTO = "/usr/sbin/mosquitto"
START_TIMEOUT_S = 10.0


class Mosquitto:
    """One mosquitto process on 127.0.0.1:``port`` without persistence (a restart loses
    every retained message, which is what a test of republishing needs)."""

    def __init__(self, port: int | None = None, *, users: dict[str, str] | None = None,
                 settings: tuple[str, ...] = ()) -> None:
        """``settings``: further lines of mosquitto.conf (``max_packet_size 2000``)."""
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.users = users or {}
        self.settings = settings
        self._dir = tempfile.TemporaryDirectory(prefix="heatd-mosquitto-")
        self.log = Path(self._dir.name) / "mosquitto.log"
        self._proc: asyncio.subprocess.Process | None = None

    def _config(self) -> Path:
        lines = [
            f"listener {self.port} {self.host}",
            "persistence false",
            f"log_dest file {self.log}",
            "log_type all",
        ]
        if os.geteuid() == 0:  # else mosquitto drops to its own user and cannot read our files
            lines.append("user root")
        if self.users:
            pw = Path(self._dir.name) / "passwd"
            pw.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            pw.chmod(0o600)
            subprocess.run(["mosquitto_passwd", "-U", str(pw)], check=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        lines += self.settings
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Start and wait until the port accepts connections."""
        if self.running:
            return
        self._proc = proc = await asyncio.create_subprocess_exec(
            MOSQUITTO, "-c", str(self._config()),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )

        async def listening() -> bool:
            if proc.returncode is not None:
                err = (await proc.stderr.read()).decode() if proc.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err}")
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                return False
            writer.close()
            return True

        await until(listening, START_TIMEOUT_S, what=f"mosquitto listening on {self.port}")

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGTERM: orderly; SIGKILL: as if the host died)."""
        if self._proc is None:
            return
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # unless it has just exited
                self._proc.send_signal(sig)
        await self._proc.wait()
        self._proc = None

    async def kill(self) -> None:
        await self.stop(signal.SIGKILL)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def client(self, **kwargs: Any) -> aiomqtt.Client:
        """An aiomqtt client for this broker (MQTT v5 unless ``protocol`` says otherwise)."""
        kwargs.setdefault("protocol", aiomqtt.ProtocolVersion.V5)
        return aiomqtt.Client(self.host, self.port, **kwargs)

    async def __aenter__(self) -> Mosquitto:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        self._dir.cleanup()


def broker_fixture(**kwargs: Any) -> Any:
    """A function-scoped pytest fixture yielding a started ``Mosquitto``:
    ``broker = broker_fixture()`` in a test module (pytest-asyncio, a test extra, is
    imported only here)."""
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def _broker() -> AsyncIterator[Mosquitto]:
        async with Mosquitto(**kwargs) as broker:
            yield broker

    return _broker


@dataclass(frozen=True, slots=True)
class Seen:
    topic: str
    payload: bytes
    retain: bool
    properties: Any


class Recorder:
    """An observer subscribed to ``topics``; keeps every message, lets a test wait for one.

    Over MQTT v5 it subscribes with retain-as-published, so ``Seen.retain`` says whether
    the publisher retained the message, whether it arrived live or from the store.

    ``async with Recorder(broker, "heatd/#") as rec: await rec.wait(topic, pred)``.
    """

    def __init__(self, broker: Mosquitto, *topics: str, **client_kwargs: Any) -> None:
        self.broker = broker
        self.topics = topics or ("#",)
        self.client_kwargs = client_kwargs
        self.seen: list[Seen] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None

    async def __aenter__(self) -> Recorder:
        self._client = self.broker.client(**self.client_kwargs)
        await self._client.__aenter__()
        v5 = self.client_kwargs.get("protocol", aiomqtt.ProtocolVersion.V5) is \
            aiomqtt.ProtocolVersion.V5
        for topic in self.topics:
            if v5:  # keep the publisher's retain flag on live messages too
                options = SubscribeOptions(qos=1, retainAsPublished=True)
                await self._client.subscribe(topic, options=options)
            else:
                await self._client.subscribe(topic, qos=1)
        self._task = asyncio.create_task(self._collect(self._client))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.__aexit__(None, None, None)

    @property
    def client(self) -> aiomqtt.Client:
        assert self._client is not None
        return self._client

    async def _collect(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            payload = msg.payload if isinstance(msg.payload, bytes) else b""
            self.seen.append(Seen(msg.topic.value, payload, msg.retain, msg.properties))
            async with self._changed:
                self._changed.notify_all()

    def on(self, topic: str) -> list[Seen]:
        return [m for m in self.seen if m.topic == topic]

    async def wait(
        self,
        topic: str,
        predicate: Callable[[Seen], bool] = lambda _: True,
        *,
        after: int = 0,
        timeout: float = 10.0,
    ) -> Seen:
        """The first message on ``topic`` (from index ``after`` of ``seen``) that matches."""

        def found() -> Seen | None:
            for msg in self.seen[after:]:
                if msg.topic == topic and predicate(msg):
                    return msg
            return None

        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: found() is not None)
        result = found()
        assert result is not None
        return result

    def mark(self) -> int:
        """Index to pass as ``after`` so only later messages count."""
        return len(self.seen)


async def retained(broker: Mosquitto, topic: str, timeout: float = 2.0) -> bytes | None:
    """The broker's retained payload on ``topic`` right now, or None when there is none.

    Subscribes a fresh client; the retained copy arrives at once if there is one, so a
    short quiet period means there is none.
    """
    async with broker.client() as client:
        await client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(timeout):
                async for msg in client.messages:
                    if msg.retain and isinstance(msg.payload, bytes):
                        return msg.payload
        except TimeoutError:
            return None
    return None
