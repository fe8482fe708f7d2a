"""The link's publishing connection: what waits to be sent, and the session that sends it.

The control cycle must never wait for the network, so publishing here is a plain call:
retained topics go into a latest-value-per-topic map, everything else into bounded FIFOs
(command answers apart from the site's events), and a connection task drains them. The
session is kept up by ``session.keep_session`` (a fresh client per attempt, backoff with
jitter); after each (re)connect every retained topic is re-sent, because the broker may
have restarted without its retained store. A last will marks the site ``offline`` if the
process dies; a clean stop says so explicitly before disconnecting. Every message lost (a
full queue, a broker that refuses it) is counted on the retained ``stats`` topic. This
session subscribes to nothing: commands come in on a session of their own
(``listener.py``), so no flood of them can hold up what is sent here.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import aiomqtt
import structlog

from heatd.drivers.cancel import cancel_all
from heatd.mqtt.payload import dumps, epoch_ms
from heatd.mqtt.session import (
    BrokerLimits,
    announced_limits,
    keep_session,
    make_client,
    publish_size,
)
from heatd.mqtt.topics import publishable
from heatd.mqtt.wire import Kind, LinkStats

if TYPE_CHECKING:
    from paho.mqtt.client import CallbackOnPublish_v2
    from paho.mqtt.properties import Properties

    from heatd.mqtt.settings import MqttSettings
    from heatd.mqtt.topics import Topics

log = structlog.get_logger(__name__)

ONLINE, OFFLINE = b"online", b"offline"
STRAY_INBOX = 16
"""This session subscribes to nothing; anything a broker sends it anyway is held up to
this many and otherwise discarded."""
STATS_EVERY_S = 1.0
"""The retained ``stats`` topic is re-sent at most this often, and only on a change."""
IN_FLIGHT = 16
"""QoS 1 publishes sent and awaiting their PUBACK at once (fewer if the broker's Receive
Maximum says so): one at a time, a broker 300 ms away took 3 messages a second, too few
for the site's state, and the answers waiting behind it were never sent."""
PENDING_WARN_ABOVE = IN_FLIGHT + 1
"""Publishes awaiting their PUBACK that are heatd's design, not trouble: the window plus
the one stored record ``publish_confirmed`` sends at a time. aiomqtt warns above 10 by
default, which a healthy start or ``republish`` passes dozens of times; above this, its
warning still tells of publishes heatd did not mean to have pending."""
PASSED_MAX = 8
"""Sends that may go before a waiting lane before it gets a turn (see ``Outbox._next``)."""
CONFIRM_TIMEOUT_S = 10.0
"""How long ``publish_confirmed`` waits for the broker's PUBACK."""
ANSWERS: frozenset[Kind] = frozenset({"reply", "audit"})

@dataclass(frozen=True, slots=True)
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    properties: Properties | None = None
    kind: Kind = "other"
    retain: bool = False


class Outbox:
    """Queues what the link publishes and keeps a session with the broker to send it.

    ``publish`` and ``retain`` are synchronous and must be called from the event loop's
    thread; they never wait for the broker, whether it is up, slow or gone.
    """

    def __init__(
        self,
        settings: MqttSettings,
        topics: Topics,
        identifier: str,
        stats: LinkStats,
        *,
        on_connect: Callable[[], object],
        clock: Callable[[], float],
    ) -> None:
        """``on_connect`` runs once a session has sent ``online``, before anything queued
        goes out (the link re-sends its retained topics then)."""
        self.settings = settings
        self.topics = topics
        self.stats = stats
        self._identifier = identifier
        self._on_connect = on_connect
        self._clock = clock
        self._retained: dict[str, tuple[bytes, int]] = {}
        self._dirty: dict[str, None] = {}  # ordered set of retained topics to (re)send
        self._queue: collections.deque[_Outgoing] = collections.deque()
        self._answers: collections.deque[_Outgoing] = collections.deque()
        """Command replies and audit records: a lane of their own, dropped first."""
        self._passed = [0, 0, 0]
        """Per lane (retained, site messages, answers): sends that went before it while it
        had something waiting (see ``_next``)."""
        self._limits = BrokerLimits()
        """What the broker of the session in progress announced."""
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._say_offline = True
        """Whether the stop ends with a retained ``offline`` (not when handing over)."""
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stats_task: asyncio.Task[None] | None = None
        self.client: aiomqtt.Client | None = None
        """The client of the session in progress, None between sessions."""

    # ----------------------------------------------------------------- lifecycle

    def start(self, password: str | None, tls: Any) -> None:
        """Start the connection task; returns at once (the broker may be down, the task
        keeps trying)."""
        if self._task is not None or self._stopping.is_set():
            raise RuntimeError("a link starts once; make a new one after stop()")
        will = aiomqtt.Will(self.topics.status, OFFLINE, qos=1, retain=True)

        def make() -> aiomqtt.Client:
            client = make_client(self.settings, self._identifier, password, tls,
                                 inbox=STRAY_INBOX, will=will)
            client.pending_calls_threshold = PENDING_WARN_ABOVE
            self._limits = announced_limits(client)
            return client

        self._task = asyncio.create_task(keep_session(
            self.settings, make, self._session, stopping=self._stopping, connected=self._connected,
            counted=self.stats.session, name="mqtt"), name="mqtt-link")
        self._stats_task = asyncio.create_task(self._report_stats(), name="mqtt-stats")

    async def stop(self, flush_within: float, *, offline: bool = True) -> None:
        """Flush what is queued, the final counters and (``offline``) ``offline``, then
        disconnect; give up the flush after ``flush_within`` seconds (broker away): the
        last will then tells the truth once the broker notices the socket is gone. Without
        ``offline`` the site's status is left to the link that takes over its topics (a
        clean disconnect sends no last will)."""
        if self._task is None:
            return
        if self._stats_task is not None:
            await cancel_all([self._stats_task])
        self._say_offline = offline
        self._stopping.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), flush_within)
        except TimeoutError:
            await cancel_all([self._task])
        finally:
            self._task = None

    @property
    def running(self) -> bool:
        """Started and not stopped yet."""
        return self._task is not None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    # ------------------------------------------------------------------ queueing

    def retain(self, topic: str, payload: bytes, qos: int | None = None) -> None:
        """Keep ``payload`` as the latest of ``topic`` and send it retained (again after
        every reconnect); an empty payload deletes the topic on the broker."""
        self._retained[topic] = (payload, self.settings.qos if qos is None else qos)
        self._dirty[topic] = None
        self._wake.set()

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        retain: bool = False,
        qos: int | None = None,
        properties: Properties | None = None,
        kind: Kind = "other",
    ) -> None:
        """Any topic. Retained: only the latest payload per topic is kept and re-sent
        after every reconnect. Not retained: queued in order, oldest dropped (and
        counted in ``stats.dropped`` under its ``kind``) beyond ``queue_size``; command
        replies and audits have a queue of that size of their own. An unpublishable
        topic (wildcards, empty) raises ValueError here, at the caller."""
        if not publishable(topic):
            raise ValueError(f"cannot publish to topic {topic!r}")
        data = payload.encode() if isinstance(payload, str) else payload
        level = self.settings.qos if qos is None else qos
        if retain:
            self.retain(topic, data, level)
            return
        queue = self._lane(kind)
        if len(queue) >= self.settings.queue_size:
            self.stats.drop(queue.popleft().kind)
        queue.append(_Outgoing(topic, data, level, properties, kind))
        self._wake.set()

    def answers_full(self) -> bool:
        """Whether command answers fill their queue: one more would push out the oldest."""
        return len(self._answers) >= self.settings.queue_size

    async def publish_confirmed(self, topic: str, payload: bytes) -> bool:
        """Publish at QoS 1 now and wait for the broker's acknowledgement; False when
        there is no connection or no PUBACK came within ``CONFIRM_TIMEOUT_S`` (the caller
        keeps the message)."""
        client = self.client
        if client is None or not self.connected:
            return False
        limit = self._max_packet()
        size = publish_size(topic, payload, 1, None)
        if limit is not None and size > limit:  # sent, the broker would drop the session
            self._too_large(topic, size, limit, lost=None)
            return False
        try:
            await client.publish(topic, payload, qos=1, timeout=CONFIRM_TIMEOUT_S)
        except aiomqtt.MqttError:
            return False
        self.stats.sent += 1
        return True

    def republish(self) -> int:
        """Re-send every retained topic; returns how many."""
        self.resend(self._retained)
        return len(self._retained)

    def resend(self, topics: Iterable[str]) -> None:
        """Re-send these retained topics (those that are kept; others are ignored)."""
        self._dirty.update((t, None) for t in topics if t in self._retained)
        self._wake.set()

    # ------------------------------------------------------------------ sessions

    async def _session(self, client: aiomqtt.Client) -> None:
        self._count_refusals(client)
        await client.publish(self.topics.status, ONLINE, qos=1, retain=True)
        self._on_connect()
        self.client = client
        self._connected.set()
        tasks = {asyncio.create_task(self._watch(client)),
                 asyncio.create_task(self._send(client))}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.client = None
            await cancel_all(list(tasks))
        for task in done:
            task.result()

    @staticmethod
    async def _watch(client: aiomqtt.Client) -> None:
        """Raises MqttError when the session breaks: reading its messages is how aiomqtt
        tells (this session subscribes to nothing, so there are none to keep)."""
        async for _ in client.messages:
            pass

    def _count_refusals(self, client: aiomqtt.Client) -> None:
        """Count the publishes the broker refuses (MQTT v5): aiomqtt drops the PUBACK's
        reason code (an ACL that denies a reply topic, say). Its paho callback is wrapped,
        private but the only way in; paho runs it on the event loop's thread, with the
        published message still among its outgoing ones."""
        paho = client._client
        # aiomqtt speaks paho's callback API version 2
        on_publish = cast("CallbackOnPublish_v2 | None", paho.on_publish)
        if on_publish is None:
            raise RuntimeError("aiomqtt set no paho callback to wrap")

        def counted_publish(c: Any, userdata: Any, mid: int, reason: Any, props: Any
                            ) -> None:
            try:
                if getattr(reason, "is_failure", False):
                    message = c._out_messages.get(mid)
                    self._broker_refused(message.topic if message else None, str(reason))
            finally:  # aiomqtt's own bookkeeping, whatever happened above
                on_publish(c, userdata, mid, reason, props)

        paho.on_publish = counted_publish

    def _broker_refused(self, topic: str | None, reason: str) -> None:
        self.stats.broker_refused += 1
        log.warning("mqtt broker refused a publish; check its ACL", topic=topic,
                    reason=reason, refused=self.stats.broker_refused)

    # ------------------------------------------------------------------ sending

    async def _send(self, client: aiomqtt.Client) -> None:
        """Drain retained changes and the queue; on stop, finish with the final counters
        and ``offline``."""
        while True:
            self._wake.clear()
            stopping = self._stopping.is_set()
            if stopping:
                self._publish_stats()
            await self._flush(client)
            if stopping:
                if self._say_offline:
                    await client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
                return
            await self._wake.wait()

    async def _flush(self, client: aiomqtt.Client) -> None:
        """Send all that waits, several publishes awaiting their PUBACK at once, in the
        order each lane holds them; a broken session puts back what it did not confirm."""
        flight: dict[asyncio.Task[None], _Outgoing] = {}  # in the order sent
        try:
            while True:
                while len(flight) < self._window() and (msg := self._next()) is not None:
                    flight[asyncio.create_task(self._send_one(client, msg))] = msg
                if not flight:
                    return
                done, _ = await asyncio.wait(flight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = task.exception()
                    if error is not None:
                        raise error
                    del flight[task]
        finally:
            if flight:
                self._put_back(list(flight.values()))
                with contextlib.suppress(aiomqtt.MqttError):  # the session's end, raised above
                    await cancel_all(list(flight))

    def _window(self) -> int:
        announced = self._limits.receive_max
        return IN_FLIGHT if announced is None else max(1, min(IN_FLIGHT, announced))

    def _next(self) -> _Outgoing | None:
        """The next message to send: retained changes first, then the site's messages,
        then command answers, except that a lane passed over ``PASSED_MAX`` times while it
        waited goes next, so no lane starves when the broker is slower than heatd
        publishes (a broker 300 ms away never got to the answers)."""
        waiting = [bool(self._dirty), bool(self._queue), bool(self._answers)]
        if not any(waiting):
            return None
        starved = [i for i in (2, 1) if waiting[i] and self._passed[i] >= PASSED_MAX]
        lane = starved[0] if starved else waiting.index(True)
        for other in range(3):
            self._passed[other] = 0 if other == lane or not waiting[other] \
                else self._passed[other] + 1
        if lane == 0:
            topic = next(iter(self._dirty))
            del self._dirty[topic]
            payload, qos = self._retained[topic]
            return _Outgoing(topic, payload, qos, retain=True)
        return (self._queue if lane == 1 else self._answers).popleft()

    async def _send_one(self, client: aiomqtt.Client, msg: _Outgoing) -> None:
        size = publish_size(msg.topic, msg.payload, msg.qos, msg.properties)
        limit = self._max_packet()
        if limit is not None and size > limit:
            self._too_large(msg.topic, size, limit, lost=None if msg.retain else msg.kind)
            return
        try:
            await client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain,
                                 properties=msg.properties)
        except (ValueError, TypeError) as exc:  # unsendable: retrying cannot help
            if not msg.retain:
                self.stats.drop(msg.kind)
            log.error("mqtt message dropped", topic=msg.topic, error=str(exc))
            return
        self.stats.sent += 1

    def _max_packet(self) -> int | None:
        """The largest packet this session may send: the broker's Maximum Packet Size or
        ``mqtt.max_packet_size``, whichever is smaller."""
        limits = [x for x in (self._limits.max_packet, self.settings.max_packet_size) if x]
        return min(limits) if limits else None

    def _too_large(self, topic: str, size: int, limit: int, *, lost: Kind | None) -> None:
        """A message the broker would drop the session for is not sent: counted and
        logged; ``lost``: its kind if it is dropped, None if it is kept (a retained topic
        for a broker that takes it, a stored record for its file)."""
        self.stats.too_large += 1
        if lost is not None:
            self.stats.drop(lost)
        log.error("mqtt message larger than the broker takes: not sent", topic=topic,
                  size=size, max_packet_size=limit, kept=lost is None)

    def _put_back(self, unsent: list[_Outgoing]) -> None:
        """Messages a broken session did not confirm go back in front, in their order,
        unless newer ones filled their queue; retained ones are sent again anyway."""
        for msg in reversed(unsent):
            if msg.retain:
                continue  # the next session re-sends every retained topic
            queue = self._lane(msg.kind)
            if len(queue) < self.settings.queue_size:
                queue.appendleft(msg)
            else:
                self.stats.drop(msg.kind)

    def _lane(self, kind: Kind) -> collections.deque[_Outgoing]:
        return self._answers if kind in ANSWERS else self._queue

    # ------------------------------------------------------------------ counters

    def _publish_stats(self) -> None:
        self.retain(self.topics.stats,
                    dumps({"ts": epoch_ms(self._clock()), **self.stats.summary()}))

    async def _report_stats(self) -> None:
        """Re-send the retained counters when one changed (``sent`` alone does not count:
        sending them changes it)."""
        last: dict[str, Any] | None = None
        while True:
            now = self.stats.summary()
            now.pop("sent")
            if now != last:
                self._publish_stats()
                last = now
            await asyncio.sleep(STATS_EVERY_S)
