"""The ``heatd`` command. Each sub-command lives in its own module; this file only parses
arguments and hands over, so ``heatd --help`` stays fast and a broken optional part cannot
stop ``heatd check-config`` from working."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from heatd import __version__

if TYPE_CHECKING:
    from heatd.config import SiteConfig


def _check_config(args: argparse.Namespace) -> int:
    from heatd.config_loader import ConfigError, check_site

    try:
        checked = check_site(args.file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = len(exc.problems)
        print(f"{args.file}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return 1
    site = checked.site
    for note in [*checked.notes, *_meter_notes(args.file, site)]:
        print(f"note: {note}", file=sys.stderr)
    points = sum(len(d.points) for d in site.devices.values())
    print(f"{args.file}: ok (site {site.site.id}, {len(site.devices)} devices, {points} points, "
          f"{len(site.roles)} roles)")
    return 0


def _meter_notes(file: str, site: SiteConfig) -> list[str]:
    """The meter's file, read without writing to it: one that heatd could not use is a
    note, not a problem, as heatd controls without it (and ``check-config`` runs before
    every start of the unit)."""
    if site.meter is None:
        return []
    from heatd.meter_store import file_problem, meter_path

    try:
        path = meter_path(site.meter.database)
    except ValueError:  # heatd run says so; under systemd the unit sets it
        return [f"{file}: meter.database: not checked: {site.meter.database!r} names a "
                "variable not set here (systemd sets $STATE_DIRECTORY for the service, "
                "from StateDirectory=)"]
    problem = file_problem(path)
    if problem is None:
        return []
    return [f"{file}: meter.database: {path}: {problem}: heatd would control without "
            "metering until the file can be used"]


def _config_schema(args: argparse.Namespace) -> int:
    from heatd.config_loader import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _probe(args: argparse.Namespace) -> int:
    import asyncio

    from heatd.cli_site import load_for_device
    from heatd.probe import probe

    site = load_for_device(args.file, args.device or None)
    if site is None:
        return 1
    return asyncio.run(probe(site, args.device, sys.stdout, check_types=args.check_types))


def _run(args: argparse.Namespace) -> int:
    from heatd.runtime import run

    return run(args.file)


def _init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from heatd.scaffold import init

    return init(Path(args.dir), args.force, sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heatd",
        description="Heat-recovery controller for edge data centres: cooling first, "
        "then sell the heat.",
    )
    parser.add_argument("--version", action="version", version=f"heatd {__version__}")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check-config", help="validate a site file and list every error")
    check.add_argument("file")
    check.set_defaults(handler=_check_config, logs=False)  # prints its own report

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    schema = config_commands.add_parser("schema", help="print the JSON Schema of a site file")
    schema.set_defaults(handler=_config_schema)

    probe = commands.add_parser(
        "probe", help="read every point once and print values, raw registers and read plans"
    )
    probe.add_argument("file")
    probe.add_argument("--device", help="probe only this device")
    probe.add_argument("--check-types", action="store_true",
                       help="flag OPC UA points whose data_type or writable differs from "
                       "the server's")
    probe.set_defaults(handler=_probe)

    run = commands.add_parser("run", help="run the daemon on a site file (systemd: Type=notify)")
    run.add_argument("file")
    run.set_defaults(handler=_run)

    init = commands.add_parser(
        "init", help="write an example site file and a systemd unit into DIR, to edit"
    )
    init.add_argument("dir", metavar="DIR")
    init.add_argument("--force", action="store_true", help="overwrite files already there")
    init.set_defaults(handler=_init)

    from heatd.opcua_cli import add_commands as add_opcua_commands

    add_opcua_commands(commands)

    from heatd.billing.cli import add_commands as add_billing_commands

    add_billing_commands(commands)

    from heatd.hil.cli import add_commands as add_hil_commands

    add_hil_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "logs", True):
        from heatd.logs import configure_logging

        configure_logging(args.log_level)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
