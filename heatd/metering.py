"""The meter as a listener of the control cycle: the interval meter (``meter/energy``) and
the contracts' hourly meters read each cycle's snapshot, and their records go into the
meter's SQLite file, with or without a broker to send them to (rows wait in the file
for a heatd that has one).

The interval meter resumes where the file's interval records end (their last end and
counter readings, kept beside them), so the energy of a stop, a crash or a reload that
replaced the meter is in the records after it.

Reading the snapshot is arithmetic only; every SQLite write runs in a thread (the
contracts' writer task, the store's writer thread), so metering never delays the cycle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from heatd.billing.service import Billing
from heatd.config import MeterSettings, SiteConfig
from heatd.cycle_report import CycleReport, Notice
from heatd.meter import SiteMeter, bridged_at_resume, interval_resume
from heatd.meter_health import WriteHealth
from heatd.meter_store import DurableOutbox, meter_path

Totals = Mapping[str, Mapping[str, float]]
"""contract -> energy field -> kWh over every record kept."""


class Metering:
    """The site's meters, their file, and where their running totals go."""

    def __init__(self, site: SiteConfig, settings: MeterSettings, *,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        """``loop`` runs the meter (default: the running one), for a meter made in a
        thread. Raises sqlite3.Error or OSError when the file cannot be used."""
        path = meter_path(settings.database)
        self.health = WriteHealth()
        """Whether the file still takes this meter's writes (told on ``loop``)."""
        self.outbox = DurableOutbox(path, loop=loop, wrote=self.health.wrote)
        """Records and command audits waiting for the broker."""
        self._totals_to: Callable[[Totals], None] | None = None
        try:
            stored = self.outbox.stored_end(site.site.id)
            resume = None if stored is None else interval_resume(*stored)
            bridged = None if stored is None else bridged_at_resume(stored.counters)
            self._meter = SiteMeter(site, settings.interval, resume, bridged)
            self._billing = Billing(site, path, self.outbox.wake, self._new_totals,
                                    wrote=self.health.wrote)
        except BaseException:
            self.outbox.close()
            raise

    @staticmethod
    def check(site: SiteConfig) -> None:
        """Raises ValueError when the file's path cannot be made (an unset variable)."""
        if site.meter is not None:
            meter_path(site.meter.database)

    @property
    def totals(self) -> Totals:
        return self._billing.totals

    def send_totals_to(self, sink: Callable[[Totals], None] | None) -> None:
        """Where new totals go once records are kept (the publisher's retained topic)."""
        self._totals_to = sink

    def _new_totals(self, totals: Totals) -> None:
        if self._totals_to is not None:
            self._totals_to(totals)

    def start(self) -> None:
        self._billing.start()

    async def stop(self) -> None:
        """Keep every record closed so far, then close the file."""
        try:
            await self._billing.stop()
        finally:
            self._billing.close()
            await self.outbox.aclose()

    def cycle(self, report: CycleReport) -> None:
        if report.points is None:
            return
        for record in self._meter.observe(report.wall, report.points):
            self._billing.keep_interval(record)
        self._billing.observe(report.wall, report.points)

    def notice(self, notice: Notice) -> None:
        """Nothing between cycles is metered."""
