"""What a report says, computed from stored records only, so every total is the sum of
the records it names and anyone holding the records can recompute it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from heatd.billing.indicators import (
    DISPLACED_HEAT_KG_PER_KWH,
    ERF_BOUNDARY,
    GridFactor,
    co2_avoided_kg,
    describe_displaced,
    erf,
    seasonal_cop,
)

HEAT = "heat_purchase"
COOLING = "cooling_guarantee"


def _sum(records: Iterable[Mapping[str, Any]], key: str) -> float:
    return sum(r.get(key) or 0.0 for r in records)


@dataclass
class ContractTotals:
    """One heat-purchase contract over the period."""

    name: str
    hours: int
    heat_kwh: float
    computed_heat_kwh: float
    below_contract_h: float
    committed_kwh: float
    unmet_kwh: float
    availability: float | None
    min_supply_c: float | None
    flagged: dict[str, int]
    daily_kwh: dict[date, float]
    supply_hourly_c: list[float]
    """Hourly mean supply temperatures, hottest first: the duration curve."""
    return_hourly_c: list[float]


@dataclass
class CoolingTotals:
    name: str
    hours: int
    rack_inlet_class: str | None
    rack_inlet_limit_c: float | None
    rack_over_class_h: float
    hours_rack_over: int
    supply_limit_c: float | None
    supply_over_limit_h: float
    hours_supply_over: int
    compliance: float | None
    """Share of the hours with cooling data in which neither limit was passed."""
    rack_max_c: float | None
    supply_max_c: float | None
    it_kwh: float
    hp_electricity_kwh: float
    fan_electricity_kwh: float
    fans_metered: bool
    flagged: dict[str, int]


@dataclass
class Month:
    month: str
    reused_kwh: float = 0.0
    total_kwh: float = 0.0
    hp_kwh: float = 0.0
    co2_kg: float = 0.0

    @property
    def erf(self) -> float | None:
        return erf(self.reused_kwh, self.total_kwh)


@dataclass
class Summary:
    start: date
    end: date
    timezone: str
    contracts: list[ContractTotals]
    cooling: CoolingTotals | None
    months: list[Month]
    factors: dict[str, str] = field(default_factory=dict)
    records: int = 0

    @property
    def reused_kwh(self) -> float:
        return sum(m.reused_kwh for m in self.months)

    @property
    def total_kwh(self) -> float:
        return sum(m.total_kwh for m in self.months)

    @property
    def erf(self) -> float | None:
        return erf(self.reused_kwh, self.total_kwh)

    @property
    def seasonal_cop(self) -> float | None:
        return seasonal_cop(self.reused_kwh, sum(m.hp_kwh for m in self.months))

    @property
    def co2_kg(self) -> float:
        return sum(m.co2_kg for m in self.months)


def _flags(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        for flag in record.get("flags", ()):
            counts[flag] += 1
    return dict(sorted(counts.items()))


def _local(ms: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone)


def contract_totals(name: str, records: list[Mapping[str, Any]], zone: ZoneInfo
                    ) -> ContractTotals:
    daily: dict[date, float] = defaultdict(float)
    for r in records:
        daily[_local(r["start"], zone).date()] += r.get("heat_kwh") or 0.0
    supplies = [r["supply_avg_c"] for r in records if r.get("supply_avg_c") is not None]
    measured = [r["availability"] for r in records if r.get("supply_avg_c") is not None]
    return ContractTotals(
        name=name, hours=len(records), heat_kwh=_sum(records, "heat_kwh"),
        computed_heat_kwh=_sum(records, "computed_heat_kwh"),
        below_contract_h=_sum(records, "below_contract_s") / 3600,
        committed_kwh=_sum(records, "committed_kwh"), unmet_kwh=_sum(records, "unmet_kwh"),
        availability=sum(measured) / len(measured) if measured else None,
        min_supply_c=records[-1].get("min_supply_c") if records else None,
        flagged=_flags(records), daily_kwh=dict(sorted(daily.items())),
        supply_hourly_c=sorted(supplies, reverse=True),
        return_hourly_c=sorted((r["return_avg_c"] for r in records
                                if r.get("return_avg_c") is not None), reverse=True))


def cooling_totals(records: list[Mapping[str, Any]]) -> CoolingTotals:
    with_data = [r for r in records if (r.get("cooling_coverage") or 0) > 0]
    breached = [r for r in with_data
                if (r.get("rack_over_class_s") or 0) > 0 or (r.get("supply_over_limit_s") or 0) > 0]
    racks = [r["rack_inlet_max_c"] for r in records if r.get("rack_inlet_max_c") is not None]
    supplies = [r["supply_max_c"] for r in records if r.get("supply_max_c") is not None]
    last = records[-1] if records else {}
    return CoolingTotals(
        name=str(last.get("contract", "cooling")), hours=len(records),
        rack_inlet_class=last.get("rack_inlet_class"),
        rack_inlet_limit_c=last.get("rack_inlet_limit_c"),
        rack_over_class_h=_sum(records, "rack_over_class_s") / 3600,
        hours_rack_over=sum(1 for r in records if (r.get("rack_over_class_s") or 0) > 0),
        supply_limit_c=last.get("supply_limit_c"),
        supply_over_limit_h=_sum(records, "supply_over_limit_s") / 3600,
        hours_supply_over=sum(1 for r in records if (r.get("supply_over_limit_s") or 0) > 0),
        compliance=1 - len(breached) / len(with_data) if with_data else None,
        rack_max_c=max(racks, default=None), supply_max_c=max(supplies, default=None),
        it_kwh=_sum(records, "it_kwh"), hp_electricity_kwh=_sum(records, "hp_electricity_kwh"),
        fan_electricity_kwh=_sum(records, "fan_electricity_kwh"),
        fans_metered=any(r.get("fan_electricity_kwh") is not None for r in records),
        flagged=_flags(records))


def summarise(records: Iterable[Mapping[str, Any]], start: date, end: date, timezone: str,
              contract: str | None = None, *, grid: GridFactor | None = None,
              displaced_kg_per_kwh: float = DISPLACED_HEAT_KG_PER_KWH) -> Summary:
    """Totals per contract, cooling compliance and the indicators per month. ERF and CO2
    are the site's: every heat contract's heat, whatever ``contract`` selects."""
    grid = grid or GridFactor()
    zone = ZoneInfo(timezone)
    heat: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    cooling: list[Mapping[str, Any]] = []
    months: dict[str, Month] = {}
    count = 0
    for r in records:
        count += 1
        key = _local(r["start"], zone).strftime("%Y-%m")
        month = months.setdefault(key, Month(key))
        if r.get("kind") == HEAT:
            heat[r["contract"]].append(r)
            delivered = r.get("heat_kwh") or 0.0
            month.reused_kwh += delivered
            month.co2_kg += co2_avoided_kg(delivered, 0.0, displaced_kg_per_kwh, 0.0)
        elif r.get("kind") == COOLING:
            cooling.append(r)
            hp = r.get("hp_electricity_kwh") or 0.0
            electricity = hp + (r.get("fan_electricity_kwh") or 0.0)
            month.total_kwh += (r.get("it_kwh") or 0.0) + electricity
            month.hp_kwh += hp
            month.co2_kg -= electricity * grid.at(r["start"] / 1000)
    chosen = [contract] if contract is not None else sorted(heat)
    return Summary(
        start, end, timezone,
        contracts=[contract_totals(name, heat.get(name, []), zone) for name in chosen],
        cooling=cooling_totals(cooling) if cooling else None,
        months=[months[k] for k in sorted(months)],
        factors={"displaced heat": describe_displaced(displaced_kg_per_kwh),
                 "grid electricity": grid.describe(), "ERF": ERF_BOUNDARY,
                 "seasonal COP": "heat delivered / heat-pump electricity"},
        records=count)
