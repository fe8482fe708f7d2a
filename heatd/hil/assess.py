"""``heatd assess``: a year of the site co-simulated with heatd's own control core, and
what it would deliver: heat (MWh), ERF, the share of IT heat reused per month, heat-pump
electricity and seasonal COP, CO2 avoided, homes heated, the hours the dry cooler
carried the load alone, and the EnEfG check. A sweep over heat-pump size and tank
volume answers "what to buy".

Each run is ``heatd.hil.cosim.simulate`` on the plant (``heatd/hil/sites/default.yaml`` or
``--plant``) with the control parameters ``hil score`` uses for the site file, judged by
``heatd.hil.kpi``. A window is cut at calendar months into runs that each start from the
plant's steady state (a restart transient of minutes in a month), so a year spreads over
``--jobs`` processes; a window inside one month is one run, the same as ``hil score`` on
that window. A steady state starts with a charged tank: heat a run draws from the tank or
the coolant loop it started with is not heat the site made, and is taken out of the heat
delivered (``stored_heat_drawn_mwh``), so the figures balance: heat delivered <= IT heat
reused + heat-pump electricity, ERF <= 1. ERF, COP and CO2 follow
``heatd.billing.indicators``; with an hourly grid series, each month's electricity is
weighted with the month's mean factor.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heatd.billing.indicators import (
    DISPLACED_HEAT_KG_PER_KWH,
    ENEFG_ERF,
    FactorError,
    GridFactor,
    co2_avoided_kg,
    describe_displaced,
    erf,
    read_grid_csv,
    seasonal_cop,
)
from heatd.cli_args import output_dir
from heatd.config_loader import ConfigError, load_site
from heatd.control.params import ControlParams
from heatd.hil.cosim import check_step, heatd_controller, plant_start, simulate
from heatd.hil.kpi import Kpis, kpi_config, stored_heat_kwh
from heatd.hil.plant_params import ParamsError, PlantParams, deep_merge, load_params
from heatd.hil.scenario import Scenario, ScenarioSpec, YearSeries
from heatd.hil.score import ScoreError, site_control
from heatd.hil.series import HOURS_PER_YEAR
from heatd.hil.yearcsv import SeriesError, year_series

MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
               "Dec")
SEED = 1
KNEE = 0.95
"""The sweep's pick: the smallest heat pump, then tank, within this share of the most CO2
any size avoided. CO2 avoided weighs the heat delivered against the electricity it took:
a heat pump too large for the source delivers more heat at a worse COP."""


@dataclass(frozen=True, slots=True)
class Size:
    """One plant of a sweep (None: as the plant file has it)."""

    hp_kw: float | None = None
    storage_m3: float | None = None

    def label(self) -> str:
        parts = [f"hp {self.hp_kw:g} kW" if self.hp_kw is not None else "",
                 f"tank {self.storage_m3:g} m3" if self.storage_m3 is not None else ""]
        return ", ".join(p for p in parts if p) or "as built"


@dataclass(frozen=True, slots=True)
class Job:
    """One co-simulated run: everything a worker process needs."""

    size: Size
    month: str
    params: PlantParams
    control: ControlParams
    year: YearSeries
    start_hour: int
    hours: float
    run_start_s: float
    run_s: float
    dt: float


@dataclass
class Part:
    """The figures of one run of a size."""

    month: str
    hours: float
    kpis: Kpis
    grid_kg_per_kwh: float
    drawn_mwh: float = 0.0
    """Heat the run drew from the tank and loop it started with."""

    @property
    def delivered_mwh(self) -> float:
        """Heat delivered that the run made: without what it drew from the stores."""
        return self.kpis.heat_delivered_mwh - self.drawn_mwh


@dataclass
class Result:
    size: Size
    parts: list[Part] = field(default_factory=list)

    def total(self, key: str) -> float:
        return sum(getattr(p.kpis, key) for p in self.parts)

    def figures(self, displaced: float, kwh_per_home: float) -> dict[str, Any]:
        delivered = sum(p.delivered_mwh for p in self.parts)
        hp_el, fan_el = self.total("hp_electricity_mwh"), self.total("fan_electricity_mwh")
        it = self.total("it_energy_mwh")
        co2 = sum(co2_avoided_kg(p.delivered_mwh * 1000,
                                 (p.kpis.hp_electricity_mwh + p.kpis.fan_electricity_mwh)
                                 * 1000, displaced, p.grid_kg_per_kwh) for p in self.parts)
        value = erf(delivered, it + hp_el + fan_el)
        return {
            "size": self.size.label(), "hp_kw": self.size.hp_kw,
            "storage_m3": self.size.storage_m3,
            "hours": sum(p.hours for p in self.parts),
            "heat_delivered_mwh": delivered, "it_energy_mwh": it,
            "stored_heat_drawn_mwh": sum(p.drawn_mwh for p in self.parts),
            "it_heat_reused_mwh": self.total("it_heat_reused_mwh"),
            "condenser_heat_mwh": self.total("condenser_heat_mwh"),
            "hp_electricity_mwh": hp_el, "fan_electricity_mwh": fan_el,
            "erf": value,
            "seasonal_cop": seasonal_cop(self.total("condenser_heat_mwh"), hp_el),
            "co2_avoided_t": co2 / 1000,
            "homes_equivalent": delivered * 1000 / kwh_per_home,
            "drycooler_alone_h": self.total("hp_off_h"),
            "it_heat_to_drycooler_mwh": max(it - self.total("it_heat_reused_mwh"), 0.0),
            "supply_over_limit_s": self.total("supply_over_limit_s"),
            "unmet_demand_mwh": self.total("unmet_demand_mwh"),
            "enefg": {f"{share:.0%} from {since}": None if value is None else value >= share
                      for since, share in ENEFG_ERF},
            "months": [_month(p) for p in self.parts],
        }


def _month(p: Part) -> dict[str, Any]:
    k = p.kpis
    datacentre = k.it_energy_mwh + k.hp_electricity_mwh + k.fan_electricity_mwh
    return {"month": p.month, "heat_delivered_mwh": p.delivered_mwh,
            "stored_heat_drawn_mwh": p.drawn_mwh, "it_energy_mwh": k.it_energy_mwh,
            "it_share_reused": (k.it_heat_reused_mwh / k.it_energy_mwh
                                if k.it_energy_mwh > 0 else None),
            "erf": erf(p.delivered_mwh, datacentre), "datacentre_mwh": datacentre}


def months_of(start_hour: int, hours: float) -> list[tuple[str, float, float]]:
    """(label, start s, length s) of a window cut at the typical year's months."""
    bounds, at = [], 0
    for days in MONTH_DAYS:
        bounds.append(at)
        at += days * 24
    out, t = [], 0.0
    while t < hours - 1e-9:
        hour = (start_hour + t) % HOURS_PER_YEAR
        index = max(i for i, b in enumerate(bounds) if b <= hour)
        end_of_month = bounds[index] + MONTH_DAYS[index] * 24
        length = min(end_of_month - hour, hours - t)
        out.append((MONTH_NAMES[index], t * 3600.0, length * 3600.0))
        t += length
    return out


def parse_sweep(text: str) -> list[Size]:
    """``hp_kw=100,200,storage_m3=10,20`` -> every combination."""
    axes: dict[str, list[float]] = {}
    key = None
    for token in text.split(","):
        name, sep, value = token.partition("=")
        if sep:
            key = name.strip()
            if key not in ("hp_kw", "storage_m3"):
                raise ValueError(f"--sweep: {key!r} is not hp_kw or storage_m3")
            axes[key] = []
        else:
            value = name
        if key is None:
            raise ValueError(f"--sweep: {text!r} must start with hp_kw= or storage_m3=")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--sweep: {value!r} is not a number") from None
        if not 0 < number < float("inf"):
            raise ValueError(f"--sweep: {key} {value} must be above 0")
        axes[key].append(number)
    return [Size(hp, tank) for hp in axes.get("hp_kw", [None])
            for tank in axes.get("storage_m3", [None])]


def sized(params: PlantParams, control: ControlParams, size: Size
          ) -> tuple[PlantParams, ControlParams]:
    """The plant and control of one size: the controller knows the heat pump it has."""
    plant: dict[str, Any] = {}
    if size.hp_kw is not None:
        plant["heat_pump"] = {"heat_nominal_kw": size.hp_kw}
    if size.storage_m3 is not None:
        plant["storage"] = {"enabled": True, "volume_m3": size.storage_m3}
    new = PlantParams.model_validate(deep_merge(params.model_dump(), plant))
    optimiser = {"optimiser": {"hp_nominal_heat_kw": new.heat_pump.heat_nominal_kw}}
    return new, ControlParams.model_validate(deep_merge(control.model_dump(), optimiser))


_LAST: list[tuple[object, Scenario]] = []
"""The scenario of the last run in this process: runs of one size come in a row."""


def run_job(job: Job) -> tuple[Job, Kpis, float]:
    """One run, and the heat (MWh) it drew from the tank and the loop it started with;
    its scenario (a second to build for a year) is kept for the next."""
    key = (job.params.model_dump_json(), job.start_hour, job.hours, job.year)
    if _LAST and _LAST[0][0] == key:
        scenario = _LAST[0][1]
    else:
        spec = ScenarioSpec(name="assess", weather="copenhagen", start_hour=job.start_hour,
                            duration_h=job.hours, seed=SEED)
        scenario = Scenario(spec, job.params, SEED, job.year)
        _LAST[:] = [(key, scenario)]
    run = simulate(scenario, heatd_controller(job.control), dt=job.dt,
                   start_s=job.run_start_s, duration_s=job.run_s,
                   kpi=kpi_config(job.params))
    before = stored_heat_kwh(plant_start(scenario, job.run_start_s), job.params)
    after = stored_heat_kwh(run.final, job.params)
    drawn = sum(max(b - a, 0.0) for b, a in zip(before, after, strict=True))
    return job, run.kpis, drawn / 1000.0


class Progress:
    """One line on stderr: runs done of all, and the time so far."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled
        self.started = time.monotonic()

    def step(self) -> None:
        self.done += 1
        if not self.enabled:
            return
        width = 30
        filled = round(width * self.done / self.total)
        sys.stderr.write(f"\rassess [{'#' * filled}{'.' * (width - filled)}] "
                         f"{self.done}/{self.total} runs, {time.monotonic() - self.started:.0f} s")
        if self.done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def run_all(jobs: Sequence[Job], processes: int, on_done: Callable[[], None]
            ) -> list[tuple[Job, Kpis, float]]:
    if processes <= 1 or len(jobs) == 1:
        out = []
        for job in jobs:
            out.append(run_job(job))
            on_done()
        return out
    with ProcessPoolExecutor(max_workers=processes) as pool:
        futures = [pool.submit(run_job, job) for job in jobs]
        for future in futures:
            future.add_done_callback(lambda _f: on_done())
        return [f.result() for f in futures]


def _grid_for(grid: GridFactor, start_hour: int, start_s: float, length_s: float) -> float:
    if grid.hourly is None:
        return grid.constant
    first = int(start_hour + start_s / 3600)
    hours = [grid.hourly[(first + h) % len(grid.hourly)] for h in range(int(length_s // 3600)
                                                                          or 1)]
    return sum(hours) / len(hours)


def assess(site: str, args: argparse.Namespace, grid: GridFactor) -> list[Result]:
    load_site(site)  # the file must be valid before anything runs
    params = load_params(args.plant)
    check_step(args.dt, params)  # a sweep sizes the heat pump and tank, never the PLC
    control = site_control(params, site)
    year = year_series(params, args.load, args.weather, args.demand, args.plant)
    hours = args.hours if args.hours is not None else float(HOURS_PER_YEAR)
    sizes = parse_sweep(args.sweep) if args.sweep else [Size()]
    jobs = []
    for size in sizes:
        plant, tuned = sized(params, control, size)
        for month, start_s, length_s in months_of(args.start_hour, hours):
            jobs.append(Job(size, month, plant, tuned, year, args.start_hour, hours, start_s,
                            length_s, args.dt))
    progress = Progress(len(jobs), not args.no_progress)
    results = {size: Result(size) for size in sizes}
    for job, kpis, drawn in run_all(jobs, args.jobs, progress.step):
        results[job.size].parts.append(Part(job.month, job.run_s / 3600, kpis,
                                            _grid_for(grid, args.start_hour, job.run_start_s,
                                                      job.run_s), drawn))
    return [results[size] for size in sizes]


def best(figures: list[dict[str, Any]]) -> dict[str, Any]:
    most = max(f["co2_avoided_t"] for f in figures)
    near = [f for f in figures if f["co2_avoided_t"] >= most - (1 - KNEE) * abs(most)]
    return min(near, key=lambda f: (f["hp_kw"] or 0.0, f["storage_m3"] or 0.0))


def _text(f: dict[str, Any], factors: dict[str, str]) -> str:
    def opt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    lines = [
        f"assessment: {f['size']}, {f['hours']:g} h",
        f"  heat delivered          {f['heat_delivered_mwh']:10.1f} MWh",
        f"  (stored heat drawn      {f['stored_heat_drawn_mwh']:10.1f} MWh: in the tank and loop "
        "at the start, not counted)",
        f"  IT energy               {f['it_energy_mwh']:10.1f} MWh",
        f"  IT heat reused          {f['it_heat_reused_mwh']:10.1f} MWh",
        f"  ERF                     {opt(f['erf'], '10.3f')}",
        f"  heat-pump electricity   {f['hp_electricity_mwh']:10.1f} MWh",
        f"  seasonal COP            {opt(f['seasonal_cop'], '10.2f')}",
        f"  CO2 avoided             {f['co2_avoided_t']:10.1f} t",
        f"  homes equivalent        {f['homes_equivalent']:10.0f}",
        f"  dry cooler alone        {f['drycooler_alone_h']:10.0f} h (heat pump off)",
        f"  IT heat to dry cooler   {f['it_heat_to_drycooler_mwh']:10.1f} MWh",
        f"  supply over limit       {f['supply_over_limit_s']:10.0f} s",
        "  EnEfG minimum ERF: " + ", ".join(
            f"{k} {'met' if ok else 'not met'}" for k, ok in f["enefg"].items()),
        "  month   heat MWh   IT share reused   ERF",
    ]
    for m in f["months"]:
        lines.append(f"  {m['month']:<6}{m['heat_delivered_mwh']:10.1f}"
                     f"{opt(m['it_share_reused'], '18.3f')}{opt(m['erf'], '8.3f')}")
    lines.append("  factors: " + "; ".join(f"{k}: {v}" for k, v in factors.items()))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    try:
        grid = (read_grid_csv(args.grid_co2_csv) if args.grid_co2_csv
                else GridFactor(args.grid_co2 if args.grid_co2 is not None
                                else GridFactor().constant))
        if args.jobs < 1:
            raise ValueError("--jobs must be above 0")
        if args.hours is not None and not 0 < args.hours <= HOURS_PER_YEAR:
            raise ValueError(f"--hours must be in (0, {HOURS_PER_YEAR}]")
        if not 0 <= args.start_hour < HOURS_PER_YEAR:
            raise ValueError(f"--start-hour must be in [0, {HOURS_PER_YEAR})")
        out = output_dir(args.out, "assess")  # before the year runs, not after
        if out is None:
            return 2
        started = time.monotonic()
        results = assess(args.site, args, grid)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (ValueError, FactorError, SeriesError, ParamsError, ScoreError) as exc:
        print(f"heatd assess: {exc}", file=sys.stderr)
        return 2
    displaced = args.displaced_co2 if args.displaced_co2 is not None \
        else DISPLACED_HEAT_KG_PER_KWH
    factors = {"displaced heat": describe_displaced(displaced),
               "grid": grid.describe() + (" (monthly means)" if grid.hourly else ""),
               "home": f"{args.kwh_per_home:g} kWh/year",
               "ERF": "heat delivered / (IT + heat-pump + fan electricity), ISO/IEC 30134-6"}
    figures = [r.figures(displaced, args.kwh_per_home) for r in results]
    wall = time.monotonic() - started
    document = {"site": args.site, "wall_s": wall, "factors": factors, "results": figures}
    if len(figures) > 1:
        document["best"] = best(figures)
        document["best_rule"] = (f"smallest heat pump, then tank, avoiding at least "
                                 f"{KNEE:.0%} of the most CO2 of the sweep")
    (out / "assess.json").write_text(json.dumps(document, indent=2))
    plotted = _plots(figures, document.get("best"), out)
    if args.json:
        print(json.dumps(document))
        return 0
    if len(figures) == 1:
        print(_text(figures[0], factors))
    else:
        print(f"{'size':<28}{'heat MWh':>10}{'ERF':>8}{'COP':>7}{'CO2 t':>9}")
        for f in figures:
            print(f"{f['size']:<28}{f['heat_delivered_mwh']:10.1f}{f['erf'] or 0:8.3f}"
                  f"{f['seasonal_cop'] or 0:7.2f}{f['co2_avoided_t']:9.1f}")
        print(f"what to buy: {document['best']['size']} ({document['best_rule']})")
        print("  factors: " + "; ".join(f"{k}: {v}" for k, v in factors.items()))
    print(f"wall time {wall:.0f} s; {out / 'assess.json'}"
          + (f", {', '.join(str(p) for p in plotted)}" if plotted else ""))
    return 0


def _plots(figures: list[dict[str, Any]], chosen: dict[str, Any] | None, out: Path
           ) -> list[Path]:
    if importlib.util.find_spec("matplotlib") is None:
        print("heatd assess: plots need matplotlib (pip install 'heatd[plot]'); writing "
              "the tables only", file=sys.stderr)
        return []
    from heatd.hil.assess_plot import plot_months, plot_sweep

    if chosen is not None:
        return [plot_sweep(figures, chosen, out / "sweep.png")]
    return [plot_months(figures[0], out / "months.png")]
