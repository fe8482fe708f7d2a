"""What the daemon tells the broker: device states, availability, control state and events,
from the cycle reports and notices it listens to; and the meter's records and command
audits, forwarded from the meter's file once the broker acknowledges each. Commands that
arrive are handed to the command handler it is given.

Only a site with an ``mqtt:`` section has a publisher; the daemon runs the same without.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from heatd.config import SiteConfig
from heatd.cycle_report import Availability, CycleReport, Event, LastError, Notice
from heatd.drivers.cancel import cancel_all
from heatd.mqtt.command_payloads import CommandHandler
from heatd.mqtt.link import MqttLink
from heatd.outbox_streams import AUDIT, METER, RECORDS
from heatd.racks import rack_report

if TYPE_CHECKING:  # the meter (SQLite, billing) is loaded only by a site that has one
    from heatd.metering import Metering

log = structlog.get_logger(__name__)

DevicePoints = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
"""Each device with its points as (point, ``device.point``)."""

CONTROL_STATE_EVERY_S = 1.0
"""Control state is re-sent at most this often unless mode, limits or the heat-pump state
change (at a 100 ms cycle, every cycle would be ten retained messages a second)."""

AUDITS_KEPT_S = 1.0
"""How long a stopping link waits for the meter's file to keep its last audits before
the rest are sent from memory (see ``Publisher._audits_settled``)."""

FORWARDER = "meter forwarder"
"""The name of the task that forwards the meter's file to the broker."""


class Source(Protocol):
    """What the publisher reads of the daemon it reports on."""

    site: SiteConfig
    config_hash: str

    def online(self, device: str) -> bool | None:
        """Whether ``device`` answers; None while that is not known yet (its driver not
        tried since a start, or still connecting after a reload)."""

    def last_error(self, device: str) -> str | None: ...


class Publisher:
    def __init__(self, source: Source, handle: CommandHandler,
                 metering: Metering | None = None) -> None:
        self.source = source
        self._handle = handle
        self.metering = metering
        """The meter whose records and totals go out, and whose file keeps audits."""
        self.link: MqttLink | None = None
        self._last: CycleReport | None = None
        self._last_control = 0.0
        self._last_key: tuple[Any, ...] | None = None
        self._racks: dict[str, Any] | None = None
        """Each rack's inlet and power as the last cycle saw them (``rack_report``)."""
        self._forwarder: asyncio.Task[None] | None = None
        self._audits_to: MqttLink | None = None
        """The link whose commands' audits the file may hand back: kept while it stops."""
        self._points_of: tuple[SiteConfig | None, DevicePoints] = (None, ())
        self.meter_fault: dict[str, str] | None = None
        """The meter's file and why it is not in use, while it is not (``control/state``
        carries it as ``meter_file``)."""

    @staticmethod
    def check(site: SiteConfig) -> None:
        """What ``start`` would trip over beyond the file's own validation (an unreadable
        password or TLS file): raises ValueError, so a reload can refuse such a file
        before anything is stopped."""
        if site.mqtt is not None:
            site.mqtt.read_password()
            if site.mqtt.tls is not None:
                try:
                    site.mqtt.tls.context()
                except OSError as exc:  # ssl.SSLError is one
                    raise ValueError(f"mqtt.tls: {exc.strerror or exc}") from exc

    async def start(self) -> None:
        site = self.source.site
        assert site.mqtt is not None, "a publisher is made for a site with mqtt:"
        link = self.link = self._audits_to = MqttLink(
            site.mqtt, site, self._handle, config_hash=self.source.config_hash,
            audit_store=self._keep_audit, audits_settled=self._audits_settled)
        await link.start()
        for device in site.devices:
            online = self.source.online(device)
            if online is not None:  # unknown: told once known, never a guessed offline
                link.publish_availability(device, online)
                link.publish_last_error(device, self.source.last_error(device))
        if self.metering is not None:
            self.attach_meter(self.metering)

    def attach_meter(self, metering: Metering) -> None:
        """Forward ``metering``'s records and totals, keep audits in its file (a meter
        whose file became usable after the link started, or the one it started with)."""
        self.metering = metering
        link = self.link
        if link is None or self._forwarder is not None:
            return
        if self.source.site.contracts is not None:
            link.publish_meter_totals(metering.totals)
        metering.send_totals_to(link.publish_meter_totals)
        self._forwarder = asyncio.create_task(metering.outbox.forward({
            METER: partial(link.publish_confirmed, link.topics.meter),
            AUDIT: partial(link.publish_confirmed, link.topics.events),
            RECORDS: partial(link.publish_confirmed, link.topics.records)}),
            name=FORWARDER)

    async def detach_meter(self) -> None:
        """The meter is going (its file replaced): audits go the in-memory path again,
        after those it took are settled."""
        metering, self.metering = self.metering, None
        if metering is None:
            return
        metering.send_totals_to(None)
        if self._forwarder is not None:
            await cancel_all([self._forwarder])
            self._forwarder = None
        await metering.outbox.flush()

    async def stop(self, successor: SiteConfig | None = None) -> None:
        """The final control state, then the link goes (the audits of the commands it
        still answers are kept in the meter's file); ``successor``: the site a new link
        publishes on the same topics, so nothing is said offline (``MqttLink.stop``)."""
        link, self.link = self.link, None
        try:
            if link is not None:
                try:
                    if self._last is not None:
                        link.publish_control_state(self._control_state(self._last))
                finally:
                    await link.stop(successor=successor)
        finally:  # a failed stop of the link must not leave a second forwarder behind
            self._audits_to = None
            if self.metering is not None:
                self.metering.send_totals_to(None)
            if self._forwarder is not None:
                await cancel_all([self._forwarder])
                self._forwarder = None

    def _keep_audit(self, payload: bytes) -> bool:
        """The link's audit store: the meter's file, or the link's own queue while there is
        no meter or when the file refuses the record later (disk full)."""
        if self.metering is None:
            return False
        return self.metering.outbox.keep(AUDIT, payload, fallback=self._audit_from_memory)

    async def _audits_settled(self) -> None:
        """The meter's file has kept the audits it took, or handed them back to go out
        from memory through the stopping link: those it has not kept within
        ``AUDITS_KEPT_S`` (another connection holds its lock) are not waited for."""
        if self.metering is None:
            return
        outbox = self.metering.outbox
        written = asyncio.ensure_future(outbox.flush())
        try:
            await asyncio.wait_for(asyncio.shield(written), AUDITS_KEPT_S)
        except TimeoutError:
            outbox.hand_back()
            await written

    def _audit_from_memory(self, payload: bytes) -> None:
        """Through the link that answered the command, also while it stops (it waits
        for the file to settle its audits before it says offline)."""
        link = self._audits_to
        if link is not None:
            link.publish(link.topics.events, payload, kind="audit")

    def rebuilt(self) -> None:
        """After a reload that kept the broker and meter settings: every device state is
        re-sent in full, with the new site's description."""
        if self.link is not None:
            self.link.set_site(self.source.site, self.source.config_hash)
            self.link.republish()

    # --- listening --------------------------------------------------------------------
    def notice(self, notice: Notice) -> None:
        link = self.link
        if link is None:
            return
        if isinstance(notice, Event):
            link.publish_event(notice.kind, **notice.fields)
        elif isinstance(notice, Availability):
            link.publish_availability(notice.device, notice.online)
        elif isinstance(notice, LastError):
            link.publish_last_error(notice.device, notice.error)

    def cycle(self, report: CycleReport) -> None:
        """The cycle's events; device states by exception; control state throttled."""
        self._last = report
        link = self.link
        if link is None:
            return
        for event in report.events:
            link.publish_event(event.kind, **event.fields)
        snapshot = report.points  # the one the cycle decided on: judged once per cycle
        site = self.source.site
        if snapshot is not None:
            for name, points in self._device_points(site):
                readings = {point: snapshot[ref] for point, ref in points}
                link.publish_readings(name, readings, report.wall)
            self._note_racks(rack_report(site, snapshot))
        decision = report.decision
        key = None if decision is None else (decision.mode, decision.hp_state,
                                             tuple(x.name for x in decision.limits))
        started = report.started
        if key != self._last_key or started - self._last_control >= CONTROL_STATE_EVERY_S:
            self._last_key, self._last_control = key, started
            link.publish_control_state(self._control_state(report))

    def _device_points(self, site: SiteConfig) -> DevicePoints:
        """Each device's points with their ``device.point`` references, worked out once
        per site rather than every cycle."""
        if self._points_of[0] is not site:
            self._points_of = (site, tuple(
                (name, tuple((point, f"{name}.{point}") for point in device.points))
                for name, device in site.devices.items()))
        return self._points_of[1]

    def _note_racks(self, report: dict[str, Any] | None) -> None:
        """Keep the racks for the control state; a rack crossing its inlet limit, either
        way, is an event of its own."""
        before = set(self._racks["over_limit"]) if self._racks is not None else set()
        self._racks = report
        if report is None or self.link is None:
            return
        now = set(report["over_limit"])
        limit = report["inlet_limit_c"]
        for ref in sorted(now - before):
            self.link.publish_event("alarm", name="rack_inlet_over_limit", point=ref,
                                    value=report["inlet"][ref], limit=limit)
        for ref in sorted(before - now):
            self.link.publish_event("alarm", name="rack_inlet_back_under_limit", point=ref,
                                    value=report["inlet"][ref], limit=limit)

    def _control_state(self, report: CycleReport) -> dict[str, Any]:
        decision, status = report.decision, report.status
        state: dict[str, Any] = decision.summary() if decision is not None else {"mode": None}
        state["cycle"] = status.cycle.summary()
        state["writes"] = dict(status.writes)
        state["leases"] = [{"role": x.role, "value": x.setting,
                            "expires_in_s": round(x.expires - report.now, 1)}
                           for x in status.leases]
        state["leases"] += [dict(x) for x in status.output_leases]
        if status.outputs:
            state["outputs"] = dict(status.outputs)
        if self._racks is not None:
            state["racks"] = self._racks
        if self.meter_fault is not None:
            state["meter_file"] = self.meter_fault
        return state
