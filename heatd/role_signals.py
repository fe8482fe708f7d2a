"""Between points and roles: the control core's snapshot of the input roles, from the
point image, each point's value converted to role units (``heatd.role_units``).
"""

from __future__ import annotations

from heatd.config import SiteConfig
from heatd.control import roles as R
from heatd.control.signals import Signal, Snapshot
from heatd.drivers.reading import Quality
from heatd.points import PointSnapshot
from heatd.role_units import percent_factor

InputBindings = tuple[tuple[str, tuple[tuple[str, float], ...]], ...]
"""Each input role with its points as (``device.point``, percent factor)."""


def input_bindings(site: SiteConfig) -> InputBindings:
    """What ``control_snapshot`` looks up, resolved once per site instead of every cycle."""
    return tuple(
        (role, tuple((ref, percent_factor(role, site.point(ref)))
                     for ref in site.role_points(role)))
        for role in site.roles if role not in R.OUTPUT_ROLES
    )


def control_snapshot(site: SiteConfig | InputBindings, points: PointSnapshot,
                     now: float) -> Snapshot:
    """Every input role with one Signal per bound point, stamped with the monotonic time
    heatd heard it (``now`` for a point never heard), so the core's own staleness rule
    judges its real age; a point the image does not judge good is a bad signal. The
    cycle passes the site's ``input_bindings``; a one-off caller may pass the site."""
    bindings = input_bindings(site) if isinstance(site, SiteConfig) else site
    signals: dict[str, tuple[Signal, ...]] = {}
    for role, bound_points in bindings:
        bound = []
        for ref, factor in bound_points:
            reading = points[ref]
            if isinstance(reading.value, bool) and role not in R.BOOL_ROLES:
                # a flag where a quantity is expected (a Boolean node, a coil) is no 1.0 degC
                bound.append(Signal.bad("a true/false value for a quantity", now))
            elif reading.quality is Quality.GOOD and reading.value is not None:
                heard = now if reading.heard_at is None else reading.heard_at
                bound.append(Signal(float(reading.value) / factor, True, heard))
            else:
                bound.append(Signal.bad(reading.quality_text, now))
        signals[role] = (_sum(bound, now),) if len(bound) > 1 and role in _SUMMED else tuple(bound)
    return Snapshot(now, signals)


_SUMMED = R.SUMMED_ROLES


def _sum(parts: list[Signal], now: float) -> Signal:
    """The parts of one quantity (rack power meters) as one signal: their sum, as old as
    the oldest part; bad, naming the first bad part, unless every part is good, since a
    sum without a rack would understate the load."""
    values = []
    for index, part in enumerate(parts):
        if not part.good or part.value is None:
            return Signal.bad(f"point {index}: {part.reason}", now)
        values.append(part.value)
    return Signal(sum(values), True, min(p.ts for p in parts))
