"""A real mosquitto for the tests: ``Mosquitto`` (``heatd.hil.rig.broker``, shared with the
benchmarks) on its own port, never the system broker. ``broker_fixture()`` makes a pytest
fixture of it, and ``Recorder`` is an observer client that keeps every message it sees, so
tests wait for what they expect instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import pytest_asyncio
from paho.mqtt.subscribeoptions import SubscribeOptions

from heatd.hil.rig.broker import Mosquitto

__all__ = ["Mosquitto", "Recorder", "Seen", "broker_fixture", "retained"]


def broker_fixture(**kwargs: Any) -> Any:
    """A function-scoped pytest fixture yielding a started ``Mosquitto``:
    ``broker = broker_fixture()`` in a test module."""

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
