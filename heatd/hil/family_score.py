"""Scenario library x plant family: heatd against the credible baseline, case by case.

A case is one plant of the family on one scenario window. Each runs on the same plant
and disturbances with heatd, the baseline, and the plant's safe state alone (no
controller: the site PLC falls back to full dry cooling). A case is **feasible** when
the plant's best cooling holds the supply limit: the safe state alone, or, where that
goes over (a hot day a dry cooler alone cannot carry), the dry cooler at full fans with
the heat pump as a second cooling path (``heatd.hil.best_cooling``: the heat pump on a
share of the flow, making the heat its condenser can hand on to the network, tripping
and unloading as the plant makes it). Where the recovery valve seizes, the plant is
what the controller before the seizure left: the reference is then the best cooling
with the valve seized where heatd's did and the heat pump at full capacity while the
seizure lasts (the safe state's valve would seize elsewhere).
A supply-limit second in a feasible case is a failure of the controller, whatever its
cause.

Cases are independent and deterministic, so ``jobs`` > 1 runs them in a process pool
with results identical to one job, in the same order.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from heatd.hil import best_cooling
from heatd.hil.cosim import NO_CONTROLLER, simulate
from heatd.hil.family import Member, draw
from heatd.hil.kpi import Prices, kpi_config
from heatd.hil.scenario import load_scenario
from heatd.hil.score import make_controller, site_control

KEY_SCENARIOS = ("winter_week", "shoulder_season", "summer_week", "hp_trip", "ai_burst",
                 "comms_loss", "quiet_sensors")  # fmt: skip
"""The scenarios the quick family of the test suite runs."""


@dataclass(frozen=True, slots=True)
class CaseSpec:
    scenario: str
    seed: int
    index: int
    hours: float
    dt: float = 10.0
    corners: bool = False

    @property
    def name(self) -> str:
        kind = "corner" if self.corners else "plant"
        return f"{self.scenario}/{kind}-{self.seed}-{self.index}"


@dataclass(frozen=True, slots=True)
class Case:
    spec: CaseSpec
    member: str
    feasible: bool
    heatd: dict[str, Any]
    baseline: dict[str, Any]
    safe_state: dict[str, Any]
    best_cooling: dict[str, Any] | None = None
    """The best cooling's figures; None where the safe state alone holds the limit."""

    def record(self) -> dict[str, Any]:
        """A flat JSON-ready view: identity, feasibility, then each controller's KPIs."""
        s = self.spec
        return {
            "case": s.name, "scenario": s.scenario, "seed": s.seed, "index": s.index,
            "corners": s.corners, "hours": s.hours, "plant": self.member,
            "feasible": self.feasible, "heatd": self.heatd, "baseline": self.baseline,
            "safe_state": _held(self.safe_state),
            "best_cooling": None if self.best_cooling is None else _held(self.best_cooling),
        }  # fmt: skip


def _held(kpis: dict[str, Any]) -> dict[str, Any]:
    """How a reference held the limit."""
    return {k: kpis[k] for k in ("supply_over_limit_s", "max_supply_c")}


def run_case(spec: CaseSpec, prices: Prices | None = None) -> Case:
    """heatd, the baseline, the safe state alone and, where that goes over or the valve
    seizes, the best cooling, on one plant and scenario window."""
    member: Member = draw(spec.seed, spec.index, corners=spec.corners)
    scenario = member.scenario(load_scenario(spec.scenario))
    plant = scenario.params
    judge = kpi_config(plant, prices)
    control = site_control(plant)
    duration = min(scenario.duration_s, spec.hours * 3600.0)
    out = {}
    for name in ("heatd", "baseline"):
        run = simulate(scenario, make_controller(name, plant, control), dt=spec.dt,
                       duration_s=duration, kpi=judge, start=member.start)
        out[name] = run.kpis.as_dict()
    safe = simulate(scenario, NO_CONTROLLER, dt=spec.dt, duration_s=duration, kpi=judge,
                    start=member.start).kpis
    seized = min(((f.start_s, f.end_s) for f in scenario.faults
                  if f.kind == "valve_stuck" and f.start_s < duration), default=None)
    reference = None
    if seized is not None:  # the plant as heatd's valve seized
        valve = simulate(scenario, make_controller("heatd", plant, control), dt=spec.dt,
                         duration_s=seized[0], start=member.start).final.valve_position
        reference = best_cooling.controller(plant, valve, *seized)
    elif safe.supply_over_limit_s > 0.0:
        reference = best_cooling.controller(plant)
    best = None if reference is None else simulate(
        scenario, reference, dt=spec.dt, duration_s=duration, kpi=judge,
        start=member.start).kpis
    feasible = (best or safe).supply_over_limit_s == 0.0
    return Case(spec, member.describe(), feasible, out["heatd"], out["baseline"],
                safe.as_dict(), None if best is None else best.as_dict())


def run_cases(specs: Sequence[CaseSpec], jobs: int = 1,
              progress: Callable[[Case], None] | None = None) -> list[Case]:
    """Every case, in order; ``jobs`` processes (the results do not depend on it)."""
    if jobs <= 1:
        cases = []
        for spec in specs:
            case = run_case(spec)
            if progress:
                progress(case)
            cases.append(case)
        return cases
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        cases = []
        for case in pool.map(run_case, specs, chunksize=1):
            if progress:
                progress(case)
            cases.append(case)
        return cases


def family_specs(plants: int, seed: int, scenarios: Iterable[str], hours: float,
                 dt: float = 10.0, corners: bool = False, first: int = 0) -> list[CaseSpec]:
    return [CaseSpec(sc, seed, first + i, hours, dt, corners)
            for i in range(plants) for sc in scenarios]


# --- goals -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Goal:
    name: str
    figure: str
    met: bool


def _rel(h: float, b: float) -> float:
    """heatd relative to the baseline: +0.05 is 5 % better, whatever the baseline's sign."""
    if b == 0.0:
        return 0.0 if h == 0.0 else (1.0 if h > 0 else -1.0)
    return (h - b) / abs(b)


def goals(cases: Sequence[Case]) -> list[Goal]:
    """The control goals, judged over every case (none hand-picked)."""
    feasible = [c for c in cases if c.feasible]
    viol = [c for c in feasible if c.heatd["supply_over_limit_s"] > 0.0]
    rack_worse = [c for c in cases if c.heatd["rack_over_a1_s"] > c.baseline["rack_over_a1_s"]]
    reuse = [(c, c.heatd["it_heat_reused_mwh"], c.baseline["it_heat_reused_mwh"])
             for c in cases]  # fmt: skip
    below = [c for c, h, b in reuse if h < 0.98 * b - 1e-9]
    worst = min((_rel(h, b) for _, h, b in reuse), default=0.0)
    weak = [_rel(h, b) for c, h, b in reuse
            if (c.baseline["reuse_ratio"] or 0.0) < 0.95 and b > 0]  # fmt: skip
    money = [_rel(c.heatd["net_money"], c.baseline["net_money"]) for c in cases]
    co2 = [_rel(c.heatd["net_co2_t"], c.baseline["net_co2_t"]) for c in cases]
    starts = [c for c in cases if c.heatd["hp_starts"] > c.baseline["hp_starts"]]
    el = [(c.heatd["electricity_per_mwh_reused"], c.baseline["electricity_per_mwh_reused"])
          for c in cases]  # fmt: skip
    el_worse = [1 for h, b in el if h is not None and b is not None and h > b * 1.0 + 1e-9]
    med = statistics.median
    return [
        Goal("0 s over the supply limit in every feasible case",
             f"{len(viol)} of {len(feasible)} feasible cases over "
             f"({len(cases) - len(feasible)} infeasible)", not viol),
        Goal("rack inlet s over A1 no more than the baseline's",
             f"{len(rack_worse)} of {len(cases)} cases more", not rack_worse),
        Goal("IT heat reused never below the baseline -2 %",
             f"{len(below)} of {len(cases)} cases below; worst {worst:+.1%}", not below),
        Goal("median +5 % reuse where the baseline reuses < 95 % of the ideal",
             f"median {med(weak):+.1%} over {len(weak)} cases" if weak else "no such case",
             not weak or med(weak) >= 0.05),
        Goal("median +5 % net money", f"median {med(money):+.1%}" if money else "-",
             bool(money) and med(money) >= 0.05),
        Goal("median +5 % net CO2", f"median {med(co2):+.1%}" if co2 else "-",
             bool(co2) and med(co2) >= 0.05),
        Goal("no more heat-pump starts than the baseline",
             f"{len(starts)} of {len(cases)} cases more", not starts),
        Goal("electricity per MWh reused at most the baseline's",
             f"{len(el_worse)} of {len(cases)} cases more", not el_worse),
    ]


# --- tables ----------------------------------------------------------------------------


def scenario_table(cases: Sequence[Case]) -> str:
    """One row per scenario over the family: heatd / baseline side by side."""
    rows = [("scenario", "cases", "feasible", "over-limit cases", "reuse ratio median",
             "reuse vs baseline min / median", "net money median", "starts")]
    for name in sorted({c.spec.scenario for c in cases}):
        cs = [c for c in cases if c.spec.scenario == name]
        over_h = sum(1 for c in cs if c.heatd["supply_over_limit_s"] > 0)
        over_b = sum(1 for c in cs if c.baseline["supply_over_limit_s"] > 0)
        rh = statistics.median(c.heatd["reuse_ratio"] or 0.0 for c in cs)
        rb = statistics.median(c.baseline["reuse_ratio"] or 0.0 for c in cs)
        rel = [_rel(c.heatd["it_heat_reused_mwh"], c.baseline["it_heat_reused_mwh"]) for c in cs]
        mh = statistics.median(c.heatd["net_money"] for c in cs)
        mb = statistics.median(c.baseline["net_money"] for c in cs)
        sh = sum(c.heatd["hp_starts"] for c in cs)
        sb = sum(c.baseline["hp_starts"] for c in cs)
        rows.append((name, str(len(cs)), str(sum(c.feasible for c in cs)),
                     f"{over_h} / {over_b}", f"{rh:.3f} / {rb:.3f}",
                     f"{min(rel):+.1%} / {statistics.median(rel):+.1%}",
                     f"{mh:.0f} / {mb:.0f}", f"{sh} / {sb}"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["each cell: heatd / baseline"]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(lines)


def goals_table(gs: Sequence[Goal]) -> str:
    return "\n".join(f"[{'met' if g.met else 'NOT MET'}] {g.name}: {g.figure}" for g in gs)


def violations(cases: Sequence[Case]) -> list[Case]:
    """Feasible cases where heatd went over the supply limit: each one a regression test."""
    return [c for c in cases if c.feasible and c.heatd["supply_over_limit_s"] > 0.0]
