"""Each rack on its own, for people: the control core sees the hottest rack inlet and the
summed rack power, which is what cooling decisions need, but an operator needs to know
which rack is over its inlet limit and what each one draws."""

from __future__ import annotations

from typing import Any

from heatd.config import SiteConfig
from heatd.control import roles as R
from heatd.drivers.reading import Quality
from heatd.points import PointSnapshot


def rack_report(site: SiteConfig, points: PointSnapshot) -> dict[str, Any] | None:
    """``{"inlet_limit_c", "inlet": {ref: degC|None}, "over_limit": [ref], "power":
    {ref: kW|None}}`` for a site with several rack inlet or rack power points, else
    None. A rack whose inlet is at or above ``envelope.rack_inlet_limit_c`` is over it."""
    inlets = site.role_points(R.RACK_INLET_TEMP)
    powers = site.role_points(R.IT_POWER)
    if len(inlets) < 2 and len(powers) < 2:
        return None
    limit = site.control.envelope.rack_inlet_limit_c
    inlet = {ref: _value(points, ref) for ref in inlets}
    return {
        "inlet_limit_c": limit,
        "inlet": inlet,
        "over_limit": [ref for ref, value in inlet.items() if value is not None
                       and value >= limit],
        "power": {ref: _value(points, ref) for ref in powers} if len(powers) > 1 else {},
    }


def _value(points: PointSnapshot, ref: str) -> float | None:
    reading = points[ref]
    if reading.quality is not Quality.GOOD or reading.value is None:
        return None
    return float(reading.value)
