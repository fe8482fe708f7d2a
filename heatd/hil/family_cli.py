"""``heatd hil score --family N``: the scenario library over N plants, judged against the
goals, plus an optional falsification search at the edges of the family's ranges."""

from __future__ import annotations

import argparse
import json
import sys
import time

from heatd.hil.cosim import check_step
from heatd.hil.family_score import (
    Case,
    family_specs,
    goals,
    goals_table,
    run_cases,
    scenario_table,
    violations,
)
from heatd.hil.scenario import list_scenarios, load_scenario


def _scenarios(arg: str | None) -> list[str]:
    known = list_scenarios()
    if not arg:
        return known
    names = [x.strip() for x in arg.split(",") if x.strip()]
    unknown = [x for x in names if x not in known]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown} (known: {', '.join(known)})")
    return names


def main(args: argparse.Namespace) -> int:
    try:
        names = _scenarios(args.scenarios)
        for name in names:  # the family's plants keep their scenario's PLC
            check_step(args.dt, load_scenario(name).params)
    except ValueError as exc:  # a StepError too
        print(f"heatd hil score: {exc}", file=sys.stderr)
        return 2
    if not args.hours > 0:
        print("heatd hil score: --hours must be positive", file=sys.stderr)
        return 2
    seed = 0 if args.seed is None else args.seed
    specs = family_specs(args.family, seed, names, args.hours, args.dt)
    started = time.perf_counter()

    def show(case: Case) -> None:
        if args.json:
            print(json.dumps(case.record()), flush=True)

    cases = run_cases(specs, args.jobs, show)
    found: list[Case] = []
    if args.falsify:
        corner_specs = family_specs(args.falsify, seed, names, args.hours, args.dt, corners=True)
        corner_cases = run_cases(corner_specs, args.jobs, show)
        found = violations(corner_cases)
        feasible = sum(c.feasible for c in corner_cases)
    elapsed = time.perf_counter() - started
    if args.json:
        return 0 if not violations(cases) and not found else 1
    print(f"{len(cases)} cases: {args.family} plants x {len(names)} scenarios, "
          f"{args.hours:g} h windows, seed {seed}, {elapsed:.0f} s on {args.jobs} job(s)")
    print(scenario_table(cases))
    print()
    print(goals_table(goals(cases)))
    for case in violations(cases):
        print(f"VIOLATION {case.spec.name}: {case.member}")
    if args.falsify:
        print(f"\nfalsification: {len(corner_specs)} corner cases, {feasible} feasible, "
              f"{len(found)} with a supply-limit violation")
        for case in found:
            print(f"VIOLATION {case.spec.name}: {case.member} "
                  f"({case.heatd['supply_over_limit_s']:.0f} s, max "
                  f"{case.heatd['max_supply_c']:.1f} degC)")
    return 0 if not violations(cases) and not found else 1
