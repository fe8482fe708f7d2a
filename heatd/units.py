"""Unit spellings: the one table of how site files write the units heatd knows.

Device manuals, Modbus register maps and OPC UA ``EngineeringUnits`` spell one unit many
ways (``℃``, ``Cel``, ``deg C``, ``kw``, ``KW``); every reader of a point's ``unit`` (the
role and contract meter checks, Home Assistant discovery) names it by the one spelling
this table gives, so a point that documents its unit is never refused for the spelling.
"""

from __future__ import annotations

SPELLINGS: dict[str, tuple[str, ...]] = {
    "degC": ("°C", "℃", "ºC", "˚C", "Cel", "deg C", "Celsius", "degree Celsius",
             "degrees Celsius"),
    "degF": ("°F", "℉", "ºF", "˚F", "[degF]", "deg F", "Fahrenheit", "degree Fahrenheit",
             "degrees Fahrenheit"),
    "K": ("kelvin",),
    "W": ("watt", "watts"),
    "kW": ("kilowatt", "kilowatts"),
    "MW": ("megawatt", "megawatts"),
    "Wh": ("W.h", "W·h"),
    "kWh": ("kW.h", "kW·h"),
    "MWh": ("MW.h", "MW·h"),
    "m3/h": ("m³/h",),
    "L/min": (),
    "bar": (),
    "kPa": (),
    "%": (),
}
"""Each unit's name in heatd -> the other spellings taken for it (UCUM's ``Cel`` and
``[degF]`` among them). Case and spaces do not count (``degc``, ``KW``, ``deg C``), except
for ``CASE_MATTERS``."""

CASE_MATTERS = frozenset({"MW", "MWh"})
"""Units taken only as written: ``mW`` is a milliwatt, not a megawatt."""


def _key(text: str) -> str:
    return "".join(text.split())


def _folded(text: str) -> str:
    return _key(text).casefold()


_EXACT = {_key(s): unit for unit, spelt in SPELLINGS.items() for s in (unit, *spelt)}
_ANY_CASE = {_folded(s): unit for unit, spelt in SPELLINGS.items() if unit not in CASE_MATTERS
             for s in (unit, *spelt)}


def canonical_unit(text: str) -> str:
    """heatd's name of the unit ``text`` spells, or ``text`` itself for a unit it does not
    know."""
    return _EXACT.get(_key(text)) or _ANY_CASE.get(_folded(text), text)
