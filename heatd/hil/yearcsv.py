"""Hourly year series from a planner's CSV files, for ``heatd assess``: a header row, one
named column, one row per hour of a typical year (8760). A bad cell is reported with the
file, line and column: not a number, or outside what the quantity can be (a negative load
or demand, a CPU fraction outside 0..1, an IT load above what the plant's servers draw at
full load, which the plant would otherwise carry only up to its peak)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

from heatd.hil.plant_params import PlantParams
from heatd.hil.scenario import YearSeries
from heatd.hil.series import HOURS_PER_YEAR


class SeriesError(ValueError):
    """A series file that cannot be used; the message names file and line."""


Check = Callable[[str, float], str | None]
"""(column, value) -> why the value cannot be, or None."""


def _any(column: str, value: float) -> str | None:
    return None


def _non_negative(column: str, value: float) -> str | None:
    return f"{value:g} is below 0" if value < 0 else None


def read_column(path: str | Path, names: tuple[str, ...], check: Check = _any
                ) -> tuple[str, tuple[float, ...]]:
    """(column found, its 8760 values): the first of ``names`` the header has; a value
    ``check`` finds fault with is refused with its line."""
    try:
        with Path(path).open(newline="") as stream:
            rows = csv.DictReader(stream)
            column = next((n for n in names if n in (rows.fieldnames or ())), None)
            if column is None:
                raise SeriesError(f"{path}:1: needs a column {' or '.join(names)}")
            values = []
            for line, row in enumerate(rows, start=2):
                try:
                    value = float(row[column])
                except (TypeError, ValueError):
                    raise SeriesError(f"{path}:{line}: {column}: {row[column]!r} is not a "
                                      "number") from None
                if not math.isfinite(value):
                    raise SeriesError(f"{path}:{line}: {column}: not a finite number")
                why = check(column, value)
                if why is not None:
                    raise SeriesError(f"{path}:{line}: {column}: {why}")
                values.append(value)
    except OSError as exc:
        raise SeriesError(f"{path}: {exc.strerror or exc}") from None
    if len(values) != HOURS_PER_YEAR:
        raise SeriesError(f"{path}: {len(values)} rows; a year has {HOURS_PER_YEAR} hours")
    return column, tuple(values)


def year_series(params: PlantParams, load: str | None, weather: str | None,
                demand: str | None, plant: str | None = None) -> YearSeries:
    """The series a planner gave; IT load as kW or as a CPU fraction (scaled to the plant
    as the bundled trace is: idle + (peak - idle) x fraction). An IT load above the plant's
    ``it.peak_kw`` is refused, saying to give a plant sized for the site: the plant
    (``plant``, None for the bundled one) is sized by its own file, not by the site file."""
    it_kw = outdoor = demand_kw = None
    if load is not None:
        column, values = read_column(load, ("it_kw", "cpu_load_fraction"),
                                     _it_load(params, plant))
        if column == "cpu_load_fraction":
            it = params.it
            values = tuple(it.idle_kw + (it.peak_kw - it.idle_kw) * v for v in values)
        it_kw = values
    if weather is not None:
        outdoor = read_column(weather, ("dry_bulb_c",))[1]
    if demand is not None:
        demand_kw = read_column(demand, ("demand_kw",), _non_negative)[1]
    return YearSeries(it_kw, outdoor, demand_kw)


def _it_load(params: PlantParams, plant: str | None) -> Check:
    """kW from 0 to the plant's IT peak, or a CPU fraction from 0 to 1."""
    peak = params.it.peak_kw
    sized_by = f"it.peak_kw of {plant}" if plant else "it.peak_kw of the bundled plant"

    def check(column: str, value: float) -> str | None:
        if column == "cpu_load_fraction":
            return None if 0 <= value <= 1 else f"{value:g} is outside 0..1"
        if value > peak:
            return (f"{value:g} kW is above the {peak:g} kW the plant's servers draw at full "
                    f"load ({sized_by}): give a plant sized for this site with --plant")
        return _non_negative(column, value)

    return check
