"""Role values and point values: the control core speaks roles in fixed units, sites speak
points in whatever their devices use.

Valve position, fan speed and heat-pump capacity are fractions (0..1) for the control core;
a point whose unit is ``%`` carries them in percent and is converted here, in one place,
for reading feedback and for writing setpoints alike. Every other role takes its values in
one unit (``ROLE_UNITS``), however the point spells it (``heatd.units``: ``℃``, ``Cel``,
``kw``); a point that declares another is refused by check-config
(``unit_problem``) rather than converted, because the point's own ``scale`` and ``offset``
convert it exactly where it is read, for every reader of the point alike. A point without
a unit is taken to be in its role's unit. Apart from ``heatd.role_signals`` (which builds
the core's snapshot) so that checking a site file loads neither the point image nor the
core's signals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from heatd.control import roles as R
from heatd.units import canonical_unit

if TYPE_CHECKING:
    from heatd.config import PointConfig

FRACTION_ROLES = frozenset({
    R.VALVE_RECOVERY, R.DRYCOOLER_FAN, R.HP_CAPACITY,
    R.VALVE_RECOVERY_ACTUAL, R.DRYCOOLER_FAN_ACTUAL, R.HP_CAPACITY_ACTUAL,
})


_TEMPERATURES = (
    R.COOLANT_SUPPLY_TEMP, R.COOLANT_RETURN_TEMP, R.RACK_INLET_TEMP, R.DH_SUPPLY_TEMP,
    R.DH_RETURN_TEMP, R.STORAGE_TOP_TEMP, R.STORAGE_BOTTOM_TEMP, R.OUTDOOR_TEMP,
    R.DH_SUPPLY_SETPOINT)
ROLE_UNITS: dict[str, str] = {
    **dict.fromkeys(_TEMPERATURES, "degC"),
    **dict.fromkeys((R.IT_POWER, R.HP_POWER, R.HP_HEAT, R.DH_DEMAND), "kW"),
    **dict.fromkeys((R.IT_ENERGY, R.HP_HEAT_ENERGY), "kWh"),
}
"""The unit each quantity role takes. Not here: shares (``FRACTION_ROLES``), the coolant
flow (the core uses it only as a ratio, and ``flow_min`` in the point's own unit) and
flags, codes and counters, which have none."""

_HOW_TO_CONVERT = {
    ("W", "kW"): "multiply the point's scale by 0.001",
    ("MW", "kW"): "multiply the point's scale by 1000",
    ("Wh", "kWh"): "multiply the point's scale by 0.001",
    ("MWh", "kWh"): "multiply the point's scale by 1000",
    ("K", "degC"): "add -273.15 to the point's offset",
    ("degF", "degC"): "multiply the point's scale by 5/9, set its offset to "
                      "(offset - 32) x 5/9",
}
"""How the point's ``value = raw * scale + offset`` takes a unit heatd knows to the role's."""


def unit_problem(role: str, point: PointConfig) -> str | None:
    """Why ``point``'s declared unit cannot carry ``role``, or None."""
    if point.unit is None:
        return None
    if role in FRACTION_ROLES:
        if point.unit == "%":
            return None
        return (f"is in {point.unit}; the role takes a share 0..1 (no unit) or percent "
                "(unit: %)")
    wanted = ROLE_UNITS.get(role)
    unit = canonical_unit(point.unit)
    if wanted is None or unit == wanted:
        return None
    how = _HOW_TO_CONVERT.get((unit, wanted))
    hint = f": {how}, and write unit: {wanted}" if how else ""
    return f"is in {point.unit}; the role takes {wanted}{hint}"


def percent_factor(role: str, point: PointConfig) -> float:
    """Point value = role value x this factor."""
    return 100.0 if role in FRACTION_ROLES and point.unit == "%" else 1.0


def to_point_value(role: str, point: PointConfig, value: float | bool) -> float | bool | int:
    """A role value as the point wants it written."""
    if isinstance(value, bool):
        return value
    return value * percent_factor(role, point)
