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
from collections.abc import AsyncIterator, Awaitable, Callable
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
    cleared when a session ends (``serve`` sets it once the session is ready)."""
    backoff = Backoff(settings.reconnect_min, settings.reconnect_max)
    while not stopping.is_set():
        error: str | None = None
        try:
            async with make() as client:
                counted(None)
                backoff.reset()
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
        pause = backoff.next()
        log.warning(f"{name} down", error=error, retry_in=round(pause, 2))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), pause)


async def incoming(client: aiomqtt.Client) -> AsyncIterator[Incoming]:
    """The session's messages as the command server takes them; raises MqttError when the
    session breaks."""
    async for message in client.messages:
        payload = message.payload if isinstance(message.payload, bytes) else b""
        yield Incoming(message.topic.value, payload, message.properties, message.retain)
