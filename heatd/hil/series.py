"""Hourly series of a typical year from the bundled data (heatd/hil/data, see its README).

Loaded once and cached; scenarios index them by hour of year (8760 hours, wrapping).
"""

from __future__ import annotations

import csv
import math
from functools import cache
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
HOURS_PER_YEAR = 8760
WEATHER_FILES = {
    "copenhagen": "weather/copenhagen-iwec-hourly.csv",
    "chicago": "weather/chicago-ohare-tmy3-hourly.csv",
}
_BDEW_TEMPS = (-15, -10, -5, 0, 5, 10, 15, 20, 25, 30)


def _column(relpath: str, name: str) -> tuple[float, ...]:
    with (DATA_DIR / relpath).open(newline="") as fh:
        values = tuple(float(row[name]) for row in csv.DictReader(fh))
    if len(values) != HOURS_PER_YEAR:
        raise ValueError(f"{relpath}: expected {HOURS_PER_YEAR} rows, got {len(values)}")
    return values


@cache
def cpu_load() -> tuple[float, ...]:
    """Google cluster CPU utilisation 0..1, hour by hour."""
    return _column("it-load/google-cluster-cpu-hourly.csv", "cpu_load_fraction")


@cache
def outdoor_temp(weather: str) -> tuple[float, ...]:
    """Dry-bulb temperature (degC) of a typical year at `weather` (copenhagen, chicago)."""
    return _column(WEATHER_FILES[weather], "dry_bulb_c")


def _decimal(text: str) -> float:
    return float(text.replace(",", "."))


def _rows(relpath: str) -> list[list[str]]:
    with (DATA_DIR / relpath).open(newline="") as fh:
        return [row for row in csv.reader(fh, delimiter=";") if row]


@cache
def _bdew_daily_coefficients(building_type: str) -> dict[str, float]:
    rows = _rows("heat-demand/bdew-daily_demand.csv")
    header = rows[0]
    col = next(
        i for i, (b, w) in enumerate(zip(header, rows[1], strict=True))
        if b == building_type and w == "normal"
    )  # fmt: skip
    return {row[0]: _decimal(row[col]) for row in rows[2:]}


@cache
def _bdew_hourly_factors(building_type: str) -> dict[tuple[int, int, int], float]:
    """(weekday or -1, hour, band upper bound) -> share of the day's demand."""
    rows = _rows(f"heat-demand/bdew-hourly_factors_{building_type}.csv")
    header, body = rows[0], rows[1:]
    out: dict[tuple[int, int, int], float] = {}
    weekly = header[0] == "weekday"
    first = 2 if weekly else 1
    temps = [int(x) for x in header[first:]]
    for row in body:
        weekday = int(row[0]) if weekly else -1
        hour = int(row[first - 1].split(":")[0])
        for temp, cell in zip(temps, row[first:], strict=True):
            out[(weekday, hour, temp)] = _decimal(cell)
    return out


def _band(temp: float) -> int:
    """The 5 K band whose upper bound is the first at or above temp (clamped)."""
    return next((b for b in _BDEW_TEMPS if b >= temp), _BDEW_TEMPS[-1])


def bdew_daily_factor(temp: float, building_type: str = "MFH") -> float:
    """BDEW sigmoid h(T) for a geometric-weighted daily mean temperature (degC)."""
    k = _bdew_daily_coefficients(building_type)
    sigmoid = k["A"] / (1.0 + (k["B"] / (temp - 40.0)) ** k["C"]) + k["D"]
    return sigmoid + max(k["m_s"] * temp + k["b_s"], k["m_w"] * temp + k["b_w"])


@cache
def dh_demand(weather: str, annual_mwh: float, building_type: str = "MFH") -> tuple[float, ...]:
    """Hourly network heat demand (kW) whose annual sum is `annual_mwh`."""
    temps = outdoor_temp(weather)
    days = HOURS_PER_YEAR // 24
    daily_mean = [sum(temps[d * 24 : d * 24 + 24]) / 24.0 for d in range(days)]
    hourly = _bdew_hourly_factors(building_type)
    weekly = building_type == "COM"
    raw: list[float] = []
    for d in range(days):
        prev = [daily_mean[max(d - k, 0)] for k in range(4)]
        ref = (prev[0] + 0.5 * prev[1] + 0.25 * prev[2] + 0.125 * prev[3]) / 1.875
        day_total = bdew_daily_factor(ref, building_type)
        band = _band(ref)
        weekday = d % 7 if weekly else -1
        shares = [hourly[(weekday, hr, band)] for hr in range(24)]
        norm = sum(shares)
        raw.extend(day_total * s / norm for s in shares)
    total = math.fsum(raw)
    scale = annual_mwh * 1000.0 / total if total > 0 else 0.0
    return tuple(x * scale for x in raw)
