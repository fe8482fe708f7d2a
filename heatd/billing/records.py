"""A closed hour as the record a contract is billed from (before its sequence number and
hash, which the ledger adds).

Heat purchase: the heat delivered (from the heat meter's counter where there is one,
else integrated power, with its coverage), the integrated power beside the counter
(``computed_heat_kwh``), average supply and return temperatures, the time the supply was
below the contracted temperature, availability (the share of the hour the supply was
measured at or above it), the committed energy and what of it was not delivered.
Cooling guarantee: the hottest rack inlet and coolant supply, the time over the class
limit and the supply limit, and the data centre's own energy (IT, heat pump, fans).

Flags: ``missing`` (energy not covered for the whole hour), ``estimated`` (a share
interpolated across a gap or from power), ``downtime`` (heatd was not running for part of
the hour), ``late`` (energy of an hour closed earlier), ``counter_reset``,
``meter_disagreement`` (counter and integrated power differ beyond the tolerance).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from heatd.billing.contracts import CoolingGuarantee, HeatPurchase
from heatd.billing.hourly import Hour, Integral

FULL = 0.999
"""Coverage at or above which an hour counts as complete."""
DISAGREE_FLOOR_KWH = 0.5


def _r(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _mean(stats: Integral | None) -> float | None:
    if stats is None or stats.covered_s <= 0:
        return None
    return _r(stats.total / stats.covered_s, 3)


def _peak(stats: Integral | None) -> float | None:
    return None if stats is None or stats.peak == float("-inf") else _r(stats.peak, 3)


def _energy(hour: Hour, counter: str | None, power: str | None,
            flags: set[str]) -> tuple[float | None, str, float]:
    """(kWh, source, coverage): the counter where the contract has one, else power."""
    if counter is not None:
        part = hour.counters.get(counter)
        if part is not None and part.reset:
            flags.add("counter_reset")
        if part is None or (part.covered_s <= 0 and part.kwh == 0.0):
            flags.add("missing")
            return None, "none", 0.0
        coverage = min(1.0, part.covered_s / hour.length)
        if coverage < FULL:
            flags.add("missing")
        if part.estimated_s > 0:
            flags.add("estimated")
        if part.late_kwh:
            flags.add("late")
        return _r(part.kwh), "counter", round(coverage, 4)
    stats = hour.powers.get(power) if power is not None else None
    if stats is None or stats.covered_s <= 0:
        flags.add("missing")
        return None, "none", 0.0
    coverage = min(1.0, stats.covered_s / hour.length)
    if coverage < FULL:
        flags.update(("missing", "estimated"))
    return _r(stats.total), "power", round(coverage, 4)


def _power(hour: Hour, name: str) -> tuple[float | None, float]:
    stats = hour.powers.get(name)
    if stats is None or stats.covered_s <= 0:
        return None, 0.0
    return _r(stats.total), round(min(1.0, stats.covered_s / hour.length), 4)


def _head(site: str, name: str, kind: str, hour: Hour, flags: set[str]) -> dict[str, Any]:
    if hour.downtime_s > 0:
        flags.add("downtime")
    return {"site": site, "contract": name, "kind": kind, "start": int(hour.start * 1000),
            "end": int(hour.end * 1000), "downtime_s": round(hour.downtime_s, 3)}


def heat_record(site: str, contract: HeatPurchase, hour: Hour, timezone: str,
                has_counter: bool) -> dict[str, Any]:
    flags: set[str] = set()
    record = _head(site, contract.name, "heat_purchase", hour, flags)
    kwh, source, coverage = _energy(hour, "energy" if has_counter else None, "power", flags)
    computed, computed_coverage = _power(hour, "power")
    if (source == "counter" and kwh is not None and computed is not None
            and coverage >= FULL and computed_coverage >= FULL and "estimated" not in flags):
        gap = abs(kwh - computed)
        if gap > DISAGREE_FLOOR_KWH and gap > contract.tolerance * max(kwh, computed):
            flags.add("meter_disagreement")
    supply = hour.levels.get("supply_temp")
    local = datetime.fromtimestamp(hour.start, UTC).astimezone(ZoneInfo(timezone))
    committed = contract.committed_kw(local.month, local.hour)  # one hour: kW = kWh
    unmet = max(committed - (kwh or 0.0), 0.0)
    record.update({
        "heat_kwh": kwh, "heat_source": source, "heat_coverage": coverage,
        "computed_heat_kwh": computed, "computed_coverage": computed_coverage,
        "late_kwh": _r(hour.counters["energy"].late_kwh) if "energy" in hour.counters else 0.0,
        "supply_avg_c": _mean(supply), "return_avg_c": _mean(hour.levels.get("return_temp")),
        "min_supply_c": contract.min_supply_temp_c,
        "below_contract_s": round(supply.below_s, 3) if supply else 0.0,
        "availability": round(min(1.0, (supply.covered_s - supply.below_s) / hour.length), 4)
        if supply else 0.0,
        "committed_kwh": _r(committed), "unmet_kwh": _r(unmet),
    })
    record["counter_end"], record["counter_end_at"] = _counter_end(hour, "energy")
    record["flags"] = sorted(flags)
    return record


def cooling_record(site: str, contract: CoolingGuarantee, hour: Hour,
                   has_counter: bool) -> dict[str, Any]:
    flags: set[str] = set()
    record = _head(site, contract.name, "cooling_guarantee", hour, flags)
    it, it_source, it_coverage = _energy(hour, "it_energy" if has_counter else None,
                                         "it_power", flags)
    hp, hp_coverage = _power(hour, "hp_power")
    fan, fan_coverage = _power(hour, "fan_power")
    rack, supply = hour.levels.get("rack_inlet"), hour.levels.get("supply_temp")
    record.update({
        "it_kwh": it, "it_source": it_source, "it_coverage": it_coverage,
        "hp_electricity_kwh": hp, "hp_coverage": hp_coverage,
        "fan_electricity_kwh": fan, "fan_coverage": fan_coverage,
        "rack_inlet_class": contract.rack_inlet_class,
        "rack_inlet_limit_c": contract.rack_inlet_limit_c,
        "rack_inlet_max_c": _peak(rack),
        "rack_over_class_s": round(rack.above_s, 3) if rack else 0.0,
        "supply_limit_c": contract.supply_limit_c,
        "supply_max_c": _peak(supply),
        "supply_over_limit_s": round(supply.above_s, 3) if supply else 0.0,
        "cooling_coverage": _coverage(hour, [rack, supply]),
    })
    record["counter_end"], record["counter_end_at"] = _counter_end(hour, "it_energy")
    record["flags"] = sorted(flags)
    return record


def _coverage(hour: Hour, levels: list[Integral | None]) -> float:
    """Share of the hour every measured level was known (0 when none is measured)."""
    known = [level.covered_s for level in levels if level is not None]
    return round(min(1.0, min(known) / hour.length), 4) if known else 0.0


def _counter_end(hour: Hour, name: str) -> tuple[float | None, int | None]:
    """(value, epoch ms) of the counter reading the hour's counter energy ends at: at the
    hour's end, or the last reading before it when the counter fell silent; a restart
    goes on from there (``Ledger.resume``), so that energy is not counted twice."""
    part = hour.counters.get(name)
    if part is None:
        return None, None
    if part.end_value is not None:
        return _r(part.end_value), round(hour.end * 1000)
    if part.last is not None:
        return _r(part.last[1]), round(part.last[0] * 1000)
    return None, None
