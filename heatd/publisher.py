"""What the daemon tells the outside world, and what it takes from it: device states,
availability, control state and events out; mode, override and reload commands in.

Without an ``mqtt:`` section the daemon runs the same, publishing nothing.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog

from heatd.billing.ledger import RECORDS
from heatd.billing.service import Billing
from heatd.control import roles as R
from heatd.meter import SiteMeter
from heatd.meter_store import AUDIT, METER, DurableOutbox
from heatd.mqtt.commands import (
    Command,
    CommandResult,
    ModeCommand,
    OverrideCommand,
    ReloadCommand,
    ResetLockoutCommand,
)
from heatd.mqtt.link import MqttLink
from heatd.racks import rack_report
from heatd.role_signals import percent_factor
from heatd.tasks import cancel_all

if TYPE_CHECKING:
    from heatd.config import SiteConfig
    from heatd.runtime import Daemon

log = structlog.get_logger(__name__)

DevicePoints = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
"""Each device with its points as (point, ``device.point``)."""

CONTROL_STATE_EVERY_S = 1.0
"""Control state is re-sent at most this often unless mode, limits or the heat-pump state
change (at a 100 ms cycle, every cycle would be ten retained messages a second)."""


class Publisher:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.link: MqttLink | None = None
        self._last_control = 0.0
        self._last_key: tuple[Any, ...] | None = None
        self._racks: dict[str, Any] | None = None
        """Each rack's inlet and power as the last cycle saw them (``rack_report``)."""
        self.meter: SiteMeter | None = None
        self.outbox: DurableOutbox | None = None
        self._forwarder: asyncio.Task[None] | None = None
        self.billing: Billing | None = None
        self._replacing: asyncio.Task[None] | None = None
        self._points_of: tuple[SiteConfig | None, DevicePoints] = (None, ())

    @staticmethod
    def check(site: SiteConfig) -> None:
        """What ``start`` would trip over beyond the file's own validation (an unreadable
        password or TLS file, an unset variable in the meter path): raises ValueError, so
        a reload can refuse such a file before anything is stopped."""
        if site.mqtt is not None:
            site.mqtt.read_password()
            if site.mqtt.tls is not None:
                try:
                    site.mqtt.tls.context()
                except OSError as exc:  # ssl.SSLError is one
                    raise ValueError(f"mqtt.tls: {exc.strerror or exc}") from exc
        if site.meter is not None:
            meter_path(site.meter.database)

    async def start(self) -> None:
        site = self.daemon.site
        settings = site.mqtt
        if settings is None:
            log.info("no mqtt section: not publishing")
            return
        meter = site.meter
        outbox = self.outbox = (None if meter is None
                                else DurableOutbox(meter_path(meter.database)))
        try:
            link = self.link = MqttLink(
                settings, site, self.handle, config_hash=self.daemon.config_hash,
                audit_store=None if outbox is None else partial(outbox.keep, AUDIT))
            await link.start()
        except BaseException:
            self._close_outbox()
            raise
        for device in site.devices:
            link.publish_availability(device, self.daemon.acquisition.online(device))
            link.publish_last_error(device, self.daemon.acquisition.last_error(device))
        if meter is not None and outbox is not None:
            self.meter = SiteMeter(site, meter.interval)
            self.billing = Billing(site, meter_path(meter.database), outbox.wake,
                                   link.publish_meter_totals)
            if site.contracts is not None:
                link.publish_meter_totals(self.billing.totals)
            self.billing.start()
            self._forwarder = asyncio.create_task(outbox.forward({
                METER: partial(link.publish_confirmed, link.topics.meter),
                AUDIT: partial(link.publish_confirmed, link.topics.events),
                RECORDS: partial(link.publish_confirmed, link.topics.records)}))

    async def stop(self) -> None:
        if self._replacing is not None and self._replacing is not asyncio.current_task():
            await cancel_all([self._replacing])
        link, self.link = self.link, None
        if link is not None:  # first: audits of the commands it still answers are kept
            link.publish_control_state(self._control_state())
            await link.stop()
        if self.billing is not None:
            await self.billing.stop()  # records closed in the last cycles are kept
        if self._forwarder is not None:
            await cancel_all([self._forwarder])
            self._forwarder = None
        self._close_outbox()

    def _close_outbox(self) -> None:
        if self.billing is not None:
            self.billing.close()
            self.billing = None
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = self.meter = None

    # --- outgoing ---------------------------------------------------------------------
    def availability(self, device: str, online: bool) -> None:
        if self.link is not None:
            self.link.publish_availability(device, online)

    def device_error(self, device: str, error: str | None) -> None:
        if self.link is not None:
            self.link.publish_last_error(device, error)

    def event(self, fields: dict[str, Any]) -> None:
        if self.link is not None:
            kind = fields.pop("type", "event")
            self.link.publish_event(kind, **fields)

    def rebuilt(self, old: SiteConfig) -> None:
        """After a reload: every device state is re-sent in full. A changed ``mqtt:``,
        ``meter:`` or ``contracts:`` section or site id gets a new link instead: the old
        one says ``offline`` on its topics and goes (after answering the reload command
        that asked for it)."""
        new = self.daemon.site
        if ((new.site.id, new.mqtt, new.meter, new.contracts)
                != (old.site.id, old.mqtt, old.meter, old.contracts)):
            self._replacing = asyncio.create_task(self._replace(), name="mqtt-replace")
        elif self.link is not None:
            self.link.set_site(new, self.daemon.config_hash)
            self.link.republish()

    async def _replace(self) -> None:
        await self.stop()
        try:
            await self.start()
        except (ValueError, OSError, sqlite3.Error):
            log.exception("mqtt or meter settings could not be applied: not publishing")
        finally:
            self._replacing = None

    def cycle(self, started: float) -> None:
        """Called once per control cycle: device states by exception, control state
        throttled."""
        if self.link is None:
            return
        daemon = self.daemon
        wall = time.time()
        if self.meter is not None and self.billing is not None:  # SQLite: off the cycle
            for record in self.meter.observe(wall, daemon.last_points):
                self.billing.keep_interval(record)
            self.billing.observe(wall, daemon.last_points)
        snapshot = daemon.last_points  # the one the cycle decided on: judged once per cycle
        if snapshot is not None:
            for name, points in self._device_points(daemon.site):
                readings = {point: snapshot[ref] for point, ref in points}
                self.link.publish_readings(name, readings, wall)
            self._note_racks(rack_report(daemon.site, snapshot))
        decision = daemon.last_decision
        key = None if decision is None else (decision.mode, decision.hp_state,
                                             tuple(x.name for x in decision.limits))
        if key != self._last_key or started - self._last_control >= CONTROL_STATE_EVERY_S:
            self._last_key, self._last_control = key, started
            self.link.publish_control_state(self._control_state())

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

    def _control_state(self) -> dict[str, Any]:
        daemon = self.daemon
        decision = daemon.last_decision
        state: dict[str, Any] = decision.summary() if decision is not None else {"mode": None}
        state["cycle"] = daemon.stats.summary()
        state["writes"] = daemon.writer.status()
        state["leases"] = [{"role": x.role, "value": x.value,
                            "expires_in_s": round(x.expires - time.monotonic(), 1)}
                           for x in daemon.state.leases]
        state["leases"] += daemon.outputs.leases(time.monotonic())
        if daemon.outputs.values():
            state["outputs"] = daemon.outputs.values()
        if self._racks is not None:
            state["racks"] = self._racks
        return state

    # --- incoming ---------------------------------------------------------------------
    async def handle(self, command: Command) -> CommandResult:
        daemon = self.daemon
        by = command.by or "mqtt"
        if isinstance(command, ModeCommand):
            daemon.set_mode(command.mode, command.ttl, by)
            return CommandResult(True, f"mode {command.mode}", {"mode": command.mode,
                                                                "ttl": command.ttl})
        if isinstance(command, OverrideCommand) and command.role in R.ENGINEERING_OUTPUTS:
            role = command.role
            if command.value is None:
                daemon.clear_output_lease(role, by)
                return CommandResult(True, f"override on {role} cleared", {"role": role})
            value = float(command.value)
            daemon.set_output_lease(role, value, float(command.ttl or 0.0), by)
            return CommandResult(True, "lease set", {"role": role, "value": value,
                                                     "ttl": command.ttl})
        if isinstance(command, OverrideCommand):
            role = command.role or ""
            if command.value is None:
                daemon.clear_override(role, by)
                return CommandResult(True, f"override on {role} cleared", {"role": role})
            value = command.value
            if command.point is not None and not isinstance(value, bool):
                value = value / percent_factor(role, daemon.site.point(command.point))
            daemon.set_override(role, value, float(command.ttl or 0.0), by)
            return CommandResult(True, "lease set; the cooling envelope still bounds it",
                                 {"role": role, "value": value, "ttl": command.ttl})
        if isinstance(command, ResetLockoutCommand):
            accepted, reason = daemon.reset_lockout(by)
            return CommandResult(accepted, reason, {"hp_state": daemon.state.seq.state.value})
        if isinstance(command, ReloadCommand):
            accepted, reason = await daemon.reload()
            return CommandResult(accepted, reason, {"config_hash": daemon.config_hash})
        return CommandResult(False, f"unknown command {command.name}")


def meter_path(database: str) -> str:
    path = os.path.expandvars(database)
    if "$" in path:
        raise ValueError(f"meter.database {database!r}: a variable in it is not set; give a path")
    return path
