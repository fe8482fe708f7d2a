"""The PLC heartbeat: a value that changes at every cycle, within what its point carries.

The site PLC's watchdog sees heatd alive only while the heartbeat changes, so the counter
must never hold still: not when it reaches the top of its register type (an INT watchdog
word carries 32767, not 65535), not against the point's ``write_max``, and not in a scale
that makes several counts one raw value. The counter therefore counts raw steps: the k-th
value is ``k * scale + offset``, k running over the raw values the point's type, its write
bounds and its range all allow (at most 0..32767, which every integer type a watchdog uses
carries), and starting again at the first. A boolean point toggles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from heatd.config import PointConfig, SiteConfig
from heatd.control import roles as R
from heatd.drivers.codec import RAW_LIMITS, DataType

HEARTBEAT_TOP = 32767
"""The highest raw count: INT, UINT, DINT and REAL watchdog words all carry it."""


@dataclass(frozen=True, slots=True)
class HeartbeatSpan:
    """Raw counts ``first..last`` (at least two), written as ``k * scale + offset``."""

    first: int
    last: int
    scale: float = 1.0
    offset: float = 0.0

    def value(self, count: int) -> float:
        """The engineering value of the ``count``-th beat (any count: it wraps)."""
        k = self.first + count % (self.last - self.first + 1)
        return k * self.scale + self.offset


def heartbeat_span(point: PointConfig) -> HeartbeatSpan | str:
    """The counts a heartbeat on ``point`` runs through, or why it cannot beat there."""
    if point.data_type is DataType.BOOL:
        return HeartbeatSpan(0, 1)
    scale, offset = point.scale, point.offset
    if scale == 0:
        return "its scale is 0: every count would write the same value"
    low, high = 0.0, float(HEARTBEAT_TOP)
    raw = RAW_LIMITS.get(point.data_type) if point.data_type is not None else None
    if raw is not None:
        low, high = max(low, raw[0]), min(high, raw[1])
    for lo, hi in ((point.write_min, point.write_max), point.range or (None, None)):
        for bound, is_lower in ((lo, True), (hi, False)):
            if bound is None:
                continue
            k = (bound - offset) / scale
            if is_lower == (scale > 0):  # a negative scale turns the bounds around
                low = max(low, k)
            else:
                high = min(high, k)
    first, last = math.ceil(low), math.floor(high)
    if last - first < 1:
        return (f"it carries fewer than two heartbeat values (raw counts {first} to {last}"
                " after its type, write_min/write_max and range): the PLC would see it stand"
                " still")
    return HeartbeatSpan(first, last, scale, offset)


DEFAULT_SPAN = HeartbeatSpan(0, HEARTBEAT_TOP)
"""A site without a heartbeat point: the count is kept, nothing is written."""


def site_heartbeat(site: SiteConfig) -> HeartbeatSpan:
    """The span of the site's ``plc.heartbeat`` point; check-config has refused a point
    that cannot beat (:func:`heartbeat_span`), so such a point here is a bug."""
    refs = site.role_points(R.PLC_HEARTBEAT)
    if not refs:
        return DEFAULT_SPAN
    device, name = refs[0].split(".", 1)
    span = heartbeat_span(site.devices[device].points[name])
    if isinstance(span, str):
        raise ValueError(f"plc.heartbeat {refs[0]!r}: {span}")
    return span
