"""The daemon's listeners, made from the site's sections: the meter (``meter:``) and the
MQTT publisher (``mqtt:``), each without the other. They are started, stopped and, when a
reload changes their sections, replaced together, as the publisher forwards the meter's
records and keeps command audits in its file.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from heatd.config import SiteConfig
from heatd.cycle_report import Availability, CycleReport, Event, LastError, Listener, Notice
from heatd.dispatch import CommandDispatch, Controls
from heatd.publisher import Publisher, Source

if TYPE_CHECKING:  # the meter (SQLite, billing) is loaded only by a site that has one
    from heatd.meter_keeper import MeterKeeper
    from heatd.metering import Metering

log = structlog.get_logger(__name__)


class Host(Controls, Source, Protocol):
    """The daemon, as its listeners' owner sees it: what commands ask of it and what the
    publisher reads of it."""


class Reporting:
    def __init__(self, host: Host) -> None:
        self._host = host
        self._dispatch = CommandDispatch(host)
        self.listeners: list[Listener] = []
        """Who hears each cycle report and notice, the meter first."""
        self.metering: Metering | None = None
        """The meter while its file is in use."""
        self.meter_keeper: MeterKeeper | None = None
        self.publisher: Publisher | None = None
        self._replacing: asyncio.Task[None] | None = None
        self._stopping = False
        """Set by ``stop``: a replacement under way starts nothing new."""
        self._gathered: list[Event] | None = None
        """The events of the cycle under way, for its report."""
        self._fault: dict[str, str] | None = None
        """The meter's file and why it is not in use, while it is not."""
        self._write_fault: dict[str, str] | None = None
        """The meter's file and why the running meter's writes fail, while they do."""

    # --- telling the listeners ------------------------------------------------------------
    def report(self, report: CycleReport) -> None:
        for listener in self.listeners:
            try:
                listener.cycle(report)
            except Exception:  # reporting trouble never stops control
                log.exception("publishing failed", listener=type(listener).__name__)

    def notice(self, notice: Notice) -> None:
        """An event raised during a cycle goes with its report; anything else at once."""
        if self._gathered is not None and isinstance(notice, Event):
            self._gathered.append(notice)
            return
        for listener in self.listeners:
            try:
                listener.notice(notice)
            except Exception:  # reporting trouble never stops control
                log.exception("publishing failed", listener=type(listener).__name__)

    @contextlib.contextmanager
    def gathering(self) -> Iterator[list[Event]]:
        """While a cycle runs: the events raised, in order, kept for its report."""
        gathered: list[Event] = []
        self._gathered = gathered
        try:
            yield gathered
        finally:
            self._gathered = None

    def event(self, kind: str, /, **fields: Any) -> None:
        self.notice(Event(kind, fields))

    def availability(self, device: str, online: bool) -> None:
        self.notice(Availability(device, online))

    def last_error(self, device: str, error: str | None) -> None:
        self.notice(LastError(device, error))

    # --- the listeners' life ------------------------------------------------------------
    @staticmethod
    def check(site: SiteConfig) -> None:
        """Raises ValueError for settings ``start`` would trip over (see
        :meth:`Publisher.check`, :meth:`Metering.check`)."""
        Publisher.check(site)
        if site.meter is not None:
            from heatd.metering import Metering  # SQLite and billing: only for a meter

            Metering.check(site)

    async def start(self) -> None:
        """The publisher, then the meter's keeper, which opens the meter's file off the
        event loop and tries again while the file cannot be used: control never waits
        for it. A publisher that fails to start raises, and the meter is kept all the
        same (``stop`` ends it)."""
        site = self._host.site
        try:
            await self._start_publisher()
        finally:
            if site.meter is not None:
                from heatd.meter_keeper import MeterKeeper  # SQLite and billing: only for a meter

                self.meter_keeper = MeterKeeper(site, site.meter, self._attach_meter,
                                                self._detach_meter, self._meter_fault)
                self.meter_keeper.start()

    def _attach_meter(self, metering: Metering) -> None:
        """A meter whose file is open: it hears the cycles first, the publisher forwards
        its records."""
        self.metering = metering
        self.listeners.insert(0, metering)
        if self._write_fault is not None:  # a fault of the file under the meter before
            metering.health.carry(self._write_fault["error"])
        metering.health.tell(partial(self._meter_write_fault, self.meter_keeper.path
                                     if self.meter_keeper is not None else ""))
        if self.publisher is not None:
            self.publisher.attach_meter(metering)

    def _meter_fault(self, file: str, error: str | None) -> None:
        """The meter's file unusable (``error``) or usable again (None): an alarm on
        ``events``, and in the publisher's control state while it lasts."""
        if error is None:
            self.event("alarm", name="meter_file_usable", file=file)
        else:
            self.event("alarm", name="meter_file_unusable", file=file, error=error)
        self._fault = None if error is None else {"file": file, "error": error}
        if error is not None:  # not in use at all: this says more than a write fault
            self._write_fault = None
        self._show_fault()

    def _meter_write_fault(self, file: str, error: str | None) -> None:
        """The running meter's writes failing (``error``: the first failure that counts,
        see ``heatd.meter_health``) or going through again (None): an alarm on
        ``events`` for each change, never one per record, and in the control state while
        it lasts."""
        if error is None:
            self.event("alarm", name="meter_file_writable", file=file)
        else:
            self.event("alarm", name="meter_file_unwritable", file=file, error=error)
        self._write_fault = None if error is None else {"file": file, "error": error}
        self._show_fault()

    def _show_fault(self) -> None:
        """``control/state``'s ``meter_file``: the file not in use, else its writes
        failing, else nothing."""
        if self.publisher is not None:
            self.publisher.meter_fault = self._fault or self._write_fault

    async def _detach_meter(self, metering: Metering) -> None:
        metering.health.tell(None)
        if metering in self.listeners:
            self.listeners.remove(metering)
        if self.metering is metering:
            self.metering = None
        if self.publisher is not None and self.publisher.metering is metering:
            await self.publisher.detach_meter()

    async def stop(self) -> None:
        """The publisher first (its last control state, then the link, whose last audits
        the meter's file keeps), then the meter (every record kept, the file closed). A
        replacement under way (a reload) is let finish, never cut off half-way through the
        old meter's last write, and starts no new listeners."""
        self._stopping = True
        replacing = self._replacing
        if replacing is not None and replacing is not asyncio.current_task():
            await _finished(replacing)
        await self._stop_listeners()

    async def _stop_listeners(self, successor: SiteConfig | None = None) -> None:
        """``successor``: the site a new publisher will publish on the same topics."""
        self.listeners.clear()
        publisher, self.publisher = self.publisher, None
        keeper, self.meter_keeper = self.meter_keeper, None
        self._fault = None  # a write fault is carried to a meter started after (a reload)
        try:
            if publisher is not None:
                await publisher.stop(successor)
        finally:
            if keeper is not None:  # the meter, once it has closed its file
                await keeper.stop()

    def rebuilt(self, old: SiteConfig) -> None:
        """After a reload: a changed ``meter:`` or ``contracts:`` section or site id gets
        new listeners, a changed ``mqtt:`` section alone a new publisher beside the meter
        that runs on (its open intervals and hours are never cut short by a broker
        setting); the old link goes after answering the reload command that asked for
        it, handing its topics over without a word of ``offline`` when the new link
        publishes on the same ones (:func:`same_topics`), telling them ``offline`` when
        it moves elsewhere. Otherwise every device state is re-sent in full."""
        new = self._host.site
        meter = (new.site.id, new.meter, new.contracts) != (old.site.id, old.meter,
                                                             old.contracts)
        if meter or new.mqtt != old.mqtt:
            successor = new if same_topics(old, new) else None
            self._replacing = asyncio.create_task(
                self._replace(self._replacing, meter, successor), name="listeners-replace")
        elif self.publisher is not None:
            self.publisher.rebuilt()

    async def _replace(self, before: asyncio.Task[None] | None, meter: bool,
                       successor: SiteConfig | None) -> None:
        """Stop the listeners (the publisher alone unless ``meter``), start those of the
        site now loaded; after the replacement ``before`` (an earlier reload's) has
        finished, so two never run together. ``successor``: the new site, when its link
        takes over the old one's topics (nothing is said offline then)."""
        try:
            if before is not None:
                await _finished(before)
            try:
                await (self._stop_listeners(successor) if meter
                       else self._stop_publisher(successor))
            except Exception:  # they are gone all the same: the site's new ones still start
                log.exception("stopping the old listeners failed")
            if self._stopping:  # heatd is stopping: nothing new to start
                return
            try:
                await (self.start() if meter else self._start_publisher())
            except (ValueError, OSError):  # the meter's file is the keeper's to report
                log.exception("mqtt or meter settings could not be applied: not publishing")
        finally:
            if self._replacing is asyncio.current_task():
                self._replacing = None

    async def _stop_publisher(self, successor: SiteConfig | None = None) -> None:
        publisher, self.publisher = self.publisher, None
        if publisher is not None:
            self.listeners.remove(publisher)
            await publisher.stop(successor)

    async def _start_publisher(self) -> None:
        """A publisher for the site's ``mqtt:`` section, forwarding the meter that runs."""
        if self._host.site.mqtt is None:
            log.info("no mqtt section: not publishing")
            return
        publisher = Publisher(self._host, self._dispatch.handle)
        publisher.meter_fault = self._fault or self._write_fault
        await publisher.start()
        self.publisher = publisher
        self.listeners.append(publisher)
        if self.metering is not None:
            publisher.attach_meter(self.metering)


def same_topics(old: SiteConfig, new: SiteConfig) -> bool:
    """Whether ``new``'s link publishes where ``old``'s did: the same broker (host and
    port) and base topic. Its link then takes the topics over and the old one says
    nothing offline; elsewhere, nothing vouches for the old topics any more and they are
    told ``offline`` as a stop would."""
    if old.mqtt is None or new.mqtt is None:
        return False
    return ((old.mqtt.host, old.mqtt.effective_port, old.mqtt.base(old.site.id))
            == (new.mqtt.host, new.mqtt.effective_port, new.mqtt.base(new.site.id)))


async def _finished(task: asyncio.Task[None]) -> None:
    """Wait for ``task`` without cancelling it when the wait is; its failure is logged."""
    try:
        await asyncio.shield(task)
    except Exception:
        log.exception("replacing the listeners failed")

