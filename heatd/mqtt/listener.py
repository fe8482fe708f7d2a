"""The command session: a connection of its own that subscribes to the site's commands.

Commands come in on a connection apart from the one that publishes the site, because
anyone who may publish on ``cmd/`` can send faster than heatd reads: on a shared
connection the broker's acknowledgements of heatd's own publishes queued behind the flood
in the same socket, the site's state went out seconds late and the session timed out.
Apart, a flood fills this connection's bounded inbox (the excess is discarded and counted,
``inbox_dropped``) while the site's state and the answers go out on time on the other.
This session has no last will: the site's ``status`` belongs to the publishing one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import aiomqtt

from heatd.drivers.cancel import cancel_all
from heatd.mqtt.session import incoming, keep_session, make_client
from heatd.mqtt.wire import Incoming

if TYPE_CHECKING:
    from paho.mqtt.subscribeoptions import SubscribeOptions

    from heatd.mqtt.settings import MqttSettings
    from heatd.mqtt.wire import LinkStats

Receiver = Callable[[AsyncIterator[Incoming]], Coroutine[Any, Any, None]]
"""Reads the messages of one session until it ends (cancelled when the session breaks)."""
COMMAND_INBOX = 512
"""Messages received but not yet read; beyond, they are discarded and counted
(``inbox_dropped``), so a flood faster than heatd reads cannot grow its memory."""


class CommandListener:
    """Keeps the command session: subscribes, hands each message to ``receive``."""

    def __init__(self, settings: MqttSettings, identifier: str, stats: LinkStats, *,
                 subscriptions: Sequence[tuple[str, SubscribeOptions]],
                 receive: Receiver) -> None:
        self.settings = settings
        self.stats = stats
        self._identifier = identifier
        self._subscriptions = tuple(subscriptions)
        self._receive = receive
        self._stopping = asyncio.Event()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.client: aiomqtt.Client | None = None
        """The client of the session in progress, None between sessions."""

    def start(self, password: str | None, tls: Any) -> None:
        """Start the session task; returns at once (the broker may be down)."""
        if self._task is not None or self._stopping.is_set():
            raise RuntimeError("a listener starts once; make a new one after stop()")
        self._task = asyncio.create_task(keep_session(
            self.settings,
            lambda: make_client(self.settings, self._identifier, password, tls,
                                inbox=COMMAND_INBOX),
            self._session, stopping=self._stopping, connected=self._connected,
            counted=self.stats.command_session,
            name="mqtt command session"), name="mqtt-commands")

    async def stop(self) -> None:
        """Unsubscribe by disconnecting; nothing is read after this returns."""
        if self._task is None:
            return
        self._stopping.set()
        await cancel_all([self._task])  # cancelled again if a reply swallowed the first
        self._task = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def _session(self, client: aiomqtt.Client) -> None:
        self._bound(client)
        for topic, options in self._subscriptions:
            await client.subscribe(topic, options=options)
        self.client = client
        self._connected.set()
        try:
            await self._receive(incoming(client))
        finally:
            self.client = None

    def _bound(self, client: aiomqtt.Client) -> None:
        """Count the messages discarded beyond a full inbox (aiomqtt logs a warning for
        each): its paho callback is wrapped, private but the only way in; paho runs it on
        the event loop's thread."""
        paho = client._client
        on_message, inbox = paho.on_message, client._queue
        if on_message is None:
            raise RuntimeError("aiomqtt set no paho callback to wrap")

        def bounded_message(c: Any, userdata: Any, message: Any) -> None:
            if inbox.full():
                self.stats.inbox_dropped += 1
                return
            on_message(c, userdata, message)

        paho.on_message = bounded_message
