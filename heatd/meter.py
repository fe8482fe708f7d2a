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

``EnergyMeter`` is pure (time and values are arguments); ``SiteMeter`` reads the point
image for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from heatd.billing.hourly import GRACE_S, Hour, HourlyMeter
from heatd.billing.inputs import ChannelReader
from heatd.billing.points import ENERGY_UNITS, POWER_UNITS, Channel, channel
from heatd.config import SiteConfig
from heatd.control import roles as R
from heatd.points import PointSnapshot

# quantity -> (counter role, power role)
QUANTITIES: dict[str, tuple[str | None, str]] = {
    "heat_kwh": (R.HP_HEAT_ENERGY, R.HP_HEAT),
    "it_kwh": (R.IT_ENERGY, R.IT_POWER),
    "hp_electricity_kwh": (None, R.HP_POWER),
}


def counter_name(quantity: str) -> str:
    return f"{quantity}:counter"


def power_name(quantity: str) -> str:
    return f"{quantity}:power"


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
                 counters: Mapping[str, float | None] | None = None) -> None:
        """``counters``: channel name -> wrap modulus (kWh) of the counters the site has."""
        self.site = site
        names = tuple(power_name(q) for q in QUANTITIES)
        self._meter = HourlyMeter(dict(counters or {}), names, {}, length_s=interval_s,
                                  hold_s=GRACE_S)

    def observe(self, now: float, counters: Mapping[str, tuple[float, float] | None],
                counters_good: Mapping[str, bool], powers: Mapping[str, float | None]
                ) -> list[dict[str, Any]]:
        closed = self._meter.observe(now, counters=counters, counters_good=counters_good,
                                     powers=powers, levels={})
        return [self._record(hour) for hour in closed]

    def _record(self, hour: Hour) -> dict[str, Any]:
        record: dict[str, Any] = {"site": self.site, "start": int(hour.start * 1000),
                                  "end": int(hour.end * 1000)}
        for quantity in QUANTITIES:
            kwh, source, coverage = _result(hour, quantity)
            stem = quantity.removesuffix("_kwh")
            record[quantity] = kwh
            record[f"{stem}_source"] = source
            record[f"{stem}_coverage"] = coverage
        return record


def _result(hour: Hour, quantity: str) -> tuple[float | None, str, float]:
    """(kWh, source, coverage) of one quantity in one interval."""
    part = hour.counters.get(counter_name(quantity))
    if part is not None and not part.reset and part.covered_s > 0:
        return round(part.kwh, 6), "counter", round(min(1.0, part.covered_s / hour.length), 4)
    stats = hour.powers.get(power_name(quantity))
    if stats is None or stats.covered_s <= 0:
        return None, "none", 0.0
    return round(stats.total, 6), "power", round(min(1.0, stats.covered_s / hour.length), 4)


class SiteMeter:
    """The daemon's interval meter: the site's points read once per cycle into an
    :class:`EnergyMeter`."""

    def __init__(self, site: SiteConfig, interval_s: float) -> None:
        self._channels = meter_channels(site)
        self._counters = frozenset(counter_name(q) for q in QUANTITIES)
        moduli = {n: c.modulus for n, c in self._channels.items() if n in self._counters}
        self._meter = EnergyMeter(site.site.id, interval_s, moduli)
        self._reader = ChannelReader()

    def observe(self, wall: float, points: PointSnapshot | None) -> list[dict[str, Any]]:
        if points is None:
            return []
        counters, good, values = self._reader.read(self._channels, self._counters, wall,
                                                   points)
        return self._meter.observe(wall, counters, good, values)
