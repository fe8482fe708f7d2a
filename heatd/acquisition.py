"""Keep the point image fresh: one task per device and poll group, each on its own fixed
rate, so a slow or dead device only ever delays itself.

A poll that overruns its interval skips the ticks it missed instead of bursting to catch
up (a burst would hit a struggling device hardest). Subscribed OPC UA devices push their
changes into the image and are confirmed as current while their session is alive.

Every reading is stamped with the monotonic time heatd heard it (``Reading.heard_at``) and
the image judges age on that clock, so a step of the wall clock (NTP, an RTC reset) can
neither keep a dead sensor fresh nor make a live one stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from functools import partial

import structlog

from heatd.config import SiteConfig
from heatd.devices import AnyBound, OpcUaBound, build_devices
from heatd.drivers.cancel import cancel_all
from heatd.drivers.reading import Quality, Reading
from heatd.points import PointImage
from heatd.tasks import next_tick

log = structlog.get_logger(__name__)

Clock = Callable[[], float]

RESTART_GRACE_S = 5.0
"""How long a device that answered before a reload keeps that state while its new driver
connects (a connect and first read take a request timeout or two): the restart is no
news, and a retained ``offline`` for it would be a false alarm; one still not answering
after that is told offline. Meanwhile its new driver's bad readings (``disconnected``
before it has connected) do not replace the readings carried over from the old one,
which age as they would have: control sees no gap for a restart, and a device that does
not come back goes stale on its points' own max age, as a silent one would."""


class Acquisition:
    """Owns the drivers of a site and the tasks that poll them into a point image."""

    def __init__(self, site: SiteConfig, image: PointImage, *, clock: Clock = time.monotonic,
                 on_availability: Callable[[str, bool], None] | None = None,
                 on_error: Callable[[str, str | None], None] | None = None,
                 on_event: Callable[[str, str, dict[str, object]], None] | None = None) -> None:
        self.site = site
        self.image = image
        self.devices: dict[str, AnyBound] = build_devices(site)
        for device in self.devices.values():  # drivers with news of their own (OPC UA)
            if on_event is not None and isinstance(device, OpcUaBound):
                device.driver.on_event = partial(on_event, device.name)
        self._clock = clock
        self._pushed: dict[str, Reading] = {}
        """Latest reading of each subscribed point, to confirm it as current."""
        self._on_availability = on_availability
        self._on_error = on_error
        self._errors: dict[str, str | None] = dict.fromkeys(self.devices)
        self._tasks: list[asyncio.Task[None]] = []
        self._online: dict[str, bool | None] = dict.fromkeys(self.devices)
        self._restarting: set[str] = set()
        """Devices carried over online, or added, whose new driver has not answered
        yet."""
        self._grace_until = 0.0
        self.polls: dict[tuple[str, str], int] = {}
        """Completed polls per (device, group): lets tests and diagnostics see the rate."""

    def online(self, device: str) -> bool | None:
        """Whether the device answers; None until its driver has been tried."""
        return self._online.get(device)

    def carry_over(self, before: Acquisition) -> None:
        """Start from what ``before`` (the drivers a reload replaced) last knew of each
        device this site still has, so only a change is told: a device that answers the
        new driver as it answered the old one is never said to go offline and back
        (within ``RESTART_GRACE_S``), while one that stops answering (its settings
        changed) is; a device the reload added is first told when it answers, or
        offline once that time is up."""
        self.image.carry(before.image, [
            device.ref(point) for name, device in self.devices.items()
            if name in before.devices and before.site.devices[name] == self.site.devices[name]
            for point in device.points])
        for name in self.devices:
            if name not in before.devices:  # added: nothing to tell before it is tried
                self._restarting.add(name)
                continue
            self._online[name] = before._online[name]
            self._errors[name] = before._errors[name]
            if before._online[name] is not False:
                self._restarting.add(name)
        self._grace_until = self._clock() + RESTART_GRACE_S

    def last_error(self, device: str) -> str | None:
        """The driver's ``last_error`` as of the device's latest poll."""
        return self._errors.get(device)

    async def start(self) -> None:
        for device in self.devices.values():
            await device.driver.start()
            if isinstance(device, OpcUaBound) and device.subscribed:
                refs = [device.ref(name) for name in device.points]
                await device.driver.subscribe(list(device.points.values()),
                                              self._sink(device), device.publishing_interval)
                self._spawn(self._confirm_loop(device, refs), f"confirm {device.name}")
            else:
                for group in device.groups:
                    interval = self.site.poll_groups[group].interval
                    self._spawn(self._poll_loop(device, group, interval),
                                f"poll {device.name}/{group}")

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        for device in self.devices.values():
            with contextlib.suppress(Exception):
                await device.driver.close()

    def _spawn(self, coro: Coroutine[object, object, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    def _sink(self, device: AnyBound) -> Callable[[str, Reading], None]:
        def store(point_name: str, reading: Reading) -> None:
            if not self._restarting_bad(device.name, reading):
                self._store(device.ref(point_name), reading, self._clock())
        return store

    def _restarting_bad(self, device: str, reading: Reading) -> bool:
        """A bad reading of a device whose new driver has not answered yet after a reload
        (within ``RESTART_GRACE_S``): kept out of the image, where the old driver's
        reading, or none, stands."""
        return (reading.quality is not Quality.GOOD and device in self._restarting
                and self._clock() < self._grace_until)

    def _store(self, ref: str, reading: Reading, heard: float) -> None:
        stamped = replace(reading, heard_at=heard)
        self._pushed[ref] = stamped
        self.image.update(ref, stamped, heard)

    def _note_availability(self, device: AnyBound) -> None:
        now_online = bool(device.driver.online)
        if device.name in self._restarting:
            if not now_online and self._clock() < self._grace_until:
                return  # still connecting after a reload: nothing to tell yet
            self._restarting.discard(device.name)
        if self._online[device.name] != now_online:
            self._online[device.name] = now_online
            log.info("device availability", device=device.name,
                     state="online" if now_online else "offline")
            if self._on_availability is not None:
                self._on_availability(device.name, now_online)
        error = device.driver.last_error
        if self._errors[device.name] != error:
            self._errors[device.name] = error
            if error is not None:
                log.info("device error", device=device.name, error=error)
            if self._on_error is not None:
                self._on_error(device.name, error)

    async def _poll_loop(self, device: AnyBound, group: str, interval: float) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        key = (device.name, group)
        while True:
            readings = await device.read_group(group)
            heard = self._clock()
            for name, reading in readings.items():
                if not self._restarting_bad(device.name, reading):
                    self.image.update(device.ref(name), replace(reading, heard_at=heard),
                                      heard)
            self.polls[key] = self.polls.get(key, 0) + 1
            self._note_availability(device)
            now = loop.time()
            next_at = next_tick(next_at, now, interval)
            await asyncio.sleep(next_at - now)

    async def _confirm_loop(self, device: OpcUaBound, refs: list[str]) -> None:
        while True:
            self._note_availability(device)
            if device.driver.online:
                heard = self._clock()
                for ref in refs:  # a live subscription reports changes only: still current
                    latest = self._pushed.get(ref)
                    if latest is not None and latest.quality is Quality.GOOD:
                        self._store(ref, latest, heard)
            await asyncio.sleep(device.publishing_interval)
