"""The site's facts as MQTT topics: device state, availability and errors, control state,
meter totals, events, the site description and Home Assistant discovery.

Each ``publish_*`` turns what the runtime knows into a topic and a JSON payload and hands
it to the outbox, retained (the latest value is what matters) or queued (events); none of
them waits for the broker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from heatd.mqtt.outbox import OFFLINE, ONLINE
from heatd.mqtt.payload import dumps, dumps_ready, epoch_ms
from heatd.mqtt.report_by_exception import DeviceReporter

if TYPE_CHECKING:
    from heatd.config import SiteConfig
    from heatd.drivers.reading import Reading
    from heatd.mqtt.command_payloads import CommandLimits
    from heatd.mqtt.outbox import Outbox
    from heatd.mqtt.settings import MqttSettings


class SiteReporter:
    """Publishes one site through an outbox; ``set_site`` takes a reloaded site file."""

    def __init__(
        self,
        outbox: Outbox,
        settings: MqttSettings,
        site: SiteConfig,
        *,
        version: str,
        config_hash: str,
        limits: CommandLimits,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        self.outbox = outbox
        self.settings = settings
        self.topics = outbox.topics
        self.site = site
        self._version = version
        self._config_hash = config_hash
        self._limits = limits
        self._clock = clock
        self._monotonic = monotonic
        self._started = clock()
        self._reporters: dict[str, DeviceReporter] = {}
        self._discovery: set[str] = set()
        """Discovery topics that carry a configuration (not a deletion) for this site."""

    def set_site(self, site: SiteConfig, config_hash: str, limits: CommandLimits) -> None:
        """Describe the new site (info, and discovery, which deletes the entities that
        are gone), then delete the retained topics of the devices that are gone."""
        old = self.site
        self.site = site
        self._config_hash = config_hash
        self._limits = limits
        self.describe_site()
        self._forget(set(old.devices) - set(site.devices))

    def hand_over(self, site: SiteConfig) -> None:
        """Another link takes over these topics with ``site``: delete what it will not
        publish (first the discovery entities, so Home Assistant removes them, then the
        retained topics of the devices that are gone), and say nothing else."""
        if self.settings.homeassistant.discovery:
            from heatd.mqtt.discovery import discovery_messages

            kept = {t for t, body in discovery_messages(
                site, self.topics, self.settings.homeassistant, self._limits,
                self._version).items() if body is not None}
            for topic in self._discovery - kept:
                self.outbox.retain(topic, b"")
            self._discovery &= kept
        self._forget(set(self.site.devices) - set(site.devices))

    def _forget(self, devices: set[str]) -> None:
        """A removed device's retained topics deleted (an empty retained message), as
        Home Assistant expects of a removed entity: no state, no availability, no error
        left behind, neither ``offline`` (it is not down: it is gone)."""
        for gone in sorted(devices):
            self._reporters.pop(gone, None)
            self.outbox.retain(self.topics.state(gone), b"")
            self.outbox.retain(self.topics.availability(gone), b"")
            self.outbox.retain(self.topics.last_error(gone), b"")

    # ------------------------------------------------------------------ devices

    def publish_readings(
        self, device: str, readings: Mapping[str, Reading], ts: float | None = None
    ) -> bool:
        """Offer a device's latest readings; sends its retained state only when some
        point moved beyond its deadband, changed quality, or the full refresh is due.

        ``ts`` (epoch seconds) stamps the state; default now. Returns True when sent.
        """
        topic = self.topics.state(device)  # validates the name
        reporter = self._reporters.get(device)
        if reporter is None:
            reporter = DeviceReporter(
                lambda point: self.settings.deadband_for(device, point),
                self.settings.full_refresh)
            self._reporters[device] = reporter
        body = reporter.update(readings, self._monotonic())
        if body is None:
            return False
        self.outbox.retain(topic, dumps_ready({"ts": epoch_ms(self._now(ts)), **body}))
        return True

    def publish_availability(self, device: str, online: bool) -> None:
        """Retained ``online``/``offline``: whether the device is answering."""
        self.outbox.retain(self.topics.availability(device), ONLINE if online else OFFLINE)

    def publish_last_error(self, device: str, error: str | None, ts: float | None = None
                           ) -> None:
        """Retained ``{"ts", "error"}``: why the device is not answering, or the error it
        answered with, in the driver's words; cleared (an empty retained message) once
        the device is healthy."""
        topic = self.topics.last_error(device)
        if error is None:
            self.outbox.retain(topic, b"")
        else:
            self.outbox.retain(topic, dumps({"ts": epoch_ms(self._now(ts)), "error": error}))

    def offline(self) -> None:
        """Every device ``offline``: once heatd is gone nobody vouches for them."""
        for device in self.site.devices:
            self.publish_availability(device, False)

    # ------------------------------------------------------------------ the site

    def publish_meter_totals(self, totals: Mapping[str, Any], ts: float | None = None) -> None:
        """Retained energy totals per contract (kWh since its first record), what Home
        Assistant's energy sensors read."""
        self.outbox.retain(self.topics.meter_totals,
                           dumps({"ts": epoch_ms(self._now(ts)), **totals}))

    def publish_control_state(self, state: Mapping[str, Any], ts: float | None = None) -> None:
        """Retained control state (mode, limits and their layers, setpoints, margin,
        cycle statistics), as the runtime built it; ``ts`` is added when missing."""
        self.outbox.retain(self.topics.control_state,
                           dumps({"ts": epoch_ms(self._now(ts)), **state}))

    def publish_event(self, kind: str, *, ts: float | None = None, **fields: Any) -> None:
        """A non-retained event (QoS 1), kept while offline and sent after reconnect."""
        self.outbox.publish(self.topics.events,
                            dumps({"ts": epoch_ms(self._now(ts)), "kind": kind, **fields}),
                            kind="event")

    def republish(self) -> int:
        """Re-send every retained topic, and make the next ``publish_readings`` of each
        device send its full current state; returns how many topics."""
        for reporter in self._reporters.values():
            reporter.force()
        return self.outbox.republish()

    def describe_site(self) -> None:
        """Queue the retained info (and discovery) for the current site."""
        self.outbox.retain(self.topics.info, dumps(self._info()))
        if not self.settings.homeassistant.discovery:
            return
        # imported here: discovery is off by default, and a gateway pays only for what it uses
        from heatd.mqtt.discovery import discovery_messages

        messages = discovery_messages(self.site, self.topics, self.settings.homeassistant,
                                      self._limits, self._version)
        gone = self._discovery - {t for t, body in messages.items() if body is not None}
        for topic in gone:  # entities of a reloaded site that it no longer has
            self.outbox.retain(topic, b"")
        for topic, body in messages.items():
            self.outbox.retain(topic, b"" if body is None else dumps(body))
        self._discovery = {t for t, body in messages.items() if body is not None}

    def rediscover(self) -> None:
        """Re-send the discovery messages: Home Assistant came (back) online."""
        self.outbox.resend(self._discovery)

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

    def _now(self, ts: float | None) -> float:
        return self._clock() if ts is None else ts

