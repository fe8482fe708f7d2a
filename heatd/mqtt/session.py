"""One MQTT connection kept up: the client it is made of, and the loop that rebuilds it.

heatd keeps two of them (``outbox.py`` publishes, ``listener.py`` takes commands), with the
same broker, credentials and TLS, so both are made here. aiomqtt does not reconnect by
itself: ``keep_session`` builds a fresh client for every attempt, serves it until it breaks,
and waits between attempts with exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from heatd.drivers.backoff import Backoff
from heatd.mqtt.wire import Incoming

if TYPE_CHECKING:
    from heatd.mqtt.settings import MqttSettings

log = structlog.get_logger(__name__)

MAX_INCOMING_PACKET = 64 * 1024
"""Told to the broker (MQTT v5 Maximum Packet Size), which then sends heatd nothing
larger: an inbox holds at most its size times this."""
NO_DELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
"""Small packets go out at once: with Nagle's algorithm, a reply written right after an
acknowledgement waits for the broker's delayed ACK (40 ms on Linux) each time."""
STABLE_S = 10.0
"""A session that lasted this long resets the reconnect backoff; one that breaks sooner
(a broker that drops heatd right after accepting it) lets the backoff grow."""


@dataclass
class BrokerLimits:
    """What the broker announced in its CONNACK (MQTT v5); None where it said nothing."""

    max_packet: int | None = None
    """The largest packet it takes; it drops the connection on a larger one."""
    receive_max: int | None = None
    """The most QoS 1 and 2 publishes it takes unacknowledged at once."""


def announced_limits(client: aiomqtt.Client) -> BrokerLimits:
    """The limits the broker will announce to this (not yet connected) client, filled in
    when its CONNACK arrives. paho keeps them to itself: its callback is wrapped, private
    but the only way in; paho runs it on the event loop's thread."""
    limits = BrokerLimits()
    paho = client._client
    on_connect: Any = paho.on_connect  # aiomqtt speaks paho's callback API version 2
    if on_connect is None:
        raise RuntimeError("aiomqtt set no paho callback to wrap")

    def remembered(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None
                   ) -> None:
        if properties is not None:
            limits.max_packet = getattr(properties, "MaximumPacketSize", None)
            limits.receive_max = getattr(properties, "ReceiveMaximum", None)
        on_connect(c, userdata, flags, reason, properties)

    paho.on_connect = remembered
    return limits


def publish_size(topic: str, payload: bytes, qos: int, properties: Properties | None) -> int:
    """Bytes of the MQTT v5 PUBLISH packet that carries this message (what a broker's
    Maximum Packet Size is compared with)."""
    props = properties.pack() if properties is not None else b"\x00"
    body = 2 + len(topic.encode()) + (2 if qos else 0) + len(props) + len(payload)
    return 1 + _length_bytes(body) + body


def _length_bytes(n: int) -> int:
    """How many bytes MQTT's variable byte integer takes for ``n``."""
    return 1 if n < 128 else 2 if n < 16_384 else 3 if n < 2_097_152 else 4


def make_client(settings: MqttSettings, identifier: str, password: str | None, tls: Any,
                *, inbox: int, will: aiomqtt.Will | None = None) -> aiomqtt.Client:
    """An MQTT v5 client of the site's broker; ``inbox``: the most messages received and
    not yet read, beyond which paho's messages are discarded (see the users' wrappers)."""
    connect = Properties(PacketTypes.CONNECT)
    connect.MaximumPacketSize = MAX_INCOMING_PACKET
    return aiomqtt.Client(
        settings.host,
        settings.effective_port,
        username=settings.username,
        password=password,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5,
        will=will,
        keepalive=settings.keepalive,
        clean_start=True,
        tls_context=tls,
        timeout=10.0,
        socket_options=(NO_DELAY,),
        max_queued_incoming_messages=inbox,
        properties=connect,
    )


async def keep_session(
    settings: MqttSettings,
    make: Callable[[], aiomqtt.Client],
    serve: Callable[[aiomqtt.Client], Awaitable[None]],
    *,
    stopping: asyncio.Event,
    connected: asyncio.Event,
    counted: Callable[[str | None], None],
    name: str,
) -> None:
    """Connect with ``make()``, ``serve`` the client, and on any failure wait and retry,
    until ``serve`` returns or ``stopping`` is set. ``counted(None)`` on each connect,
    ``counted(reason)`` on each failed attempt or broken session; ``connected`` is
    cleared when a session ends (``serve`` sets it once the session is ready). The pause
    before a retry grows from ``reconnect_min`` to ``reconnect_max`` and starts over only
    after a session that lasted ``STABLE_S``."""
    backoff = Backoff(settings.reconnect_min, settings.reconnect_max)
    while not stopping.is_set():
        error: str | None = None
        connected_at: float | None = None
        try:
            async with make() as client:
                counted(None)
                connected_at = time.monotonic()
                log.info(f"{name} connected", host=settings.host, port=settings.effective_port)
                await serve(client)
                return
        except aiomqtt.MqttError as exc:
            error = str(exc)
        except Exception as exc:  # a bug here must not end the session for good
            error = repr(exc)
            log.exception(f"{name} failed")
        finally:
            connected.clear()
        counted(error)
        if connected_at is not None and time.monotonic() - connected_at >= STABLE_S:
            backoff.reset()
        pause = backoff.next()
        log.warning(f"{name} down", host=settings.host, port=settings.effective_port,
                    error=error, retry_in=round(pause, 2))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), pause)


async def incoming(client: aiomqtt.Client) -> AsyncIterator[Incoming]:
    """The session's messages as the command server takes them; raises MqttError when the
    session breaks."""
    async for message in client.messages:
        payload = message.payload if isinstance(message.payload, bytes) else b""
        yield Incoming(message.topic.value, payload, message.properties, message.retain)
