"""``heatd hil ...``: the simulator's commands. Arguments are declared here so ``heatd
--help`` works without importing the simulator; each handler imports its module lazily."""

from __future__ import annotations

import argparse

from heatd.cli_args import kg_per_kwh, non_negative, step_seconds


def _serve(args: argparse.Namespace) -> int:
    from heatd.hil.serve import main

    return main(args)


def _score(args: argparse.Namespace) -> int:
    from heatd.hil.score import main

    return main(args)


def _price(text: str) -> float:
    return non_negative(text, "a price >= 0")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _serial_mapping(text: str) -> tuple[str, str]:
    site_port, sep, sim_port = text.partition("=")
    if not (sep and site_port and sim_port):
        raise argparse.ArgumentTypeError(f"{text!r} is not SITE_PORT=SIM_PORT")
    return site_port, sim_port


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hil = commands.add_parser("hil", help="plant simulator: serve a site, score controllers")
    hil_commands = hil.add_subparsers(dest="hil_command", required=True, metavar="COMMAND")

    serve = hil_commands.add_parser(
        "serve", help="run the plant and serve the site's points over Modbus and OPC UA"
    )
    serve.add_argument("site", help="site YAML file (the one the daemon reads)")
    serve.add_argument("--scenario", default="winter_week", help="scenario name or YAML file")
    serve.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="plant seconds per wall-clock second (default 1: real time)",
    )
    serve.add_argument("--seed", type=int, help="random seed (default: the scenario's own)")
    serve.add_argument("--plant", help="plant parameter YAML (default: a 250 kW edge site)")
    serve.add_argument(
        "--record",
        metavar="DIR",
        help="write ground truth and every write received to CSV files here",
    )
    serve.add_argument(
        "--serial",
        type=_serial_mapping,
        action="append",
        metavar="SITE_PORT=SIM_PORT",
        help="serve the Modbus RTU line the site puts on SITE_PORT on the simulator's own "
        "serial port SIM_PORT (repeat per line)",
    )
    serve.add_argument(
        "--pty",
        action="store_true",
        help="serve each other Modbus RTU line on a pseudo-terminal pair made with socat: "
        "heatd opens the site's serial_port path, which the simulator creates",
    )
    serve.add_argument(
        "--duration",
        type=float,
        help="stop after this many plant seconds (default: the scenario's)",
    )
    serve.set_defaults(handler=_serve)

    score = hil_commands.add_parser(
        "score", help="co-simulate a controller against the plant and print KPIs"
    )
    which = score.add_mutually_exclusive_group(required=True)
    which.add_argument("--scenario", help="scenario name or YAML file")
    which.add_argument(
        "--all", action="store_true", help="every scenario, heatd and baseline side by side"
    )
    which.add_argument(
        "--family",
        type=_count,
        metavar="N",
        help="run the scenario library over N randomised plants, heatd against the "
        "baseline, judge the control goals and search for violations",
    )
    score.add_argument("--controller", choices=["heatd", "baseline", "none"], default="heatd")
    score.add_argument("--seed", type=int, help="random seed (default: the scenario's own)")
    score.add_argument("--plant", help="plant parameter YAML (default: a 250 kW edge site)")
    score.add_argument("--site", help="site YAML whose control: section tunes heatd")
    score.add_argument("--dt", type=step_seconds, default=10.0,
                       help="co-simulation step in seconds, at most the plant's PLC "
                       "heartbeat timeout (30 s in the bundled plant)")
    score.add_argument("--json", action="store_true", help="one JSON object per run")
    score.add_argument("--plot-dir", default="out/plots", help="where the PNGs go")
    score.add_argument("--no-plot", action="store_true")
    score.add_argument(
        "--gas-co2",
        type=kg_per_kwh,
        metavar="KG_PER_KWH",
        help="CO2 of the heat that recovered heat displaces (default 0.224: a gas boiler's "
        "heat, 0.202 kg/kWh of gas, IPCC 2006, at 90%% seasonal efficiency)",
    )
    score.add_argument(
        "--grid-co2",
        type=kg_per_kwh,
        metavar="KG_PER_KWH",
        help="CO2 of the grid electricity the heat pump draws (default 0.380: German "
        "electricity mix 2023, Umweltbundesamt)",
    )
    score.add_argument(
        "--heat-price", type=_price, metavar="EUR_PER_MWH",
        help="what the network pays for a MWh of heat (default 45)",
    )
    score.add_argument(
        "--electricity-price", type=_price, metavar="EUR_PER_MWH",
        help="what a MWh of electricity costs (default 120)",
    )
    family = score.add_argument_group("family runs (--family)")
    family.add_argument(
        "--scenarios", metavar="A,B,...",
        help="scenarios to run on each plant (default: every scenario of the library)",
    )
    family.add_argument("--hours", type=float, default=24.0,
                        help="window of each scenario, from its start (default 24)")
    family.add_argument("--jobs", type=_count, default=1,
                        help="processes to run cases in (results do not depend on it)")
    family.add_argument(
        "--falsify", type=int, default=0, metavar="K",
        help="also search K plants drawn at the edges of the ranges for a supply-limit "
        "violation in a feasible case",
    )
    score.set_defaults(handler=_score)
