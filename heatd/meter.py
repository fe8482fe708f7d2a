"""Energy metering: what the site sold, per interval, in records a utility can bill from.

Counters (``hp.heat_energy``, ``it.energy``) are preferred: a delta of two counter
readings is right even when polls were missed in between. Without a counter, or when it
went backwards (replaced, reset), the power role is integrated over the good samples and
the record says so. Every record carries its coverage: the share of the interval with good
data, so a partial interval is never passed off as a complete one.

Pure: time and values are arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from heatd.control import roles as R

# quantity -> (counter role, power role)
QUANTITIES: dict[str, tuple[str | None, str]] = {
    "heat_kwh": (R.HP_HEAT_ENERGY, R.HP_HEAT),
    "it_kwh": (R.IT_ENERGY, R.IT_POWER),
    "hp_electricity_kwh": (None, R.HP_POWER),
}
MAX_GAP_S = 60.0
"""Two power samples further apart than this are not bridged by the integral."""


@dataclass
class _Quantity:
    first_counter: float | None = None
    last_counter: float | None = None
    integral_kwh: float = 0.0
    covered_s: float = 0.0
    last_sample: tuple[float, float] | None = None

    def observe(self, now: float, counter: float | None, power: float | None) -> None:
        if counter is not None:
            if self.first_counter is None:
                self.first_counter = counter
            self.last_counter = counter
        if power is None:
            self.last_sample = None
            return
        if self.last_sample is not None:
            then, before = self.last_sample
            gap = now - then
            if 0 < gap <= MAX_GAP_S:
                self.integral_kwh += (before + power) / 2 * gap / 3600
                self.covered_s += gap
        self.last_sample = (now, power)

    def result(self, length_s: float) -> tuple[float | None, str, float]:
        """(kWh, source, coverage) of the interval."""
        first, last = self.first_counter, self.last_counter
        if first is not None and last is not None and last >= first:
            return round(last - first, 6), "counter", 1.0
        coverage = min(1.0, self.covered_s / length_s) if length_s > 0 else 0.0
        if coverage == 0.0:
            return None, "none", 0.0
        return round(self.integral_kwh, 6), "power", round(coverage, 4)


@dataclass
class EnergyMeter:
    """Accumulates one interval at a time; ``observe`` returns the record of an interval
    that has just ended (epoch seconds, aligned to the interval length)."""

    site: str
    interval_s: float
    _start: float | None = None
    _quantities: dict[str, _Quantity] = field(default_factory=dict)

    def observe(self, now: float, values: Mapping[str, float | None]) -> dict[str, Any] | None:
        record = None
        if self._start is None:
            self._start = now - now % self.interval_s
            self._quantities = {name: _Quantity() for name in QUANTITIES}
        elif now >= self._start + self.interval_s:
            record = self._close(self._start + self.interval_s)
            self._start = now - now % self.interval_s
            # the next interval starts where this one ended: no energy falls between
            self._quantities = {
                name: _Quantity(first_counter=q.last_counter, last_counter=q.last_counter,
                                last_sample=q.last_sample)
                for name, q in self._quantities.items()
            }
        for name, (counter_role, power_role) in QUANTITIES.items():
            counter = values.get(counter_role) if counter_role else None
            self._quantities[name].observe(now, counter, values.get(power_role))
        return record

    def _close(self, end: float) -> dict[str, Any]:
        assert self._start is not None
        record: dict[str, Any] = {"site": self.site, "start": int(self._start * 1000),
                                  "end": int(end * 1000)}
        for name, quantity in self._quantities.items():
            kwh, source, coverage = quantity.result(end - self._start)
            record[name] = kwh
            record[name.removesuffix("_kwh") + "_source"] = source
            record[name.removesuffix("_kwh") + "_coverage"] = coverage
        return record
