"""The indicators, by their definitions, in one place: the report computes them from the
stored records and the simulator's KPIs (``heatd.hil.kpi``) from the plant, with the same code.

- ERF, ISO/IEC 30134-6: energy reused / total data-centre energy. Boundary
  (:data:`ERF_BOUNDARY`): reused = heat delivered to the customers' meters; total = IT
  + heat-pump + dry-cooler fan electricity (the heat pump is inside the boundary).
- Seasonal COP: heat over the heat pump's electricity across the period.
- CO2 avoided = delivered heat x the displaced heat's factor - (heat-pump + fan
  electricity) x the grid's factor; the grid factor may be an hourly series.
- EnEfG (Germany, Energieeffizienzgesetz, section 11): data centres that start operating
  from 1 July 2026 reuse at least 10 % of their energy, from 1 July 2027 15 %, from
  1 July 2028 20 %.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

GAS_FUEL_KG_PER_KWH = 0.202
"""CO2 of burning a kWh of natural gas, on its net calorific value: the IPCC 2006
Guidelines' default for natural gas, 56.1 t CO2/TJ (volume 2, table 2.2), combustion only.
A factor per kWh of fuel, not of heat."""
GAS_BOILER_EFFICIENCY = 0.90
"""kWh of heat per kWh of gas (net calorific value) of the boiler the delivered heat
displaces, over a season."""
DISPLACED_HEAT_KG_PER_KWH = round(GAS_FUEL_KG_PER_KWH / GAS_BOILER_EFFICIENCY, 3)
"""Default CO2 of a kWh of heat the delivered heat displaces: a gas boiler's heat, 0.224."""
DISPLACED_HEAT_BASIS = (f"default: a gas boiler's heat, {GAS_FUEL_KG_PER_KWH:g} kg CO2/kWh of "
                        f"natural gas (IPCC 2006, net calorific value, combustion only) / "
                        f"{GAS_BOILER_EFFICIENCY:.0%} seasonal efficiency")
GRID_KG_PER_KWH = 0.380
"""Default CO2 of a kWh of grid electricity: Germany's electricity mix of 2023, 380 g
CO2/kWh of electricity consumed (Umweltbundesamt, preliminary figure; direct emissions),
the country whose EnEfG the ERF is checked against. Give the site's own grid
(``--grid-co2``, ``--grid-co2-csv``) anywhere else."""
GRID_BASIS = "default: German electricity mix 2023, Umweltbundesamt, direct emissions"
ERF_BOUNDARY = ("ERF (ISO/IEC 30134-6) = reused energy / total data-centre energy; "
                "reused = heat delivered at the customers' meters; total = IT + heat-pump "
                "+ dry-cooler fan electricity (heat pump inside the boundary)")
ENEFG_ERF: tuple[tuple[date, float], ...] = (
    (date(2026, 7, 1), 0.10), (date(2027, 7, 1), 0.15), (date(2028, 7, 1), 0.20))
"""EnEfG minimum ERF by the date a data centre starts operating."""
HOURS_PER_YEAR = 8760


def erf(reused_kwh: float, total_kwh: float) -> float | None:
    return reused_kwh / total_kwh if total_kwh > 0 else None


def seasonal_cop(heat_kwh: float, electricity_kwh: float) -> float | None:
    return heat_kwh / electricity_kwh if electricity_kwh > 0 else None


def co2_avoided_kg(delivered_kwh: float, electricity_kwh: float,
                   displaced_kg_per_kwh: float = DISPLACED_HEAT_KG_PER_KWH,
                   grid_kg_per_kwh: float = GRID_KG_PER_KWH) -> float:
    return delivered_kwh * displaced_kg_per_kwh - electricity_kwh * grid_kg_per_kwh


def describe_displaced(kg_per_kwh: float) -> str:
    """The displaced heat's factor as the outputs name it, with its basis if the default."""
    return f"{kg_per_kwh:g} kg CO2/kWh" + (
        f" ({DISPLACED_HEAT_BASIS})" if kg_per_kwh == DISPLACED_HEAT_KG_PER_KWH else "")


def enefg_target(start_of_operation: date) -> float | None:
    """The EnEfG minimum ERF of a data centre starting to operate on that day."""
    found = None
    for since, share in ENEFG_ERF:
        if start_of_operation >= since:
            found = share
    return found


@dataclass(frozen=True, slots=True)
class GridFactor:
    """The grid's CO2 factor: one number, or one per hour of the year."""

    constant: float = GRID_KG_PER_KWH
    hourly: Sequence[float] | None = None
    source: str = "constant"

    def at(self, epoch_s: float) -> float:
        if self.hourly is None:
            return self.constant
        moment = datetime.fromtimestamp(epoch_s, UTC)
        first = datetime(moment.year, 1, 1, tzinfo=UTC)
        hour = int((moment - first).total_seconds() // 3600) % len(self.hourly)
        return self.hourly[hour]

    def describe(self) -> str:
        if self.hourly is None:
            return f"{self.constant:g} kg CO2/kWh" + (
                f" ({GRID_BASIS})" if self.constant == GRID_KG_PER_KWH else "")
        mean = sum(self.hourly) / len(self.hourly)
        return f"hourly series {self.source} (mean {mean:.3f} kg CO2/kWh)"


class FactorError(ValueError):
    """A factor file that cannot be used; the message names file and line."""


def read_grid_csv(path: str | Path) -> GridFactor:
    """An hourly grid factor: a header with ``kg_per_kwh`` and ``hour`` (0-8759 of the
    year) or ``time`` (ISO 8601); 8760 rows (8784 in a leap year)."""
    values: dict[int, float] = {}
    try:
        with Path(path).open(newline="") as stream:
            rows = csv.DictReader(stream)
            if rows.fieldnames is None or "kg_per_kwh" not in rows.fieldnames:
                raise FactorError(f"{path}:1: needs a column kg_per_kwh")
            for line, row in enumerate(rows, start=2):
                try:
                    factor = float(row["kg_per_kwh"])
                    if "hour" in row and row["hour"] not in (None, ""):
                        hour = int(row["hour"])
                    else:
                        moment = datetime.fromisoformat(row["time"])
                        if moment.tzinfo is None:
                            moment = moment.replace(tzinfo=UTC)
                        first = datetime(moment.year, 1, 1, tzinfo=UTC)
                        hour = int((moment - first).total_seconds() // 3600)
                except (KeyError, TypeError, ValueError) as exc:
                    raise FactorError(f"{path}:{line}: {exc}") from None
                if not 0 <= factor < float("inf") or not 0 <= hour < 8784:
                    raise FactorError(f"{path}:{line}: hour {hour}, factor {factor}: "
                                      "out of range")
                values[hour] = factor
    except OSError as exc:
        raise FactorError(f"{path}: {exc.strerror or exc}") from None
    if len(values) < HOURS_PER_YEAR or sorted(values)[:HOURS_PER_YEAR] != list(
            range(HOURS_PER_YEAR)):
        raise FactorError(f"{path}: needs every hour 0..8759 of a year, has {len(values)}")
    return GridFactor(hourly=[values[h] for h in sorted(values)], source=str(path))
