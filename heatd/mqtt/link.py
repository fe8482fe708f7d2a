"""The MQTT link: one connection task between the runtime and the broker.

The control cycle must never wait for the network, so every ``publish_*`` method here is a
plain function: retained topics go into a latest-value-per-topic map, everything else into
bounded FIFOs (command answers apart from the site's events), and a connection task drains
them. aiomqtt does not reconnect by itself, so an outer loop builds a fresh client for
every attempt, with exponential backoff and jitter; after each (re)connect it resubscribes
and re-sends every retained topic, because the broker may have restarted without its
retained store. A last will marks the site ``offline`` if the process dies; a clean stop
says so explicitly (every device first) before disconnecting.

Commands are hostile input: each is rate-limited by name, checked for size and nesting
before it is parsed, validated, and answered and audited whatever happens, including a bug
in the handler; reloads that arrive together are merged into one. Every message the link
loses (a full queue, a broker that refuses it) is counted on the retained ``stats`` topic.
The audit records of commands that got past the rate limit and the shape check go to an
``AuditStore`` when the publisher gives one (SQLite, sent after the broker's PUBACK only):
their rate is bounded by the gate, so a flood stays in the bounded in-memory queue.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from heatd import __version__
from heatd.drivers.backoff import Backoff
from heatd.mqtt.commands import (
    MODELS,
    CommandHandler,
    CommandLimits,
    CommandRefused,
    CommandResult,
    ReloadCommand,
    RepublishCommand,
    parse,
    peek_id,
)
from heatd.mqtt.discovery import discovery_messages
from heatd.mqtt.gate import CommandGate
from heatd.mqtt.payload import dumps, dumps_ready, epoch_ms
from heatd.mqtt.settings import MqttSettings
from heatd.mqtt.state import DeviceReporter
from heatd.mqtt.topics import Topics, check_device, publishable
from heatd.tasks import cancel_all

if TYPE_CHECKING:
    from paho.mqtt.client import CallbackOnPublish_v2

    from heatd.config import SiteConfig
    from heatd.drivers.reading import Reading
    from heatd.mqtt.commands import Command

log = structlog.get_logger(__name__)

ONLINE, OFFLINE = b"online", b"offline"
AUDIT_PAYLOAD_CHARS = 256
COMMAND_BACKLOG = 64
COMMAND_INBOX = 512
"""Messages received but not yet read by the link; beyond, they are discarded and counted
(``inbox_dropped``), so a flood faster than heatd reads cannot grow its memory."""
MAX_INCOMING_PACKET = 64 * 1024
"""Told to the broker (MQTT v5 Maximum Packet Size), which then sends heatd nothing
larger: the inbox holds at most ``COMMAND_INBOX`` times this."""
STOPPING = "heatd is stopping; send it again once it is back online"
STATS_EVERY_S = 1.0
"""The retained ``stats`` topic is re-sent at most this often, and only on a change."""
NO_DELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
"""Small packets go out at once: with Nagle's algorithm, a reply written right after an
acknowledgement waits for the broker's delayed ACK (40 ms on Linux) each time."""
COMMANDS_SUBSCRIPTION = SubscribeOptions(qos=1, retainAsPublished=True, retainHandling=2)
"""Retained commands are never sent at subscribe (retain handling 2), and one retained
while we are subscribed keeps its flag (retain as published), so it can be ignored."""


Kind = Literal["reply", "audit", "event", "other"]
"""What a non-retained message is, for the drop counters. Replies and audit records of
commands wait in a queue of their own, so a flood of commands cannot push the site's own
events (alarms) out of theirs."""
ANSWERS: frozenset[Kind] = frozenset({"reply", "audit"})
AuditStore = Callable[[bytes], bool]
"""Keeps an audit record until the broker acknowledged it; False when it could not (the
record then takes the in-memory queue). Never raises."""


@dataclass
class LinkStats:
    """The link's counters, published retained on ``<base>/stats``."""

    connects: int = 0
    failures: int = 0
    """Connection attempts that failed plus sessions that broke."""
    sent: int = 0
    dropped: int = 0
    """Non-retained messages lost: queue full, or unsendable. Sum of ``dropped_by_kind``."""
    dropped_by_kind: dict[str, int] = field(
        default_factory=lambda: {"reply": 0, "audit": 0, "event": 0, "other": 0})
    broker_refused: int = 0
    """Publishes the broker acknowledged with an error (MQTT v5), e.g. denied by its ACL."""
    commands: int = 0
    """Command messages concluded (each answered and audited, or ignored if retained)."""
    refused: int = 0
    """Of those, answered ``accepted: false`` (the three below and ignored ones included)."""
    busy: int = 0
    """Refused because ``COMMAND_BACKLOG`` commands were already waiting."""
    rate_limited: int = 0
    """Refused by the per-name token bucket (``command_rate``, ``command_burst``)."""
    merged: int = 0
    """Reload requests answered with the result of another reload."""
    internal_errors: int = 0
    inbox_dropped: int = 0
    """Messages discarded unread: ``COMMAND_INBOX`` were already waiting (a flood)."""
    last_error: str | None = None

    def drop(self, kind: Kind) -> None:
        self.dropped += 1
        self.dropped_by_kind[kind] = self.dropped_by_kind.get(kind, 0) + 1

    def summary(self) -> dict[str, Any]:
        """A copy, as published on ``<base>/stats``."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    properties: Properties | None = None
    kind: Kind = "other"


@dataclass(slots=True)
class _Request:
    """One command message on its way through the link."""

    name: str
    payload: bytes
    reply_to: str
    correlation: bytes | None = None
    id: str | None = None
    command: Command | None = None
    durable: bool = False
    """Its audit goes to the ``AuditStore``: it passed the rate limit and the shape check
    (or, retained, the bucket shared by unknown names)."""


class MqttLink:
    """Publishes the site and takes commands; start it, feed it, stop it.

    All ``publish*`` methods are synchronous and must be called from the event loop's
    thread; they never wait for the broker, whether it is up, slow or gone.
    """

    def __init__(
        self,
        settings: MqttSettings,
        site: SiteConfig,
        handler: CommandHandler,
        *,
        version: str = __version__,
        config_hash: str | None = None,
        handler_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        audit_store: AuditStore | None = None,
    ) -> None:
        for device in site.devices:
            check_device(device)
        self.settings = settings
        self.site = site
        self.topics = Topics(settings.base(site.site.id))
        self.stats = LinkStats()
        self._handler = handler
        self._audit_store = audit_store
        self._handler_timeout = handler_timeout
        self._version = version
        self._config_hash = config_hash or _hash(site)
        self._started = clock()
        self._clock = clock
        self._monotonic = monotonic
        self._limits = CommandLimits.from_site(site, settings.override_max_ttl)
        self._reporters: dict[str, DeviceReporter] = {}
        self._retained: dict[str, tuple[bytes, int]] = {}
        self._dirty: dict[str, None] = {}  # ordered set of retained topics to (re)send
        self._queue: collections.deque[_Outgoing] = collections.deque()
        self._answers: collections.deque[_Outgoing] = collections.deque()
        """Command replies and audit records: sent after ``_queue``, dropped first."""
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client_now: aiomqtt.Client | None = None
        self._commands: asyncio.Queue[_Request] = asyncio.Queue(COMMAND_BACKLOG)
        self._worker: asyncio.Task[None] | None = None
        self._stats_task: asyncio.Task[None] | None = None
        self._gate = CommandGate(MODELS, settings.command_rate, settings.command_burst,
                                 monotonic())
        self._reply_prefix = settings.replies(site.site.id)
        self._closing = False
        """Set by stop(): commands are refused from then on, queued ones not started."""
        self._reload_followers: list[_Request] | None = None
        """Reload requests waiting on the reload queued or running; None when none is."""
        self._last_reload: tuple[float, CommandResult] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._late: set[asyncio.Task[CommandResult]] = set()
        self._ha_status = f"{settings.homeassistant.prefix}/status"
        self._discovery: set[str] = set()
        """Discovery topics that carry a configuration (not a deletion) for this site."""

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Read credentials, queue info (and discovery), and start the connection task.

        Returns at once: the broker may be down, the link keeps trying. Raises ValueError
        when the password file or TLS files cannot be read, so the daemon does not start
        half-configured.
        """
        if self._task is not None or self._stopping.is_set():
            raise RuntimeError("a link starts once; make a new one after stop()")
        password = self.settings.read_password()
        tls = self.settings.tls.context() if self.settings.tls else None
        self._describe_site()
        self._task = asyncio.create_task(self._run(password, tls), name="mqtt-link")
        self._worker = asyncio.create_task(self._serve_commands(), name="mqtt-commands")
        self._stats_task = asyncio.create_task(self._report_stats(), name="mqtt-stats")

    async def stop(self, timeout: float = 5.0) -> None:
        """Clean stop: answer every command, flush what is queued, publish a retained
        ``offline`` for each device and the site, disconnect.

        A command being carried out gets up to half of ``timeout`` to finish first, so its
        answer goes out through this link (a reload that replaces the link, say); queued
        and later commands are refused as stopping. The flush gives up after ``timeout``
        seconds (broker away): the last will then tells the truth once the broker notices
        the socket is gone; device availability stays as it was.
        """
        if self._task is None:
            return
        self._closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout / 2)
        await cancel_all([t for t in (self._worker, self._stats_task) if t is not None])
        self._refuse_queued()
        for device in self.site.devices:  # nobody vouches for them once we are gone
            self.publish_availability(device, False)
        self._stopping.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        finally:
            self._task = None

    def set_site(self, site: SiteConfig, config_hash: str | None = None) -> None:
        """Take a reloaded site file: new command bounds, info and discovery; the retained
        topics of devices that are gone are deleted. Connection settings are not re-read:
        a changed ``mqtt:`` section needs a new link (the publisher makes one)."""
        for device in site.devices:
            check_device(device)
        for gone in set(self.site.devices) - set(site.devices):
            self._reporters.pop(gone, None)
            self._set_retained(self.topics.state(gone), b"")  # empty retained = delete
            self._set_retained(self.topics.availability(gone), b"")
            self._set_retained(self.topics.last_error(gone), b"")
        self.site = site
        self._config_hash = config_hash or _hash(site)
        self._limits = CommandLimits.from_site(site, self.settings.override_max_ttl)
        self._reply_prefix = self.settings.replies(site.site.id)
        self._describe_site()

    async def __aenter__(self) -> MqttLink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Until the link is connected and subscribed (for start-up ordering and tests)."""
        await self._connected.wait()

    # ------------------------------------------------------------ publishing API

    def publish_readings(
        self, device: str, readings: Mapping[str, Reading], ts: float | None = None
    ) -> bool:
        """Offer a device's latest readings; sends its retained state only when some
        point moved beyond its deadband, changed quality, or the full refresh is due.

        ``ts`` (epoch seconds) stamps the state; default now. Returns True when sent.
        """
        reporter = self._reporters.get(device)
        if reporter is None:
            topic = self.topics.state(device)  # validates the name once
            reporter = DeviceReporter(
                lambda point: self.settings.deadband_for(device, point),
                self.settings.full_refresh)
            self._reporters[device] = reporter
        else:
            topic = self.topics.state(device)
        body = reporter.update(readings, self._monotonic())
        if body is None:
            return False
        self._set_retained(topic, dumps_ready({"ts": epoch_ms(self._now(ts)), **body}))
        return True

    def publish_availability(self, device: str, online: bool) -> None:
        """Retained ``online``/``offline``: whether the device is answering."""
        self._set_retained(self.topics.availability(device), ONLINE if online else OFFLINE)

    def publish_last_error(self, device: str, error: str | None, ts: float | None = None
                           ) -> None:
        """Retained ``{"ts", "error"}``: why the device is not answering, or the error it
        answered with, in the driver's words; cleared (an empty retained message) once
        the device is healthy."""
        topic = self.topics.last_error(device)
        if error is None:
            self._set_retained(topic, b"")
        else:
            self._set_retained(topic, dumps({"ts": epoch_ms(self._now(ts)), "error": error}))

    def publish_meter_totals(self, totals: Mapping[str, Any], ts: float | None = None) -> None:
        """Retained energy totals per contract (kWh since its first record), what Home
        Assistant's energy sensors read."""
        self._set_retained(self.topics.meter_totals,
                           dumps({"ts": epoch_ms(self._now(ts)), **totals}))

    def publish_control_state(self, state: Mapping[str, Any], ts: float | None = None) -> None:
        """Retained control state (mode, limits and their layers, setpoints, margin,
        cycle statistics), as the runtime built it; ``ts`` is added when missing."""
        self._set_retained(self.topics.control_state,
                           dumps({"ts": epoch_ms(self._now(ts)), **state}))

    def publish_event(self, kind: str, *, ts: float | None = None, **fields: Any) -> None:
        """A non-retained event (QoS 1), kept while offline and sent after reconnect."""
        self.publish(self.topics.events,
                     dumps({"ts": epoch_ms(self._now(ts)), "kind": kind, **fields}),
                     kind="event")

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
            self._set_retained(topic, data, level)
            return
        queue = self._lane(kind)
        if len(queue) >= self.settings.queue_size:
            self.stats.drop(queue.popleft().kind)
        queue.append(_Outgoing(topic, data, level, properties, kind))
        self._wake.set()

    async def publish_confirmed(self, topic: str, payload: bytes, timeout: float = 10.0
                                ) -> bool:
        """Publish at QoS 1 now and wait for the broker's acknowledgement; False when
        there is no connection or no PUBACK came (the caller keeps the message)."""
        client = self._client_now
        if client is None or not self.connected:
            return False
        try:
            await client.publish(topic, payload, qos=1, timeout=timeout)
        except aiomqtt.MqttError:
            return False
        self.stats.sent += 1
        return True

    def republish(self) -> int:
        """Re-send every retained topic, and make the next ``publish_readings`` of each
        device send its full current state; returns how many topics."""
        for reporter in self._reporters.values():
            reporter.force()
        for topic in self._retained:
            self._dirty[topic] = None
        self._wake.set()
        return len(self._retained)

    # ------------------------------------------------------------------ internals

    def _now(self, ts: float | None) -> float:
        return self._clock() if ts is None else ts

    def _set_retained(self, topic: str, payload: bytes, qos: int | None = None) -> None:
        self._retained[topic] = (payload, self.settings.qos if qos is None else qos)
        self._dirty[topic] = None
        self._wake.set()

    def _describe_site(self) -> None:
        """Queue the retained info (and discovery) for the current site."""
        self._set_retained(self.topics.info, dumps(self._info()))
        if not self.settings.homeassistant.discovery:
            return
        messages = discovery_messages(self.site, self.topics, self.settings.homeassistant,
                                      self._limits, self._version)
        gone = self._discovery - {t for t, body in messages.items() if body is not None}
        for topic in gone:  # entities of a reloaded site that it no longer has
            self._set_retained(topic, b"")
        for topic, body in messages.items():
            self._set_retained(topic, b"" if body is None else dumps(body))
        self._discovery = {t for t, body in messages.items() if body is not None}

    def _info(self) -> dict[str, Any]:
        return {
            "ts": epoch_ms(self._clock()),
            "site": self.site.site.id,
            "name": self.site.site.name,
            "version": self._version,
            "started": epoch_ms(self._started),
            "config_hash": self._config_hash,
            "devices": {
                name: {
                    "protocol": device.protocol,
                    "points": {
                        p: {"unit": point.unit, "writable": point.writable}
                        for p, point in device.points.items()
                    },
                }
                for name, device in self.site.devices.items()
            },
            "roles": {role: self.site.role_points(role) for role in self.site.roles},
        }

    def _client(self, password: str | None, tls: Any) -> aiomqtt.Client:
        s = self.settings
        connect = Properties(PacketTypes.CONNECT)
        connect.MaximumPacketSize = MAX_INCOMING_PACKET
        return aiomqtt.Client(
            s.host,
            s.effective_port,
            username=s.username,
            password=password,
            identifier=s.identifier(self.site.site.id),
            protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(self.topics.status, OFFLINE, qos=1, retain=True),
            keepalive=s.keepalive,
            clean_start=True,
            tls_context=tls,
            timeout=10.0,
            socket_options=(NO_DELAY,),
            max_queued_incoming_messages=COMMAND_INBOX,
            properties=connect,
        )

    async def _run(self, password: str | None, tls: Any) -> None:
        """Connect, serve, and on any MQTT failure wait (backoff with jitter) and retry."""
        backoff = Backoff(self.settings.reconnect_min, self.settings.reconnect_max)
        while not self._stopping.is_set():
            try:
                async with self._client(password, tls) as client:
                    self.stats.connects += 1
                    backoff.reset()
                    log.info("mqtt connected", host=self.settings.host,
                             port=self.settings.effective_port)
                    await self._session(client)
                    return
            except aiomqtt.MqttError as exc:
                self.stats.failures += 1
                self.stats.last_error = str(exc)
            except Exception as exc:  # a bug here must not end publishing for good
                self.stats.last_error = repr(exc)
                log.exception("mqtt link failed")
            finally:
                self._connected.clear()
            pause = backoff.next()
            log.warning("mqtt link down", error=self.stats.last_error, retry_in=round(pause, 2))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)

    async def _session(self, client: aiomqtt.Client) -> None:
        self._instrument(client)
        await client.subscribe(self.topics.commands, options=COMMANDS_SUBSCRIPTION)
        if self.settings.homeassistant.discovery:
            await client.subscribe(self._ha_status, qos=1)
        await client.publish(self.topics.status, ONLINE, qos=1, retain=True)
        self.republish()
        self._client_now = client
        self._connected.set()
        tasks = {asyncio.create_task(self._receive(client)),
                 asyncio.create_task(self._send(client))}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._client_now = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()

    def _instrument(self, client: aiomqtt.Client) -> None:
        """Count what aiomqtt loses without a trace: publishes the broker refuses (it
        drops the PUBACK reason code; an ACL that denies a reply topic, say) and messages
        beyond a full inbox (it logs a warning for each). Its paho callbacks are wrapped,
        private but the only way in; paho runs them on the event loop's thread, with a
        published message still among its outgoing ones."""
        paho = client._client
        # aiomqtt speaks paho's callback API version 2
        on_publish = cast("CallbackOnPublish_v2 | None", paho.on_publish)
        on_message, inbox = paho.on_message, client._queue
        if on_publish is None or on_message is None:
            raise RuntimeError("aiomqtt set no paho callbacks to wrap")

        def counted_publish(c: Any, userdata: Any, mid: int, reason: Any, props: Any
                            ) -> None:
            try:
                if getattr(reason, "is_failure", False):
                    message = c._out_messages.get(mid)
                    self._broker_refused(message.topic if message else None, str(reason))
            finally:  # aiomqtt's own bookkeeping, whatever happened above
                on_publish(c, userdata, mid, reason, props)

        def bounded_message(c: Any, userdata: Any, message: Any) -> None:
            if inbox.full():
                self.stats.inbox_dropped += 1
                return
            on_message(c, userdata, message)

        paho.on_publish = counted_publish
        paho.on_message = bounded_message

    def _broker_refused(self, topic: str | None, reason: str) -> None:
        self.stats.broker_refused += 1
        log.warning("mqtt broker refused a publish; check its ACL", topic=topic,
                    reason=reason, refused=self.stats.broker_refused)

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
                await client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
                return
            await self._wake.wait()

    async def _flush(self, client: aiomqtt.Client) -> None:
        while self._dirty or self._queue or self._answers:
            while self._dirty:
                topic = next(iter(self._dirty))
                del self._dirty[topic]
                payload, qos = self._retained[topic]
                await client.publish(topic, payload, qos=qos, retain=True)
                self.stats.sent += 1
            queue = self._queue or self._answers
            if queue:
                msg = queue.popleft()
                try:
                    await client.publish(msg.topic, msg.payload, qos=msg.qos,
                                         properties=msg.properties)
                except (ValueError, TypeError) as exc:  # unsendable: retrying cannot help
                    self.stats.drop(msg.kind)
                    log.error("mqtt message dropped", topic=msg.topic, error=str(exc))
                    continue
                except BaseException:
                    self._requeue(msg)
                    raise
                self.stats.sent += 1

    def _requeue(self, msg: _Outgoing) -> None:
        """Put an unsent message back in front, unless newer ones filled the queue."""
        queue = self._lane(msg.kind)
        if len(queue) < self.settings.queue_size:
            queue.appendleft(msg)
        else:
            self.stats.drop(msg.kind)

    def _lane(self, kind: Kind) -> collections.deque[_Outgoing]:
        return self._answers if kind in ANSWERS else self._queue

    def _publish_stats(self) -> None:
        self._set_retained(self.topics.stats,
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

    # ------------------------------------------------------------------ commands

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            if topic == self._ha_status and self.settings.homeassistant.discovery:
                if message.payload == ONLINE:
                    self._dirty.update(dict.fromkeys(self._discovery))
                    self._wake.set()
                continue
            name = self.topics.command_name(topic)
            if name is None:
                continue
            payload = message.payload if isinstance(message.payload, bytes) else b""
            self.take(name, payload, message.properties, retain=message.retain)

    def take(self, name: str, payload: bytes, properties: Properties | None = None, *,
             retain: bool = False) -> None:
        """Admit one message from ``<base>/cmd/<name>``: ignore it (retained), refuse it
        (rate, stopping, shape, validation, reply topic, backlog) or queue it.

        Synchronous and never raises: whatever goes wrong, the command is answered and
        audited, and the link goes on with the next one."""
        request = _Request(name, payload, self.topics.response(name))
        try:
            self._admit(request, properties, retain)
        except Exception as exc:  # a bug must not cost the session its receive loop
            self._internal_error(request, exc)

    def _admit(self, request: _Request, props: Properties | None, retain: bool) -> None:
        if retain:  # a stale order must not act when it is replayed
            request.id = peek_id(request.payload)
            request.durable = self._gate.admit(CommandGate.OTHER, self._monotonic())
            self._conclude(request, CommandResult(False, "retained command ignored"),
                           reply=False)
            return
        misdirected = self._route_reply(request, props)
        if not self._gate.admit(request.name, self._monotonic()):
            self.stats.rate_limited += 1
            request.id = peek_id(request.payload)
            self._conclude(request, CommandResult(
                False, f"rate limited: at most {self._gate.rate:g} commands a second "
                       f"on cmd/{request.name[:64]}; send it again later"), quiet=True)
            return
        if self._closing:
            request.id = peek_id(request.payload)
            self._conclude(request, CommandResult(False, STOPPING))
            return
        try:
            request.command = parse(request.name, request.payload, self._limits)
        except CommandRefused as exc:
            request.id = exc.id
            request.durable = not exc.unread  # refused on its content, not its shape
            self._conclude(request, CommandResult(False, exc.reason))
            return
        request.id = request.command.id
        request.durable = True
        if misdirected is not None:
            self._conclude(request, CommandResult(False, misdirected))
        elif not (isinstance(request.command, ReloadCommand) and self._merge_reload(request)):
            self._enqueue(request)

    def _enqueue(self, request: _Request) -> None:
        try:
            self._commands.put_nowait(request)
        except asyncio.QueueFull:
            if isinstance(request.command, ReloadCommand):
                self._reload_followers = None  # it leads no reload after all
            self.stats.busy += 1
            self._conclude(request, CommandResult(False, "busy: too many commands queued"))

    def _route_reply(self, request: _Request, props: Properties | None) -> str | None:
        """Send the reply to the v5 response topic when it lies below the reply prefix;
        otherwise keep the 3.1.1 topic and say why the command is refused (an arbitrary
        topic would let any commander make heatd publish where it chooses)."""
        if props is None:
            return None
        request.correlation = getattr(props, "CorrelationData", None)
        topic = getattr(props, "ResponseTopic", None)
        if not topic:
            return None
        if publishable(topic) and topic.startswith(f"{self._reply_prefix}/"):
            request.reply_to = topic
            return None
        return (f"response topic {topic[:128]!r} refused: replies go only below "
                f"{self._reply_prefix}/ (mqtt.response_prefix)")

    def _merge_reload(self, request: _Request) -> bool:
        """True when this reload is answered by another: the one queued or running, or
        the one that succeeded less than ``reload_min_interval`` ago. A flood of reloads
        thus costs at most one reload per interval; an operator who has just fixed a
        refused file does not have to wait out the interval."""
        if self._reload_followers is not None:
            self._reload_followers.append(request)
            return True
        if self._last_reload is not None:
            at, result = self._last_reload
            ago = self._monotonic() - at
            if result.accepted and ago < self.settings.reload_min_interval:
                self.stats.merged += 1
                self._conclude(request, CommandResult(
                    result.accepted, f"merged with the reload {ago:.1f} s ago: {result.reason}",
                    {**result.detail, "merged": True}))
                return True
        self._reload_followers = []
        return False

    def _settle_reload(self, leader: _Request, result: CommandResult) -> None:
        followers, self._reload_followers = self._reload_followers or [], None
        self._last_reload = (self._monotonic(), result)
        merged = CommandResult(result.accepted,
                               f"merged into reload {leader.id or '(no id)'}: {result.reason}",
                               {**result.detail, "merged": True})
        for request in followers:
            self.stats.merged += 1
            self._answer(request, merged)

    async def _serve_commands(self) -> None:
        """Carry out commands one at a time, in arrival order. A task of its own, not part
        of a connection, so a broker drop never cancels a handler half-way (a reload).
        Supervised: an exception in one command is answered and logged, never fatal."""
        while True:
            request = await self._commands.get()
            if self._closing:  # queued before stop(): not started now
                self._answer(request, CommandResult(False, STOPPING))
                continue
            self._idle.clear()
            try:
                await self._carry_out(request)
            finally:
                self._idle.set()

    async def _carry_out(self, request: _Request) -> None:
        result = CommandResult(False, "heatd stopped before this command finished")
        try:
            assert request.command is not None  # only parsed commands are queued
            result = await self._execute(request.command)
        except asyncio.CancelledError:  # stop() gave up waiting: answer, then go
            self._answer(request, result)
            raise
        except Exception as exc:
            result = self._bug(request, exc)
        self._answer(request, result)

    def _answer(self, request: _Request, result: CommandResult) -> None:
        """Conclude a queued command (falling back to an internal error), then the
        reloads merged into it."""
        try:
            self._conclude(request, result)
        except Exception as exc:
            result = self._internal_error(request, exc)
        if isinstance(request.command, ReloadCommand):
            self._settle_reload(request, result)

    def _refuse_queued(self) -> None:
        while not self._commands.empty():
            self._answer(self._commands.get_nowait(), CommandResult(False, STOPPING))

    def _bug(self, request: _Request, exc: Exception) -> CommandResult:
        """Log a bug in heatd with its traceback; the answer names only its type."""
        self.stats.internal_errors += 1
        log.error("command failed inside heatd", command=request.name, id=request.id,
                  exc_info=exc)
        return CommandResult(False, f"internal error: {type(exc).__name__}")

    def _internal_error(self, request: _Request, exc: Exception) -> CommandResult:
        """Answer and audit a command whose handling hit a bug in heatd."""
        result = self._bug(request, exc)
        try:
            self._conclude(request, result)
        except Exception:
            log.exception("command could not be answered", command=request.name)
        return result

    def _conclude(self, request: _Request, result: CommandResult, *, reply: bool = True,
                  quiet: bool = False) -> None:
        """Count, reply (unless ignored) and audit: every command message ends here once.
        Whatever can fail (a detail that is not JSON) fails before the first publish, so
        a fallback answer is never a second one. ``quiet`` logs at debug level only: a
        flood is counted in ``stats``, not written to the journal line by line."""
        fields: dict[str, Any] = {"command": request.name, "id": request.id,
                                  "accepted": result.accepted, "reason": result.reason}
        if request.command is not None:
            fields["args"] = request.command.model_dump(mode="json", exclude={"id"})
        else:
            fields["payload"] = request.payload.decode("utf-8", "replace")[
                :AUDIT_PAYLOAD_CHARS]
        now = self._clock()
        audit = dumps({"ts": epoch_ms(now), "kind": "command", **fields})
        answer = dumps({"ts": epoch_ms(now), "id": request.id, "command": request.name,
                        "accepted": result.accepted, "reason": result.reason,
                        "detail": result.detail})
        self.stats.commands += 1
        if not result.accepted:
            self.stats.refused += 1
        if reply:
            props = None
            if request.correlation is not None:
                props = Properties(PacketTypes.PUBLISH)
                props.CorrelationData = request.correlation
            self.publish(request.reply_to, answer, qos=1, properties=props, kind="reply")
        self._audit(request, audit)
        (log.debug if quiet else log.info)("mqtt command", **fields)

    def _audit(self, request: _Request, record: bytes) -> None:
        """Durable when the command earned it and a store takes it; else the bounded
        answers queue, as for a flood (also when the store fails: disk full, say)."""
        if request.durable and self._audit_store is not None:
            try:
                if self._audit_store(record):
                    return
            except Exception:
                log.exception("audit store failed", command=request.name)
        self.publish(self.topics.events, record, kind="audit")

    async def _execute(self, command: Command) -> CommandResult:
        if isinstance(command, RepublishCommand):
            return CommandResult(True, "retained topics re-sent",
                                 {"topics": self.republish()})
        task = asyncio.ensure_future(self._handler(command))
        try:
            result = await asyncio.wait_for(asyncio.shield(task), self._handler_timeout)
        except TimeoutError:
            # Never cancel the runtime half-way; it finishes (and logs) on its own.
            self._late.add(task)
            task.add_done_callback(self._late_done)
            return CommandResult(False, f"no answer within {self._handler_timeout:g} s; "
                                 "it may still take effect (see events)")
        except Exception as exc:  # the runtime's bug must not take the link down
            log.exception("command handler failed", command=command.name)
            self.stats.internal_errors += 1
            return CommandResult(False, f"internal error: {type(exc).__name__}: {exc}"[:256])
        if not isinstance(result, CommandResult):
            self.stats.internal_errors += 1
            return CommandResult(False, "internal error: handler returned no CommandResult")
        return result

    def _late_done(self, task: asyncio.Task[CommandResult]) -> None:
        self._late.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        result = None if exc is not None else task.result()
        log.warning("late command result", error=str(exc) if exc else None,
                    accepted=getattr(result, "accepted", None),
                    reason=getattr(result, "reason", None))



def _hash(site: SiteConfig) -> str:
    """A stand-in config hash when the runtime has none (of the file's bytes)."""
    return hashlib.sha256(site.model_dump_json().encode()).hexdigest()[:16]
