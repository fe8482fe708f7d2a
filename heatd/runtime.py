"""``heatd run``: the daemon. Drivers keep the point image fresh; a fixed-rate cycle on the
monotonic clock freezes a snapshot, asks the pure control core, and hands the setpoints to
the writer; each cycle ends in a report to the daemon's listeners (``heatd.reporting``: the
meter, the MQTT publisher). Nothing that talks to a device, a broker or a disk runs inside
the cycle, so none can slow it.

Signals: SIGTERM/SIGINT write the safe state, publish ``offline`` and exit 0; SIGHUP
reloads the site file, keeping the running configuration when the new one is invalid.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
import uvloop

from heatd.acquisition import Acquisition
from heatd.config import SiteConfig
from heatd.config_loader import ConfigError, load_site
from heatd.control import commands
from heatd.control import roles as R
from heatd.control.bounds import SAFE_SETPOINTS
from heatd.control.core import Decision, step
from heatd.control.events import Cause, EventValue
from heatd.control.sequencer import HpState, Wait
from heatd.control.signals import Snapshot
from heatd.control.state import Mode, State, initial_state
from heatd.cycle_report import ControlStatus, CycleReport, Event
from heatd.cycle_stats import CycleStats
from heatd.devices import point_limits
from heatd.fingerprint import fingerprint
from heatd.heartbeat import site_heartbeat
from heatd.outputs import EngineeringOutputs
from heatd.points import PointImage, PointSnapshot
from heatd.reporting import Reporting
from heatd.role_signals import control_snapshot, input_bindings
from heatd.sdnotify import Notifier
from heatd.tasks import next_tick
from heatd.writer import OutOfBounds, SetpointWriter

log = structlog.get_logger(__name__)

class Daemon:
    def __init__(self, path: str | Path, site: SiteConfig) -> None:
        self.path = Path(path)
        self.site = site
        self.notifier = Notifier()
        self.state: State = initial_state(time.monotonic())
        self.last_decision: Decision[State] | None = None
        self.last_snapshot: Snapshot | None = None
        self.last_points: PointSnapshot | None = None
        self.stats = CycleStats(site.runtime.cycle_period)
        self.reporting = Reporting(self)
        self._beats = 0
        """Heartbeats written so far; the span of the point makes them values."""
        self._safe = False
        """The last cycle asked for the safe state (it is forced again only on entry)."""
        self._stopping = asyncio.Event()
        self._reloading = asyncio.Lock()
        self._reload_task: asyncio.Future[tuple[bool, str]] | None = None
        self._failed = False
        """A stop that systemd should answer with a restart (exit status 1)."""
        self.outputs = EngineeringOutputs(site.setpoints)
        self._build(site)

    # --- wiring -----------------------------------------------------------------------
    def _build(self, site: SiteConfig) -> None:
        site_file = self.path.read_bytes()
        self.config_hash = hashlib.sha256(site_file).hexdigest()[:16]
        self.fingerprint = fingerprint(site_file, site)
        self._wire(site)

    def _wire(self, site: SiteConfig) -> None:
        """The parts made from a site: its point image, bindings, drivers and writer."""
        self.site = site
        self.outputs.configure(site.setpoints)
        self.image = PointImage(point_limits(site))
        self.heartbeat = site_heartbeat(site)
        self.bindings = input_bindings(site)
        before = getattr(self, "acquisition", None)  # the drivers a reload replaces
        self.acquisition = Acquisition(site, self.image,
                                       on_availability=self.reporting.availability,
                                       on_error=self.reporting.last_error,
                                       on_event=self._device_event)
        if before is not None:
            self.acquisition.carry_over(before)
        self.writer = SetpointWriter(site, self.acquisition.devices, self._alarm,
                                     deadband=site.runtime.write_deadband,
                                     min_interval=site.runtime.write_min_interval)
        self.stats.period = site.runtime.cycle_period

    async def _start_io(self) -> None:
        await self.acquisition.start()
        self.writer.start()

    async def _stop_io(self) -> None:
        """The writer, then the drivers, also when stopping the writer fails (a writer
        task that died of a bug raises its error here)."""
        try:
            await self.writer.stop()
        finally:
            await self.acquisition.stop()

    def _device_event(self, device: str, name: str, details: dict[str, Any]) -> None:
        """Something a driver reports about its device, e.g. OPC UA's namespaces_changed."""
        self.reporting.event("device", device=device, name=name, **details)

    def _alarm(self, name: str, details: dict[str, Any]) -> None:
        log.warning(name, **details)
        self.reporting.event("alarm", name=name, **details)

    def _transition(self, layer: str, change: str, subject: str, old: EventValue,
                    new: EventValue, cause: Cause, reason: str) -> None:
        """``cause`` is what subscribers match on; ``reason`` is its wording for people."""
        self.reporting.notice(Event("transition", {"layer": layer, "change": change,
                                                   "subject": subject, "from": old, "to": new,
                                                   "cause": cause.value, "reason": reason}))

    def online(self, device: str) -> bool | None:
        return self.acquisition.online(device)

    def last_error(self, device: str) -> str | None:
        return self.acquisition.last_error(device)

    # --- commands (called by the MQTT layer, between cycles) --------------------------
    def set_mode(self, mode: str, ttl: float | None, by: str) -> None:
        self.state = commands.set_mode(self.state, Mode(mode), time.monotonic(), ttl, by)

    def lease_wait(self, role: str, value: float | bool) -> Wait | None:
        """How long the heat pump's protection would defer a lease on ``role`` set now."""
        return commands.lease_wait(self.state, role, value, self.site.control.sequencer,
                                   time.monotonic())

    def set_override(self, role: str, value: float | bool, ttl: float, by: str) -> None:
        self.state = commands.set_override(self.state, role, value, time.monotonic(), ttl, by,
                                           self.site.control.sequencer)

    def clear_override(self, role: str, by: str) -> None:
        self.state = commands.clear_override(self.state, role, time.monotonic(), by)

    def reset_lockout(self, by: str) -> tuple[bool, str]:
        """Operator reset of a latched heat-pump lockout: a reset pulse on ``hp.reset``
        when the site binds it, then heatd's own latch clears once the heat pump no
        longer reports a fault or lockout. Refused when nothing is latched."""
        hp = self.state.seq.state
        if hp is not HpState.LOCKED_OUT:
            return False, f"the heat pump is not locked out (it is {hp.value})"
        self.state = commands.reset_heat_pump(self.state, time.monotonic(), by)
        pulse = ("a reset pulse on hp.reset, then " if self.site.role_points(R.HP_RESET)
                 else "no hp.reset is bound: ")
        return True, f"{pulse}the lockout clears once the heat pump reports no fault"

    def set_output_lease(self, role: str, value: float, ttl: float, by: str) -> None:
        """Lease an output in engineering units (``setpoints:``) within its bounds."""
        self.outputs.lease(role, value, ttl, time.monotonic(), by)
        self._transition("operator", "lease", role, None, value, Cause.SET,
                         f"set by {by} for {ttl:g} s")

    def clear_output_lease(self, role: str, by: str) -> None:
        gone = self.outputs.clear(role)
        if gone is not None:
            self._transition("operator", "lease", role, gone.value, None, Cause.CLEARED,
                             f"cleared by {by}")

    def request_reload(self) -> None:
        self._reload_task = asyncio.ensure_future(self.reload())

    def request_stop(self) -> None:
        self._stopping.set()

    # --- the cycle --------------------------------------------------------------------
    def cycle_once(self) -> Decision[State]:
        """One control cycle: snapshot, decide, submit. Pure but for the submits."""
        now = time.monotonic()
        points = self.last_points = self.image.snapshot(now)
        self.last_snapshot = control_snapshot(self.bindings, points, now)
        decision = step(self.last_snapshot, self.state, self.site.control, now)
        self.state = decision.state
        self.last_decision = decision
        if decision.setpoints == SAFE_SETPOINTS:  # the worst case: whatever the caches say
            self.writer.safe_state(decision.setpoints.as_roles(), force=not self._safe)
            self._safe = True
        else:
            self._safe = False
            self._submit(decision.setpoints.as_roles())
        self._beats += 1
        self._submit({R.PLC_HEARTBEAT: self.heartbeat.value(self._beats)})
        for role, lease in self.outputs.expire(now):
            self._transition("operator", "lease", role, lease.value, None,
                             Cause.EXPIRED, "expired")
        self._submit(self.outputs.values())
        for event in decision.events:
            self._transition(event.layer.value, event.kind, event.subject, event.old,
                             event.new, event.cause, event.reason)
        return decision

    def _submit(self, values: dict[str, float | bool | int]) -> None:
        for role, value in values.items():
            try:
                self.writer.submit(role, value)
            except OutOfBounds as exc:
                self._alarm("setpoint_out_of_bounds", {"role": role, "reason": str(exc)})

    async def _cycle_loop(self) -> None:
        """Fixed rate on the monotonic clock (time.monotonic: uvloop's own clock counts
        whole milliseconds, too coarse to measure jitter). The first cycle comes half a
        period after the polls start, so cycles do not take their snapshot in the same
        instant as the polls that would refresh it."""
        clock = time.monotonic
        next_at = clock() + self.site.runtime.cycle_period / 2
        watchdog = self.notifier.watchdog_interval()
        last_ping = -math.inf
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), max(0.0, next_at - clock()))
            if self._stopping.is_set():
                break
            started = clock()
            self._reported_cycle(started)
            if watchdog is not None and started - last_ping >= watchdog:
                self.notifier.notify(WATCHDOG=1)
                last_ping = started
            self.stats.record(started - next_at, clock() - started)
            next_at = next_tick(next_at, clock(), self.site.runtime.cycle_period)

    def _reported_cycle(self, started: float) -> None:
        """One cycle, then its report to every listener. A failed cycle writes the safe
        state and is reported all the same."""
        with self.reporting.gathering() as events:
            try:
                self.cycle_once()
            except Exception:  # a bug must not stop the heartbeat-driven safe fallback
                log.exception("control cycle failed: writing the safe state")
                self.writer.safe_state(SAFE_SETPOINTS.as_roles(), force=not self._safe)
                self._safe = True
        try:
            report = self._make_report(started, self.last_points, tuple(events))
        except Exception:  # reporting trouble never stops control
            log.exception("cycle report failed: not reported")
            return
        self.reporting.report(report)

    def _make_report(self, started: float, points: PointSnapshot | None,
                     events: tuple[Event, ...]) -> CycleReport:
        now = time.monotonic()
        status = ControlStatus(writes=self.writer.status(), leases=self.state.leases,
                               output_leases=tuple(self.outputs.leases(now)),
                               outputs=self.outputs.values(), cycle=self.stats.figures())
        return CycleReport(started=started, now=now, wall=time.time(), points=points,
                           decision=self.last_decision, status=status, events=events)

    async def reload(self) -> tuple[bool, str]:
        """Validate the site file again; only a valid one replaces the running drivers.
        The control state (mode, leases, heat-pump timers) carries over. When neither the
        file nor any file it names changed, nothing restarts (heatd.fingerprint)."""
        async with self._reloading:
            with contextlib.suppress(OSError):
                if fingerprint(self.path.read_bytes(), self.site) == self.fingerprint:
                    log.info("reload: configuration unchanged", config_hash=self.config_hash)
                    self.reporting.event("reload", accepted=True, unchanged=True,
                                         config_hash=self.config_hash)
                    return True, "configuration unchanged: nothing to reload"
            try:
                site = load_site(self.path)
            except ConfigError as exc:
                for problem in exc.problems:
                    log.error("reload refused", problem=str(problem))
                self.reporting.event("reload", accepted=False, reason="invalid configuration",
                                     problems=[str(p) for p in exc.problems])
                return False, f"invalid configuration, still running the old one: {exc}"
            try:
                Reporting.check(site)
            except ValueError as exc:
                log.error("reload refused", problem=str(exc))
                self.reporting.event("reload", accepted=False,
                                     reason="mqtt or meter settings unusable",
                                     problems=[str(exc)])
                return False, f"{exc}; still running the old configuration"
            old = self.site
            running = (old, self.config_hash, self.fingerprint)
            await self._stop_io()
            try:
                self._build(site)
                await self._start_io()
            except Exception as exc:
                log.exception("reload failed: the new configuration did not start")
                restored = await self._restore(*running)
                self.reporting.event("reload", accepted=False,
                                     reason="the new configuration did not start",
                                     problems=[repr(exc)], old_restarted=restored)
                then = "running the old one again" if restored else "stopping"
                return False, f"the new configuration did not start ({exc!r}); {then}"
            self.reporting.rebuilt(old)
            log.info("configuration reloaded", config_hash=self.config_hash)
            self.reporting.event("reload", accepted=True, config_hash=self.config_hash)
            return True, "configuration reloaded"

    async def _restore(self, site: SiteConfig, config_hash: str, site_fingerprint: str
                       ) -> bool:
        """A reload whose new drivers failed to start puts back the ones that ran before
        (they were valid and running), so a site is never left without its drivers and
        heartbeat. If even those cannot start again, the daemon stops with a failure: the
        PLC's heartbeat watchdog takes the site, and systemd starts heatd afresh."""
        with _stage("stopping the new configuration's drivers"):
            await self._stop_io()
        self.config_hash, self.fingerprint = config_hash, site_fingerprint
        try:
            self._wire(site)
            await self._start_io()
        except Exception:
            log.exception("the old configuration did not start again: stopping")
            self._failed = True
            self.request_stop()
            return False
        return True

    # --- lifecycle --------------------------------------------------------------------
    async def run(self) -> int:
        """Start the listeners, then the drivers and the writer, run the cycle until
        stopped, then stop each part that started, the last started first. A part that
        fails to start stops those started before it and raises."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        try:
            await self.reporting.start()
            try:
                await self._start_io()
            except BaseException:
                with _stage("stopping the drivers"):  # those started before the failure
                    await self._stop_io()
                raise
            self.notifier.notify(READY=1, STATUS=f"controlling site {self.site.site.id}")
            log.info("heatd running", site=self.site.site.id,
                     cycle_period=self.site.runtime.cycle_period, config_hash=self.config_hash)
            try:
                await self._cycle_loop()
            finally:
                await self._stop_control()
        finally:
            await self._stop_reporting()
        return 1 if self._failed else 0

    async def _shutdown(self) -> None:
        """The whole stop of a daemon whose parts all started (see :meth:`run`)."""
        await self._stop_control()
        await self._stop_reporting()

    async def _stop_control(self) -> None:
        """The safe state first, then the writer and the drivers, then the final report.
        Each stage that fails is logged and the next runs all the same."""
        self.notifier.notify(STOPPING=1, STATUS="writing the safe state")
        log.info("stopping: writing the safe state")
        with _stage("writing the safe state"):
            self.writer.safe_state(SAFE_SETPOINTS.as_roles(), force=True)
            if not await self.writer.flush(self.site.runtime.stop_timeout):
                log.error("safe state not confirmed by every device before exit")
        with _stage("stopping the drivers"):
            await self._stop_io()
        with _stage("the final report"):
            self.reporting.report(self._make_report(time.monotonic(), None, ()))

    async def _stop_reporting(self) -> None:
        """The listeners: the link says offline, the meter's file keeps every record and
        audit still queued (its writer thread would not outlive the process)."""
        with _stage("stopping the listeners"):
            await self.reporting.stop()
        self.notifier.close()


@contextlib.contextmanager
def _stage(name: str) -> Iterator[None]:
    """One stage of a stop: its failure is logged, and what follows it still runs."""
    try:
        yield
    except Exception:
        log.exception("stopping: a stage failed", stage=name)


def run(path: str) -> int:
    """Entry point of ``heatd run``: validate, then run until stopped."""
    try:
        site = load_site(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        return 1
    try:
        Reporting.check(site)
    except ValueError as exc:
        print(f"{path}: {exc}")
        return 1
    return uvloop.run(Daemon(path, site).run())
