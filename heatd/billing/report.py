"""``heatd report``: what the stored records say about a period, as Markdown with
figures, CSV tables or a PDF.

Every figure is computed from the records alone (``heatd.billing.summary``): totals are
the sums of the records listed, and the factors behind ERF, COP and CO2 are named in the
output. Without matplotlib (the ``plot`` extra) the tables are still written and one line
says the figures are missing.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import sys
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from heatd.billing.contracts import HeatPrices
from heatd.billing.indicators import (
    DISPLACED_HEAT_KG_PER_KWH,
    ENEFG_ERF,
    FactorError,
    GridFactor,
    read_grid_csv,
)
from heatd.billing.ledger import contracts_recorded, stored_records
from heatd.billing.summary import COOLING, HEAT, Summary, summarise
from heatd.cli_args import output_dir

if TYPE_CHECKING:
    from heatd.config import SiteConfig

NO_PLOTS = ("heatd report: figures need matplotlib (pip install 'heatd[plot]'); "
            "writing the tables only")


def _fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _counts(flags: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in flags.items()) or "none"


def grid_factor(args: argparse.Namespace) -> GridFactor:
    if args.grid_co2_csv:
        return read_grid_csv(args.grid_co2_csv)
    return GridFactor() if args.grid_co2 is None else GridFactor(args.grid_co2)


def markdown(summary: Summary, figures: dict[str, str],
             prices: Mapping[str, HeatPrices] | None = None) -> str:
    s = summary
    out = [f"# Heat report {s.start} to {s.end}", "",
           f"{s.records} hourly records, days in {s.timezone}. Totals are the sums of the "
           "records of the period.", ""]
    for c in s.contracts:
        out += [f"## Contract {c.name}", "",
                "| figure | value |", "|---|---|",
                f"| hours recorded | {c.hours} |",
                f"| heat delivered | {c.heat_kwh / 1000:.3f} MWh |",
                f"| heat from integrated power (check) | {c.computed_heat_kwh / 1000:.3f} MWh |",
                f"| hours below {_fmt(c.min_supply_c, 'g')} degC | {c.below_contract_h:.2f} h |",
                f"| committed energy | {c.committed_kwh / 1000:.3f} MWh |",
                f"| committed energy not delivered | {c.unmet_kwh / 1000:.3f} MWh |",
                f"| availability (supply at or above contract) | "
                f"{_fmt(None if c.availability is None else 100 * c.availability)} % |",
                f"| flagged hours | {_counts(c.flagged)} |"]
        price = (prices or {}).get(c.name)
        if price is not None:
            out += [f"| heat at {price.heat_per_mwh:g} {price.currency}/MWh | "
                    f"{c.heat_kwh / 1000 * price.heat_per_mwh:.2f} {price.currency} |",
                    f"| shortfall at {price.shortfall_per_mwh:g} {price.currency}/MWh | "
                    f"{c.unmet_kwh / 1000 * price.shortfall_per_mwh:.2f} {price.currency} |"]
        out.append("")
        for key in (f"daily-{c.name}", f"duration-{c.name}"):
            if key in figures:
                out += [f"![{key}]({figures[key]})", ""]
    if s.cooling is not None:
        k = s.cooling
        out += [f"## Cooling guarantee {k.name}", "", "| figure | value |", "|---|---|",
                f"| hours recorded | {k.hours} |",
                f"| compliance (hours within both limits) | "
                f"{_fmt(None if k.compliance is None else 100 * k.compliance, '.2f')} % |",
                f"| rack inlet over class {k.rack_inlet_class} ({_fmt(k.rack_inlet_limit_c, 'g')}"
                f" degC) | {k.rack_over_class_h:.3f} h in {k.hours_rack_over} hours |",
                f"| coolant supply over {_fmt(k.supply_limit_c, 'g')} degC | "
                f"{k.supply_over_limit_h:.3f} h in {k.hours_supply_over} hours |",
                f"| hottest rack inlet / supply | {_fmt(k.rack_max_c)} / "
                f"{_fmt(k.supply_max_c)} degC |",
                f"| IT energy | {k.it_kwh / 1000:.3f} MWh |",
                f"| heat-pump electricity | {k.hp_electricity_kwh / 1000:.3f} MWh |",
                f"| fan electricity | {k.fan_electricity_kwh / 1000:.3f} MWh"
                f"{'' if k.fans_metered else ' (fans not metered: outside the boundary)'} |",
                ""]
    out += ["## Indicators", "", "| month | reused MWh | data-centre MWh | ERF | CO2 avoided t |",
            "|---|---|---|---|---|"]
    out += [f"| {m.month} | {m.reused_kwh / 1000:.3f} | {m.total_kwh / 1000:.3f} | "
            f"{_fmt(None if m.erf is None else 100 * m.erf)} % | {m.co2_kg / 1000:.3f} |"
            for m in s.months]
    out += [f"| **period** | {s.reused_kwh / 1000:.3f} | {s.total_kwh / 1000:.3f} | "
            f"{_fmt(None if s.erf is None else 100 * s.erf)} % | {s.co2_kg / 1000:.3f} |", "",
            f"Seasonal COP: {_fmt(s.seasonal_cop, '.2f')}. EnEfG minimum ERF for data centres "
            "starting operation: " + ", ".join(f"{share:.0%} from {since}"
                                              for since, share in ENEFG_ERF) + ".", ""]
    if "erf" in figures:
        out += [f"![erf]({figures['erf']})", ""]
    out += ["### Factors", ""] + [f"- {name}: {text}" for name, text in s.factors.items()]
    return "\n".join(out) + "\n"


def write_csv(summary: Summary, records: list[dict[str, Any]], out: Path) -> list[Path]:
    written = []
    for kind, name in ((HEAT, "records-heat.csv"), (COOLING, "records-cooling.csv")):
        rows = [r for r in records if r.get("kind") == kind]
        if not rows:
            continue
        keys = list(dict.fromkeys(k for r in rows for k in r))
        path = out / name
        with path.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, keys)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: ";".join(v) if isinstance(v, list) else v
                                 for k, v in r.items()})
        written.append(path)
    path = out / "totals.csv"
    with path.open("w", newline="") as stream:
        table = csv.writer(stream)
        table.writerow(["contract", "hours", "heat_kwh", "below_contract_h",
                        "committed_kwh", "unmet_kwh"])
        for c in summary.contracts:
            table.writerow([c.name, c.hours, round(c.heat_kwh, 6),
                            round(c.below_contract_h, 4), round(c.committed_kwh, 6),
                            round(c.unmet_kwh, 6)])
    path_m = out / "months.csv"
    with path_m.open("w", newline="") as stream:
        table = csv.writer(stream)
        table.writerow(["month", "reused_kwh", "datacentre_kwh", "erf", "co2_avoided_kg"])
        for m in summary.months:
            table.writerow([m.month, round(m.reused_kwh, 6), round(m.total_kwh, 6),
                            None if m.erf is None else round(m.erf, 5), round(m.co2_kg, 3)])
    return [*written, path, path_m]


def _figures(summary: Summary, out: Path) -> dict[str, Any] | None:
    """name -> Figure, each also saved as PNG in ``out``; None without matplotlib."""
    if importlib.util.find_spec("matplotlib") is None:
        return None
    from heatd.billing import plots

    figures: dict[str, Any] = {}
    for c in summary.contracts:
        if c.daily_kwh:
            figures[f"daily-{c.name}"] = plots.daily_energy(c, out / f"daily-{c.name}.png")
        if c.supply_hourly_c:
            figures[f"duration-{c.name}"] = plots.duration_curve(
                c, out / f"duration-{c.name}.png")
    if summary.months:
        figures["erf"] = plots.erf_by_month(summary.months, out / "erf.png")
    return figures


def _pdf(text: str, figures: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    with PdfPages(path) as pdf:
        page = Figure(figsize=(8.27, 11.69))
        page.text(0.05, 0.97, text, va="top", family="monospace", fontsize=6.5)
        pdf.savefig(page)
        for figure in figures.values():
            pdf.savefig(figure)


def main(args: argparse.Namespace, path: str, site: SiteConfig | None = None) -> int:
    """With the site file, days are in its timezone and the contracts' prices are used."""
    if args.end < args.start:
        print("heatd report: --to is before --from", file=sys.stderr)
        return 2
    zone_name = args.timezone or (site.site.timezone if site else None) or "UTC"
    try:
        zone = ZoneInfo(zone_name)
        grid = grid_factor(args)
    except (ZoneInfoNotFoundError, FactorError) as exc:
        print(f"heatd report: {exc}", file=sys.stderr)
        return 2
    first = datetime.combine(args.start, time(), zone)
    last = datetime.combine(args.end + timedelta(days=1), time(), zone)
    try:
        known = contracts_recorded(path, HEAT)
        records = stored_records(path, int(first.timestamp() * 1000),
                                 int(last.timestamp() * 1000))
    except Exception as exc:  # sqlite3.Error, a file that is no ledger
        print(f"heatd report: {path}: {exc}", file=sys.stderr)
        return 1
    if site is not None and site.contracts is not None:
        known |= {c.name for c in site.contracts.heat_purchase}
    if args.contract is not None and args.contract not in known:
        print(f"heatd report: --contract {args.contract!r}: no such contract (known: "
              f"{', '.join(sorted(known)) or 'none'})", file=sys.stderr)
        return 2
    summary = summarise(records, args.start, args.end, zone_name, args.contract, grid=grid,
                        displaced_kg_per_kwh=DISPLACED_HEAT_KG_PER_KWH
                        if args.displaced_co2 is None else args.displaced_co2)
    if args.contract is not None:  # the indicators above are the site's; the rows its own
        records = [r for r in records if r.get("kind") != HEAT or r["contract"] == args.contract]
    out = output_dir(args.out, "report")
    if out is None:
        return 2
    figures = _figures(summary, out)
    if figures is None:
        print(NO_PLOTS, file=sys.stderr)
    if args.format == "csv":
        for written in write_csv(summary, records, out):
            print(written)
        return 0
    prices = ({c.name: c.prices for c in site.contracts.heat_purchase}
              if site is not None and site.contracts is not None else None)
    text = markdown(summary, {k: f"{k}.png" for k in figures or {}}, prices)
    md = out / "report.md"
    md.write_text(text)
    if args.format == "pdf" and figures is not None:
        _pdf(text, figures, out / "report.pdf")
        print(out / "report.pdf")
    print(md)
    return 0
