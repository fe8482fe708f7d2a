"""The MQTT link: one connection task between the runtime and the broker.

The control cycle must never wait for the network, so every ``publish_*`` method here is a
plain function: retained topics go into a latest-value-per-topic map, everything else into
a bounded FIFO, and a connection task drains both. aiomqtt does not reconnect by itself,
so an outer loop builds a fresh client for every attempt, with exponential backoff and
jitter; after each (re)connect it resubscribes and re-sends every retained topic, because
the broker may have restarted without its retained store. A last will marks the site
``offline`` if the process dies; a clean stop says so explicitly before disconnecting.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers.backoff import Backoff
from heatd import __version__
from heatd.mqtt.commands import (
    CommandHandler,
    CommandLimits,
    CommandRefused,
    CommandResult,
    RepublishCommand,
    parse,
    peek_id,
)
from heatd.mqtt.discovery import discovery_payload, discovery_topic
from heatd.mqtt.payload import dumps, epoch_ms
from heatd.mqtt.settings import MqttSettings
from heatd.mqtt.state import DeviceReporter
from heatd.mqtt.topics import Topics, check_device, publishable

if TYPE_CHECKING:
    from drivers.reading import Reading
    from heatd.config import SiteConfig
    from heatd.mqtt.commands import Command

log = structlog.get_logger(__name__)

ONLINE, OFFLINE = b"online", b"offline"
AUDIT_PAYLOAD_CHARS = 256
COMMAND_BACKLOG = 64


@dataclass
class LinkStats:
    """Counters the runtime may publish with its cycle statistics."""

    connects: int = 0
    failures: int = 0
    """Connection attempts that failed plus sessions that broke."""
    sent: int = 0
    dropped: int = 0
    """Non-retained messages lost because the queue was full while the broker was away."""
    commands: int = 0
    refused: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    properties: Properties | None = None


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
    ) -> None:
        for device in site.devices:
            check_device(device)
        self.settings = settings
        self.site = site
        self.topics = Topics(settings.base(site.site.id))
        self.stats = LinkStats()
        self._handler = handler
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
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client_now: aiomqtt.Client | None = None
        self._commands: asyncio.Queue[tuple[str, aiomqtt.Message]] = asyncio.Queue(
            COMMAND_BACKLOG)
        self._worker: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._late: set[asyncio.Task[CommandResult]] = set()
        self._ha_status = f"{settings.homeassistant.prefix}/status"

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

    async def stop(self, timeout: float = 5.0) -> None:
        """Clean stop: flush what is queued, publish a retained ``offline``, disconnect.

        A command being carried out gets up to half of ``timeout`` to finish first, so its
        answer goes out through this link (a reload that replaces the link, say). The flush
        gives up after ``timeout`` seconds (broker away): the last will then tells the
        truth once the broker notices the socket is gone.
        """
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout / 2)
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
            if self._worker is not None:
                self._worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._worker

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
        self.site = site
        self._config_hash = config_hash or _hash(site)
        self._limits = CommandLimits.from_site(site, self.settings.override_max_ttl)
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
        self._set_retained(topic, dumps({"ts": epoch_ms(self._now(ts)), **body}))
        return True

    def publish_availability(self, device: str, online: bool) -> None:
        """Retained ``online``/``offline``: whether the device is answering."""
        self._set_retained(self.topics.availability(device), ONLINE if online else OFFLINE)

    def publish_control_state(self, state: Mapping[str, Any], ts: float | None = None) -> None:
        """Retained control state (mode, limits and their layers, setpoints, margin,
        cycle statistics), as the runtime built it; ``ts`` is added when missing."""
        self._set_retained(self.topics.control_state,
                           dumps({"ts": epoch_ms(self._now(ts)), **state}))

    def publish_event(self, kind: str, *, ts: float | None = None, **fields: Any) -> None:
        """A non-retained event (QoS 1), kept while offline and sent after reconnect."""
        self.publish(self.topics.events,
                     dumps({"ts": epoch_ms(self._now(ts)), "kind": kind, **fields}))

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        retain: bool = False,
        qos: int | None = None,
        properties: Properties | None = None,
    ) -> None:
        """Any topic. Retained: only the latest payload per topic is kept and re-sent
        after every reconnect. Not retained: queued in order, oldest dropped (and
        counted in ``stats.dropped``) beyond ``queue_size``. An unpublishable topic
        (wildcards, empty) raises ValueError here, at the caller, not in the link."""
        if not publishable(topic):
            raise ValueError(f"cannot publish to topic {topic!r}")
        data = payload.encode() if isinstance(payload, str) else payload
        level = self.settings.qos if qos is None else qos
        if retain:
            self._set_retained(topic, data, level)
            return
        if len(self._queue) >= self.settings.queue_size:
            self._queue.popleft()
            self.stats.dropped += 1
        self._queue.append(_Outgoing(topic, data, level, properties))
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
        if self.settings.homeassistant.discovery:
            self._set_retained(
                discovery_topic(self.settings.homeassistant, self.site.site.id),
                dumps(discovery_payload(self.site, self.topics, self.settings.homeassistant,
                                        self._limits, self._version)))

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
        await client.subscribe(self.topics.commands, qos=1)
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

    async def _send(self, client: aiomqtt.Client) -> None:
        """Drain retained changes and the queue; on stop, finish with ``offline``."""
        while True:
            self._wake.clear()
            await self._flush(client)
            if self._stopping.is_set():
                await client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
                return
            await self._wake.wait()

    async def _flush(self, client: aiomqtt.Client) -> None:
        while self._dirty or self._queue:
            while self._dirty:
                topic = next(iter(self._dirty))
                del self._dirty[topic]
                payload, qos = self._retained[topic]
                await client.publish(topic, payload, qos=qos, retain=True)
                self.stats.sent += 1
            if self._queue:
                msg = self._queue.popleft()
                try:
                    await client.publish(msg.topic, msg.payload, qos=msg.qos,
                                         properties=msg.properties)
                except (ValueError, TypeError) as exc:  # unsendable: retrying cannot help
                    self.stats.dropped += 1
                    log.error("mqtt message dropped", topic=msg.topic, error=str(exc))
                    continue
                except BaseException:
                    self._requeue(msg)
                    raise
                self.stats.sent += 1

    def _requeue(self, msg: _Outgoing) -> None:
        """Put an unsent message back in front, unless newer ones filled the queue."""
        if len(self._queue) < self.settings.queue_size:
            self._queue.appendleft(msg)
        else:
            self.stats.dropped += 1

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            if topic == self._ha_status and self.settings.homeassistant.discovery:
                if message.payload == ONLINE:
                    self._dirty[discovery_topic(self.settings.homeassistant,
                                                self.site.site.id)] = None
                    self._wake.set()
                continue
            name = self.topics.command_name(topic)
            if name is None:
                continue
            try:
                self._commands.put_nowait((name, message))
            except asyncio.QueueFull:
                self._refuse_busy(name, message)

    async def _serve_commands(self) -> None:
        """Carry out commands one at a time, in arrival order. A task of its own, not part
        of a connection, so a broker drop never cancels a handler half-way (a reload)."""
        while True:
            name, message = await self._commands.get()
            self._idle.clear()
            try:
                await self._command(name, message)
            finally:
                self._idle.set()

    def _refuse_busy(self, name: str, message: aiomqtt.Message) -> None:
        payload = message.payload if isinstance(message.payload, bytes) else b""
        self._conclude(name, message, peek_id(payload),
                       CommandResult(False, "busy: too many commands queued"), None, payload)

    async def _command(self, name: str, message: aiomqtt.Message) -> None:
        """Validate, hand over, reply and audit one command message."""
        payload = message.payload if isinstance(message.payload, bytes) else b""
        if message.retain:
            self.stats.commands += 1
            self.stats.refused += 1
            self._audit(name, peek_id(payload), False, "retained command ignored", payload,
                        None)
            return
        command: Command | None = None
        try:
            command = parse(name, payload, self._limits)
            id_ = command.id
        except CommandRefused as exc:
            result, id_ = CommandResult(False, exc.reason), exc.id
        else:
            result = await self._execute(command)
        self._conclude(name, message, id_, result, command, payload)

    def _conclude(self, name: str, message: aiomqtt.Message, id_: str | None,
                  result: CommandResult, command: Command | None, payload: bytes) -> None:
        self.stats.commands += 1
        if not result.accepted:
            self.stats.refused += 1
        reply = dumps({"ts": epoch_ms(self._clock()), "id": id_, "command": name,
                       "accepted": result.accepted, "reason": result.reason,
                       "detail": result.detail})
        self._reply(name, message.properties, reply)
        self._audit(name, id_, result.accepted, result.reason, payload, command)

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
            return CommandResult(False, f"internal error: {exc}")
        if not isinstance(result, CommandResult):
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

    def _reply(self, name: str, props: Properties | None, reply: bytes) -> None:
        """MQTT v5: on the response topic with the correlation data; otherwise (3.1.1)
        on ``<base>/cmd/<name>/response``. A response topic inside our own tree is not
        honoured: it could overwrite site topics or feed a reply back in as a command."""
        response_topic = getattr(props, "ResponseTopic", None) if props else None
        if (response_topic and publishable(response_topic)
                and not response_topic.startswith(f"{self.topics.base}/")):
            out = Properties(PacketTypes.PUBLISH)
            correlation = getattr(props, "CorrelationData", None)
            if correlation is not None:
                out.CorrelationData = correlation
            self.publish(response_topic, reply, qos=1, properties=out)
        else:
            self.publish(self.topics.response(name), reply, qos=1)

    def _audit(self, name: str, id_: str | None, accepted: bool, reason: str,
               payload: bytes, command: Command | None) -> None:
        fields: dict[str, Any] = {"command": name, "id": id_, "accepted": accepted,
                                  "reason": reason}
        if command is not None:
            fields["args"] = command.model_dump(mode="json", exclude={"id"})
        else:
            fields["payload"] = payload.decode("utf-8", "replace")[:AUDIT_PAYLOAD_CHARS]
        self.publish_event("command", **fields)
        log.info("mqtt command", **fields)


def _hash(site: SiteConfig) -> str:
    """A stand-in config hash when the runtime has none (of the file's bytes)."""
    return hashlib.sha256(site.model_dump_json().encode()).hexdigest()[:16]
