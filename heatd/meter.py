"""Energy metering: what the site sold, per interval, in records a utility can bill from.

Counters (``hp.heat_energy``, ``it.energy``) are preferred: the counter's value at each
interval boundary is interpolated between the readings around it, so intervals add up to
the counter's own delta even when it is polled less often than the interval is long (a
counter not re-read since the last record is no reading, never zero energy), and a
point's ``wrap`` is honoured. Without a counter, or where it went backwards (replaced,
reset), the power role is integrated over the good samples and the record says so. Every
record carries its coverage: the share of the interval with good data, so a partial
interval is never passed off as a complete one. The hourly contract records
(``heatd.billing``) use the same engine.

heatd's own downtime (a stop, a crash, a reload that replaces the meter) is resumed as
the contract records resume it (``Resume``): from where the stored records end and the
counters' values there (each record's ``*_counter_end``, kept by ``heatd.meter_store``),
the first reading after the start spreads each counter's delta over the intervals heatd
missed, flagged ``downtime`` and ``estimated`` with ``downtime_s``. Power is never
invented: an interval heatd missed has no power coverage for the time it was down. A
counter that went backwards across the downtime gives no energy (``counter_reset``). A
downtime longer than ``MAX_RECOVERED`` intervals is one record spanning it (spread over
thousands of intervals it would be no truer, and a start stays bounded work); the series
stays contiguous either way.

``EnergyMeter`` is pure (time and values are arguments); ``SiteMeter`` reads the point
image for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import structlog

from heatd.billing.hourly import GRACE_S, CounterPart, Hour, HourlyMeter, Resume
from heatd.billing.inputs import ChannelReader
from heatd.billing.points import ENERGY_UNITS, POWER_UNITS, Channel, channel
from heatd.config import SiteConfig
from heatd.control import roles as R
from heatd.points import PointSnapshot

log = structlog.get_logger(__name__)

# quantity -> (counter role, power role)
QUANTITIES: dict[str, tuple[str | None, str]] = {
    "heat_kwh": (R.HP_HEAT_ENERGY, R.HP_HEAT),
    "it_kwh": (R.IT_ENERGY, R.IT_POWER),
    "hp_electricity_kwh": (None, R.HP_POWER),
}
MAX_RECOVERED = 3000
"""The most intervals of a downtime made one record each (a month of quarter hours); a
longer downtime is one record, up to the interval heatd started in."""


def counter_name(quantity: str) -> str:
    return f"{quantity}:counter"


def power_name(quantity: str) -> str:
    return f"{quantity}:power"


def counter_end_field(quantity: str) -> str:
    """The record field with the counter's reading at the interval's end."""
    return f"{quantity.removesuffix('_kwh')}_counter_end"


def counter_end_at_field(quantity: str) -> str:
    """The record field with the time (epoch ms) of the reading ``*_counter_end`` gives."""
    return f"{counter_end_field(quantity)}_at"


def bridged_field(quantity: str) -> str:
    """The record field with the power energy that bridges a silent counter, not yet
    settled against the counter's delta."""
    return f"{quantity.removesuffix('_kwh')}_bridged_kwh"


def bridged_at_resume(fields: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Per counter quantity, the bridged power energy the last stored record left
    outstanding (``fields``: as the store keeps them, name -> (time, value))."""
    return {q: fields[bridged_field(q)][1] for q, (role, _) in QUANTITIES.items()
            if role is not None and bridged_field(q) in fields}


def interval_resume(end: float, counter_ends: Mapping[str, tuple[float, float]]) -> Resume:
    """The engine's ``Resume`` from where the stored records end: ``counter_ends`` holds,
    per ``*_counter_end`` field, (time, value) of the counter's last known reading."""
    counters = {counter_name(q): counter_ends[counter_end_field(q)]
                for q, (role, _) in QUANTITIES.items()
                if role is not None and counter_end_field(q) in counter_ends}
    return Resume(end, counters)


def meter_channels(site: SiteConfig) -> dict[str, Channel]:
    """The site's points for each quantity's counter and power, by channel name."""
    out: dict[str, Channel] = {}
    for quantity, (counter_role, power_role) in QUANTITIES.items():
        if counter_role is not None:
            found = channel(site, counter_name(quantity), None, counter_role, ENERGY_UNITS)
            if found is not None:
                out[found.name] = found
        found = channel(site, power_name(quantity), None, power_role, POWER_UNITS)
        if found is not None:
            out[found.name] = found
    return out


class EnergyMeter:
    """Accumulates intervals aligned to the clock; ``observe`` returns the records of the
    intervals that closed (an interval closes once its counters' values at its end are
    known, or ``GRACE_S`` after its end)."""

    def __init__(self, site: str, interval_s: float,
                 counters: Mapping[str, float | None] | None = None,
                 resume: Resume | None = None,
                 bridged: Mapping[str, float] | None = None) -> None:
        """``counters``: channel name -> wrap modulus (kWh) of the counters the site has;
        ``resume``: where the records kept before this start end (None: the first);
        ``bridged``: the power energy those records left outstanding per quantity."""
        self.site = site
        self._length = interval_s
        self._moduli = dict(counters or {})
        self._resume = resume
        self._resume_at = None if resume is None else _boundary(resume.end, interval_s)
        """The first interval boundary at or after the stored end (the end itself unless
        the interval's length changed): where the records go on."""
        if resume is not None and self._resume_at is None:
            log.warning("meter: the stored records end off this interval's boundaries: not"
                        " resumed", end=resume.end, interval=interval_s)
        self._meter: HourlyMeter | None = None
        """Made at the first observation at or after ``_resume_at``."""
        self._gap: tuple[float, float] | None = None
        """[start, end) of a downtime made one record."""
        self._early = False
        """heatd started before ``_resume_at`` (the clock stepped back, or the interval
        changed): what the counters showed meanwhile is in the first record."""
        self._bridged: dict[str, float] = {q: kwh for q, kwh in (bridged or {}).items() if kwh}
        """Per quantity with a counter: the power energy recorded in its place since the
        counter was last read. The counter's delta covers that time again when it is read
        (``late``), so that record deducts it and the records add up to the delta. Each
        record carries it (``*_bridged_kwh``), so a restart picks it up."""

    def observe(self, now: float, counters: Mapping[str, tuple[float, float] | None],
                counters_good: Mapping[str, bool], powers: Mapping[str, float | None]
                ) -> list[dict[str, Any]]:
        if self._meter is None:
            if self._resume_at is not None and now < self._resume_at:
                if not self._early:  # nothing is recorded twice: wait for the clock
                    log.warning("meter: waiting for the clock to pass the stored records",
                                now=now, end=self._resume_at)
                    self._early = True
                return []
            self._meter = self._start(now)
        closed = self._meter.observe(now, counters=counters, counters_good=counters_good,
                                     powers=powers, levels={})
        records = []
        for hour in closed:
            if self._gap is not None:
                records.append(self._gap_record(*self._gap, hour))
                self._gap = None
            records.append(self._record(hour))
            self._early = False
        return records

    def _start(self, now: float) -> HourlyMeter:
        """The engine, resumed at ``_resume_at``; a counter last known before it (bad
        during the last records, or a changed interval) gives its energy since then to
        the first record, as ``late``."""
        resume = None
        if self._resume is not None and self._resume_at is not None:
            end = self._resume_at
            current = math.floor(now / self._length) * self._length
            if current - end > MAX_RECOVERED * self._length:
                self._gap = (end, current)
                end = current
            resume = Resume(end, {n: r for n, r in self._resume.counters.items()
                                  if n in self._moduli})
        return HourlyMeter(self._moduli, tuple(power_name(q) for q in QUANTITIES), {},
                           resume, length_s=self._length, hold_s=GRACE_S)

    def _record(self, hour: Hour) -> dict[str, Any]:
        record: dict[str, Any] = {"site": self.site, "start": int(hour.start * 1000),
                                  "end": int(hour.end * 1000),
                                  "downtime_s": round(hour.downtime_s, 3)}
        for quantity, (counter_role, _) in QUANTITIES.items():
            kwh, source, coverage, flags = _result(hour, quantity)
            if counter_name(quantity) in self._moduli:
                kwh = self._settle(quantity, kwh, source, flags)
            if hour.downtime_s > 0:
                flags.add("downtime")
            if self._early and source == "counter":
                flags.add("estimated")
            _put(record, quantity, kwh, source, coverage, flags)
            if counter_role is not None:
                part = hour.counters.get(counter_name(quantity))
                at, end = _counter_end(hour, part)
                record[counter_end_field(quantity)] = None if end is None else round(end, 6)
                record[counter_end_at_field(quantity)] = None if at is None else round(at * 1000)
                record[bridged_field(quantity)] = round(self._bridged.get(quantity, 0.0), 6)
        return record

    def _settle(self, quantity: str, kwh: float | None, source: str, flags: set[str]
                ) -> float | None:
        """A counter quantity's energy, net of the power energy recorded in place of its
        counter while the counter was silent: bridged power is remembered, and deducted
        (flag ``corrected``) from the record its late delta lands in. A counter that went
        backwards ends the bridge: power was then the only measure of that time."""
        if source == "power" and kwh is not None and "counter_reset" not in flags:
            self._bridged[quantity] = self._bridged.get(quantity, 0.0) + kwh
        elif "counter_reset" in flags:
            self._bridged.pop(quantity, None)
        elif source == "counter" and "late" in flags and kwh is not None:
            bridged = self._bridged.pop(quantity, 0.0)
            if bridged:
                flags.add("corrected")
                return round(kwh - bridged, 6)
        return kwh

    def _gap_record(self, start: float, end: float, first: Hour) -> dict[str, Any]:
        """A long downtime as one record: each counter's share of its delta, which the
        engine gave the first interval as energy of intervals already closed (``late``),
        moved out of it."""
        record: dict[str, Any] = {"site": self.site, "start": int(start * 1000),
                                  "end": int(end * 1000), "downtime_s": round(end - start, 3)}
        for quantity, (counter_role, _) in QUANTITIES.items():
            part = first.counters.get(counter_name(quantity))
            if part is None or part.reset or part.covered_s <= 0:
                _put(record, quantity, None, "none", 0.0, {"downtime"})
            else:
                flags = {"downtime", "estimated", "late"}
                kwh = self._settle(quantity, round(part.late_kwh, 6), "counter", flags)
                flags.discard("late")  # all of it is this record's own time
                _put(record, quantity, kwh, "counter", 1.0, flags)
                part.kwh -= part.late_kwh
                part.late_kwh = 0.0
            if counter_role is not None:
                record[counter_end_field(quantity)] = None
                record[counter_end_at_field(quantity)] = None
                record[bridged_field(quantity)] = round(self._bridged.get(quantity, 0.0), 6)
        return record


def _counter_end(hour: Hour, part: CounterPart | None) -> tuple[float | None, float | None]:
    """(time, value) of the counter reading the interval's counter energy ends at: at the
    interval's end, or the last reading before it when the counter fell silent (a restart
    goes on from there, so that energy is not counted twice); (None, None) for none."""
    if part is None:
        return None, None
    if part.end_value is not None:
        return hour.end, part.end_value
    return part.last if part.last is not None else (None, None)


def _put(record: dict[str, Any], quantity: str, kwh: float | None, source: str,
         coverage: float, flags: set[str]) -> None:
    stem = quantity.removesuffix("_kwh")
    record[quantity] = kwh
    record[f"{stem}_source"] = source
    record[f"{stem}_coverage"] = coverage
    record[f"{stem}_flags"] = sorted(flags)


def _boundary(t: float, length: float) -> float | None:
    """The first interval boundary at or after ``t`` (a stored end, to the millisecond)
    exactly as the engine computes boundaries; None if there is none such."""
    n = round(t / length)
    if abs(t - n * length) > 0.001:
        n = math.ceil(t / length)
    start = n * length
    return start if math.floor(start / length) * length == start else None


def _result(hour: Hour, quantity: str) -> tuple[float | None, str, float, set[str]]:
    """(kWh, source, coverage, flags) of one quantity in one interval: the counter where
    it was read across the interval and did not go backwards, else integrated power."""
    part = hour.counters.get(counter_name(quantity))
    flags: set[str] = set()
    if part is not None and part.reset:
        flags.add("counter_reset")
    elif part is not None and part.covered_s > 0:
        if part.estimated_s > 0:
            flags.add("estimated")
        if part.late_kwh:
            flags.add("late")
        coverage = round(min(1.0, part.covered_s / hour.length), 4)
        return round(part.kwh, 6), "counter", coverage, flags
    stats = hour.powers.get(power_name(quantity))
    if stats is None or stats.covered_s <= 0:
        return None, "none", 0.0, flags
    coverage = round(min(1.0, stats.covered_s / hour.length), 4)
    return round(stats.total, 6), "power", coverage, flags


class SiteMeter:
    """The daemon's interval meter: the site's points read once per cycle into an
    :class:`EnergyMeter`."""

    def __init__(self, site: SiteConfig, interval_s: float, resume: Resume | None = None,
                 bridged: Mapping[str, float] | None = None) -> None:
        self._channels = meter_channels(site)
        self._counters = frozenset(counter_name(q) for q in QUANTITIES)
        moduli = {n: c.modulus for n, c in self._channels.items() if n in self._counters}
        self._meter = EnergyMeter(site.site.id, interval_s, moduli, resume, bridged)
        self._reader = ChannelReader()

    def observe(self, wall: float, points: PointSnapshot | None) -> list[dict[str, Any]]:
        if points is None:
            return []
        counters, good, values = self._reader.read(self._channels, self._counters, wall,
                                                   points)
        return self._meter.observe(wall, counters, good, values)
