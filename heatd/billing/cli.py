"""``heatd verify-records``, ``heatd report`` and ``heatd assess``: arguments only, so
``heatd --help`` stays fast; each handler imports its module when it runs (``assess``
imports the simulator, which the daemon never loads)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from typing import TYPE_CHECKING

from heatd.cli_args import kg_per_kwh, kwh_per_year, step_seconds

if TYPE_CHECKING:
    from heatd.config import SiteConfig


def _verify(args: argparse.Namespace) -> int:
    from heatd.billing.ledger import verify

    path, _ = _database(args.db)
    if path is None:
        return 1
    count, problems = verify(path)
    for problem in problems:
        print(f"{path}: {problem}")
    if problems and count == 0:
        print(f"{path}: no records could be read")
        return 2
    if problems:
        print(f"{path}: {count} records, {len(problems)} problems: the chain is broken")
        return 2
    print(f"{path}: {count} records, chain intact")
    return 0


def _report(args: argparse.Namespace) -> int:
    from heatd.billing.report import main

    path, site = _database(args.db)
    return 1 if path is None else main(args, path, site)


def _assess(args: argparse.Namespace) -> int:
    from heatd.hil.assess import main

    return main(args)


def _database(text: str) -> tuple[str | None, SiteConfig | None]:
    """A ledger path, or the ``meter.database`` of a site file and the site."""
    if not text.endswith((".yaml", ".yml")):
        return text, None
    from heatd.config_loader import ConfigError, load_site
    from heatd.meter_store import meter_path

    try:
        site = load_site(text)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None, None
    if site.meter is None:
        print(f"{text}: no meter: section, so no records database", file=sys.stderr)
        return None, None
    try:
        return meter_path(site.meter.database), site
    except ValueError as exc:
        print(f"{text}: {exc}", file=sys.stderr)
        return None, None


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = commands.add_parser(
        "verify-records", help="check the hash chain of the stored contract records")
    verify.add_argument("db", metavar="DB", help="the meter database, or a site file")
    verify.set_defaults(handler=_verify)

    report = commands.add_parser(
        "report", help="contract report from the stored records: energy, temperatures, "
        "compliance, ERF")
    report.add_argument("--from", dest="start", type=_day, required=True, metavar="DATE",
                        help="first day (YYYY-MM-DD, site time)")
    report.add_argument("--to", dest="end", type=_day, required=True, metavar="DATE",
                        help="last day, included")
    report.add_argument("--contract", help="only this heat-purchase contract")
    report.add_argument("--format", choices=["md", "csv", "pdf"], default="md")
    report.add_argument("--db", required=True, metavar="PATH|SITE",
                        help="the meter database, or the site file naming it")
    report.add_argument("--out", default="out/report", help="directory written (default "
                        "out/report)")
    report.add_argument("--timezone", help="days in this zone (default: the site's, or UTC)")
    _factors(report)
    report.set_defaults(handler=_report)

    assess = commands.add_parser(
        "assess", help="a year of the site co-simulated: heat, ERF, CO2, what to buy")
    assess.add_argument("site", help="site YAML file")
    assess.add_argument("--load", metavar="CSV", help="hourly IT load: column it_kw (kW, up "
                        "to the plant's it.peak_kw) or cpu_load_fraction (0..1), 8760 rows "
                        "(default: the bundled year)")
    assess.add_argument("--weather", metavar="CSV",
                        help="hourly outdoor temperature: column dry_bulb_c, 8760 rows")
    assess.add_argument("--demand", metavar="CSV",
                        help="hourly network heat demand: column demand_kw, 8760 rows")
    assess.add_argument("--plant", help="plant parameter YAML, sized for the site (default: "
                        "the bundled plant, servers of 100-250 kW)")
    assess.add_argument("--sweep", metavar="hp_kw=A,B,..,storage_m3=C,D,..",
                        help="co-simulate every combination of heat-pump size and tank volume")
    assess.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="processes; results do not depend on it (default: one per CPU)")
    assess.add_argument("--hours", type=float, help="simulate only this many hours")
    assess.add_argument("--start-hour", type=int, default=0,
                        help="hour of the year to start at (default 0, 1 January)")
    assess.add_argument("--dt", type=step_seconds, default=10.0,
                        help="co-simulation step (s), at most the plant's PLC heartbeat "
                        "timeout (30 s in the bundled plant); 30 screens a sweep three times "
                        "faster than 10")
    assess.add_argument("--kwh-per-home", type=kwh_per_year, default=12000.0,
                        help="yearly heat of one home, for homes-equivalent (default 12000)")
    assess.add_argument("--out", default="out/assess", help="directory for plots and tables")
    assess.add_argument("--json", action="store_true", help="print the result as JSON")
    assess.add_argument("--no-progress", action="store_true")
    _factors(assess)
    assess.set_defaults(handler=_assess)


def _factors(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("factors (each is named in the output)")
    group.add_argument("--displaced-co2", type=kg_per_kwh, metavar="KG_PER_KWH",
                       help="CO2 of the heat the delivered heat displaces (default 0.224: a "
                       "gas boiler's heat, 0.202 kg/kWh of natural gas, IPCC 2006 on the "
                       "net calorific value, at 90%% seasonal efficiency)")
    group.add_argument("--grid-co2", type=kg_per_kwh, metavar="KG_PER_KWH",
                       help="CO2 of grid electricity (default 0.380: German electricity mix "
                       "2023, Umweltbundesamt, direct emissions)")
    group.add_argument("--grid-co2-csv", metavar="CSV",
                       help="hourly grid CO2: columns hour (0-8759 or an ISO time) and "
                       "kg_per_kwh; overrides --grid-co2")
