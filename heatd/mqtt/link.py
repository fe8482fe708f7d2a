"""The MQTT link: one object between the runtime and the broker, made of four parts.

- ``Outbox`` (``outbox.py``): the publishing connection. Queues what is published
  (retained topics by latest value, the rest in bounded FIFOs), keeps a session with
  reconnects, and counts every loss on the retained ``stats`` topic.
- ``CommandListener`` (``listener.py``): a second connection, subscribed to the commands
  (and Home Assistant's status), so that no flood of them delays what the site publishes.
- ``SiteReporter`` (``reporter.py``): turns the site's facts (device state, availability,
  errors, control state, meter totals, events, info and discovery) into topics.
- ``CommandServer`` (``command_server.py``): admits, carries out, answers and audits remote
  commands read from the session's messages.

``MqttLink`` wires them together and keeps the one interface the publisher uses. Every
``publish*`` method is a plain function that never waits for the broker, so the control
cycle never waits for the network. A clean stop answers the commands (the one in progress
gets time to finish), says ``offline`` for every device and the site, and disconnects.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from heatd import __version__
from heatd.mqtt.command_payloads import CommandHandler, CommandLimits
from heatd.mqtt.command_server import AuditStore, CommandServer
from heatd.mqtt.listener import CommandListener
from heatd.mqtt.outbox import ONLINE, Outbox
from heatd.mqtt.reporter import SiteReporter
from heatd.mqtt.topics import Topics, check_device
from heatd.mqtt.wire import Incoming, Kind, LinkStats

if TYPE_CHECKING:
    from heatd.config import SiteConfig
    from heatd.drivers.reading import Reading
    from heatd.mqtt.settings import MqttSettings

log = structlog.get_logger(__name__)

COMMANDS_SUBSCRIPTION = SubscribeOptions(qos=1, retainAsPublished=True, retainHandling=2)
"""Retained commands are never sent at subscribe (retain handling 2), and one retained
while we are subscribed keeps its flag (retain as published), so it can be ignored."""


class _Published:
    """The command server's answers, queued on the outbox: replies at QoS 1 with the
    request's correlation data, audit records on the site's events."""

    def __init__(self, outbox: Outbox, events: str) -> None:
        self._outbox = outbox
        self._events = events

    def reply(self, topic: str, payload: bytes, correlation: bytes | None) -> None:
        props = None
        if correlation is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = correlation
        self._outbox.publish(topic, payload, qos=1, properties=props, kind="reply")

    def audit(self, record: bytes) -> None:
        self._outbox.publish(self._events, record, kind="audit")

    def full(self) -> bool:
        return self._outbox.answers_full()


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
        audits_settled: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """``audits_settled`` waits until ``audit_store`` has kept each record it took or
        handed it back to be published from memory (a file that writes later, in a thread
        of its own): a stop waits for it, so such a record still goes out through this
        link."""
        _check_devices(site)
        self.settings = settings
        self.topics = Topics(settings.base(site.site.id))
        self.stats = LinkStats()
        self._ha_status = f"{settings.homeassistant.prefix}/status"
        subscriptions = [(self.topics.commands, COMMANDS_SUBSCRIPTION)]
        if settings.homeassistant.discovery:
            subscriptions.append((self._ha_status, SubscribeOptions(qos=1)))
        self.outbox = Outbox(settings, self.topics, settings.identifier(site.site.id),
                             self.stats, on_connect=self.republish, clock=clock)
        self.listener = CommandListener(settings, settings.command_identifier(site.site.id),
                                        self.stats, subscriptions=subscriptions,
                                        receive=self._receive)
        limits = CommandLimits.from_site(site, settings.override_max_ttl)
        self.reporter = SiteReporter(self.outbox, settings, site, version=version,
                                     config_hash=config_hash or _hash(site), limits=limits,
                                     clock=clock, monotonic=monotonic)
        self.server = CommandServer(
            self.topics, settings, handler, _Published(self.outbox, self.topics.events),
            self.stats, limits=limits, reply_prefix=settings.replies(site.site.id),
            republish=self.republish, handler_timeout=handler_timeout, clock=clock,
            monotonic=monotonic, audit_store=audit_store)
        self._audits_settled = audits_settled

    @property
    def site(self) -> SiteConfig:
        return self.reporter.site

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Read credentials, queue info (and discovery), and start both sessions.

        Returns at once: the broker may be down, the link keeps trying. Raises ValueError
        when the password file or TLS files cannot be read, so the daemon does not start
        half-configured.
        """
        password = self.settings.read_password()
        tls = self.settings.tls.context() if self.settings.tls else None
        self.outbox.start(password, tls)
        self.listener.start(password, tls)
        self.reporter.describe_site()
        self.server.start()

    async def stop(self, timeout: float = 5.0, *, successor: SiteConfig | None = None
                   ) -> None:
        """Clean stop: answer every command, flush what is queued, publish a retained
        ``offline`` for each device and the site, disconnect.

        A command being carried out gets up to half of ``timeout`` to finish first, so its
        answer goes out through this link (a reload that replaces the link, say); queued
        and later commands are refused as stopping. The audit store then gets up to half
        of ``timeout`` to settle the audits it took (``audits_settled``), and the command
        session ends (nothing more is read). The flush gives
        up after ``timeout`` seconds (broker away): the last will then tells the truth once
        the broker notices the socket is gone; device availability stays as it was.

        ``successor``: the site as the link that takes over these same topics (a reload)
        will publish it. Nothing is said ``offline`` then, neither a device nor the site:
        they go on answering, and a retained ``offline`` would be a false alarm in every
        dashboard; only what the successor no longer has is deleted (see
        ``SiteReporter.hand_over``).
        """
        if not self.outbox.running:
            return
        await self.server.close(timeout / 2)
        if self._audits_settled is not None:  # the last answers' audits: kept or handed back
            try:
                await asyncio.wait_for(self._audits_settled(), timeout / 2)
            except TimeoutError:
                pass
            except Exception:  # the store's trouble must not keep the site from offline
                log.exception("audit store did not settle")
        await self.listener.stop()
        if successor is None:
            self.reporter.offline()
        else:
            self.reporter.hand_over(successor)
        await self.outbox.stop(timeout, offline=successor is None)

    def set_site(self, site: SiteConfig, config_hash: str | None = None) -> None:
        """Take a reloaded site file: new command bounds, info and discovery; the retained
        topics of devices that are gone are deleted. Connection settings are not re-read:
        a changed ``mqtt:`` section needs a new link (the publisher makes one)."""
        _check_devices(site)
        limits = CommandLimits.from_site(site, self.settings.override_max_ttl)
        self.server.configure(limits, self.settings.replies(site.site.id))
        self.reporter.set_site(site, config_hash or _hash(site), limits)

    async def __aenter__(self) -> MqttLink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def connected(self) -> bool:
        """Both sessions are up: the site is published and commands are read."""
        return self.outbox.connected and self.listener.connected

    async def wait_connected(self) -> None:
        """Until both sessions are up, the commands subscribed (for start-up ordering and
        tests)."""
        await self.outbox.wait_connected()
        await self.listener.wait_connected()

    # ------------------------------------------------------------ publishing API

    def publish_readings(
        self, device: str, readings: Mapping[str, Reading], ts: float | None = None
    ) -> bool:
        """Offer a device's latest readings; True when its state was sent (see
        ``SiteReporter.publish_readings``)."""
        return self.reporter.publish_readings(device, readings, ts)

    def publish_availability(self, device: str, online: bool) -> None:
        self.reporter.publish_availability(device, online)

    def publish_last_error(self, device: str, error: str | None, ts: float | None = None
                           ) -> None:
        self.reporter.publish_last_error(device, error, ts)

    def publish_meter_totals(self, totals: Mapping[str, Any], ts: float | None = None) -> None:
        self.reporter.publish_meter_totals(totals, ts)

    def publish_control_state(self, state: Mapping[str, Any], ts: float | None = None) -> None:
        self.reporter.publish_control_state(state, ts)

    def publish_event(self, kind: str, *, ts: float | None = None, **fields: Any) -> None:
        self.reporter.publish_event(kind, ts=ts, **fields)

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
        """Any topic (see ``Outbox.publish``); ValueError for an unpublishable one."""
        self.outbox.publish(topic, payload, retain=retain, qos=qos, properties=properties,
                            kind=kind)

    async def publish_confirmed(self, topic: str, payload: bytes) -> bool:
        """Publish at QoS 1 now and wait for the broker's PUBACK; False without one (no
        connection, or none within ``CONFIRM_TIMEOUT_S``): the caller keeps the message."""
        return await self.outbox.publish_confirmed(topic, payload)

    def republish(self) -> int:
        """Re-send every retained topic, every device's full state with its next
        readings; returns how many topics."""
        return self.reporter.republish()

    def take(self, name: str, payload: bytes, properties: Properties | None = None, *,
             retain: bool = False) -> None:
        """Admit one command message as if read from ``<base>/cmd/<name>``; never raises."""
        self.server.take(name, payload, properties, retain=retain)

    # ------------------------------------------------------------------ incoming

    async def _receive(self, messages: AsyncIterator[Incoming]) -> None:
        await self.server.consume(self._births(messages))

    async def _births(self, messages: AsyncIterator[Incoming]) -> AsyncIterator[Incoming]:
        """The messages, less Home Assistant's birth (``online`` on its status topic),
        which has the discovery messages re-sent."""
        async for message in messages:
            if message.topic == self._ha_status and self.settings.homeassistant.discovery:
                if message.payload == ONLINE:
                    self.reporter.rediscover()
                continue
            yield message


def _check_devices(site: SiteConfig) -> None:
    """Every device name must be a topic level that collides with none of the site's."""
    for device in site.devices:
        check_device(device)


def _hash(site: SiteConfig) -> str:
    """A stand-in config hash when the runtime has none (of the file's bytes)."""
    return hashlib.sha256(site.model_dump_json().encode()).hexdigest()[:16]
