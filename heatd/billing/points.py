"""Which points feed each contract's meter, and in which units: a point the contract
names, else the site's role. Shared by the site checks and the daemon, so what is checked
is what is read."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from heatd.billing.contracts import CoolingGuarantee, HeatPurchase
from heatd.config import PointConfig, SiteConfig
from heatd.control import roles as R
from heatd.units import canonical_unit

Loc = tuple[str | int, ...]

ENERGY_UNITS = {"kWh": 1.0, "Wh": 0.001, "MWh": 1000.0}
POWER_UNITS = {"kW": 1.0, "W": 0.001, "MW": 1000.0}
TEMPERATURE_UNITS = {"degC": 1.0}

# channel -> (role it defaults to, units it accepts)
HEAT_CHANNELS: dict[str, tuple[str, dict[str, float]]] = {
    "energy": (R.HP_HEAT_ENERGY, ENERGY_UNITS),
    "power": (R.HP_HEAT, POWER_UNITS),
    "supply_temp": (R.DH_SUPPLY_TEMP, TEMPERATURE_UNITS),
    "return_temp": (R.DH_RETURN_TEMP, TEMPERATURE_UNITS),
}
COOLING_CHANNELS: dict[str, tuple[str | None, dict[str, float]]] = {
    "it_energy": (R.IT_ENERGY, ENERGY_UNITS),
    "it_power": (R.IT_POWER, POWER_UNITS),
    "hp_power": (R.HP_POWER, POWER_UNITS),
    "fan_power": (None, POWER_UNITS),
}
COOLING_ROLES = {"rack_inlet": R.RACK_INLET_TEMP, "supply_temp": R.COOLANT_SUPPLY_TEMP}
"""Roles the cooling guarantee is judged on, every bound point (the worst one counts)."""


@dataclass(frozen=True, slots=True)
class Channel:
    """One measured quantity of a contract: its points and the factor to kWh, kW or degC."""

    name: str
    refs: tuple[str, ...]
    factor: float
    modulus: float | None = None
    """A wrapping counter's range in kWh (2^bits x scale x factor)."""


def _unit_factor(point: PointConfig, units: dict[str, float]) -> float | None:
    """The factor to the channel's unit, whichever way the point spells its unit."""
    return units.get(canonical_unit(point.unit or ""))


def channel(site: SiteConfig, name: str, ref: str | None, role: str | None,
            units: dict[str, float]) -> Channel | None:
    """The point ``ref``, else the first point bound to ``role``; None if neither."""
    refs = (ref,) if ref is not None else tuple(site.role_points(role) if role else ())
    refs = tuple(r for r in refs if _point(site, r) is not None)
    if not refs:
        return None
    point = _point(site, refs[0])
    assert point is not None
    factor = _unit_factor(point, units) or 1.0
    modulus = None
    if point.wrap is not None:
        modulus = 2.0 ** point.wrap * abs(point.scale) * factor
    return Channel(name, refs[:1], factor, modulus)


def _point(site: SiteConfig, ref: str) -> PointConfig | None:
    device, _, name = ref.partition(".")
    found = site.devices.get(device)
    return None if found is None else found.points.get(name)


def _named_channels(site: SiteConfig, meter: object,
                    table: Mapping[str, tuple[str | None, dict[str, float]]]
                    ) -> dict[str, Channel]:
    """The channels of ``table`` that have a point: the one ``meter`` names, else the
    role's."""
    out = {}
    for name, (role, units) in table.items():
        found = channel(site, name, getattr(meter, name), role, units)
        if found is not None:
            out[name] = found
    return out


def heat_channels(site: SiteConfig, contract: HeatPurchase) -> dict[str, Channel]:
    return _named_channels(site, contract.meter, HEAT_CHANNELS)


def cooling_channels(site: SiteConfig, contract: CoolingGuarantee) -> dict[str, Channel]:
    out = _named_channels(site, contract.meter, COOLING_CHANNELS)
    for name, role in COOLING_ROLES.items():
        refs = tuple(r for r in site.role_points(role) if _point(site, r) is not None)
        if refs:
            out[name] = Channel(name, refs, 1.0)
    return out


def contract_problems(site: SiteConfig) -> Iterator[tuple[Loc, str]]:
    """Contract points that do not exist or carry a unit the meter cannot convert."""
    contracts = site.contracts
    if contracts is None:
        return
    if site.meter is None:
        yield ("contracts",), "contracts need a meter: section (its database keeps the records)"
    sections: list[tuple[Loc, object, dict[str, tuple[str | None, dict[str, float]]]]] = [
        (("contracts", "heat_purchase", i, "meter"), c.meter, dict(HEAT_CHANNELS))
        for i, c in enumerate(contracts.heat_purchase)]
    if contracts.cooling_guarantee is not None:
        sections.append((("contracts", "cooling_guarantee", "meter"),
                         contracts.cooling_guarantee.meter, dict(COOLING_CHANNELS)))
    for where, meter, channels in sections:
        for name, (role, units) in channels.items():
            ref = getattr(meter, name)
            refs = [ref] if ref is not None else (site.role_points(role) if role else [])[:1]
            for r in refs:
                point = _point(site, r)
                at = (*where, name) if ref is not None else ("roles", role or name)
                if point is None:
                    yield at, f"{r!r} is not a point of this site"
                elif _unit_factor(point, units) is None:
                    yield at, (f"{r!r} has unit {point.unit!r}; the meter reads "
                               f"{', '.join(units)} here")
