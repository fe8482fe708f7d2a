"""Role values and point values: the control core speaks roles in fixed units, sites speak
points in whatever their devices use.

Valve position, fan speed and heat-pump capacity are fractions (0..1) for the control core;
a point whose unit is ``%`` carries them in percent and is converted here, in one place,
for reading feedback and for writing setpoints alike. Apart from ``heatd.role_signals``
(which builds the core's snapshot) so that checking a site file loads neither the point
image nor the core's signals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from heatd.control import roles as R

if TYPE_CHECKING:
    from heatd.config import PointConfig

FRACTION_ROLES = frozenset({
    R.VALVE_RECOVERY, R.DRYCOOLER_FAN, R.HP_CAPACITY,
    R.VALVE_RECOVERY_ACTUAL, R.DRYCOOLER_FAN_ACTUAL, R.HP_CAPACITY_ACTUAL,
})


def percent_factor(role: str, point: PointConfig) -> float:
    """Point value = role value x this factor."""
    return 100.0 if role in FRACTION_ROLES and point.unit == "%" else 1.0


def to_point_value(role: str, point: PointConfig, value: float | bool) -> float | bool | int:
    """A role value as the point wants it written."""
    if isinstance(value, bool):
        return value
    return value * percent_factor(role, point)
