"""Hourly year series from a planner's CSV files, for ``heatd assess``: a header row, one
named column, one row per hour of a typical year (8760). A bad cell is reported with the
file, line and column."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from heatd.hil.plant_params import PlantParams
from heatd.hil.scenario import YearSeries
from heatd.hil.series import HOURS_PER_YEAR


class SeriesError(ValueError):
    """A series file that cannot be used; the message names file and line."""


def read_column(path: str | Path, names: tuple[str, ...]) -> tuple[str, tuple[float, ...]]:
    """(column found, its 8760 values): the first of ``names`` the header has."""
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
                values.append(value)
    except OSError as exc:
        raise SeriesError(f"{path}: {exc.strerror or exc}") from None
    if len(values) != HOURS_PER_YEAR:
        raise SeriesError(f"{path}: {len(values)} rows; a year has {HOURS_PER_YEAR} hours")
    return column, tuple(values)


def year_series(params: PlantParams, load: str | None, weather: str | None,
                demand: str | None) -> YearSeries:
    """The series a planner gave; IT load as kW or as a CPU fraction (scaled to the plant
    as the bundled trace is: idle + (peak - idle) x fraction)."""
    it_kw = outdoor = demand_kw = None
    if load is not None:
        column, values = read_column(load, ("it_kw", "cpu_load_fraction"))
        if column == "cpu_load_fraction":
            it = params.it
            values = tuple(it.idle_kw + (it.peak_kw - it.idle_kw) * v for v in values)
        it_kw = values
    if weather is not None:
        outdoor = read_column(weather, ("dry_bulb_c",))[1]
    if demand is not None:
        demand_kw = read_column(demand, ("demand_kw",))[1]
    return YearSeries(it_kw, outdoor, demand_kw)
