"""One PNG per co-simulated run: what a person checks first when a figure looks wrong.

Three stacked panels on a common time axis (scenario hours): temperatures
with their limits, actuator positions, and heat (demand, delivered, made, given back by
storage, available).
Uses matplotlib's object API on the Agg canvas, so it never needs a display and never
touches pyplot's global state.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

from heatd.hil.cosim import Run
from heatd.hil.kpi import KpiConfig

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_EXTRA = "plots need the 'plot' extra: pip install 'heatd[plot]'"
"""What a command that plots says, once, when matplotlib is missing; it does the rest."""

_OFF_SCALE_K = 20.0
"""Temperatures more than this above the supply limit are clipped (a runaway would
otherwise flatten every other curve) and their peak is written on the panel."""


def plot_run(run: Run, path: str | Path, config: KpiConfig) -> Path:
    """Write the run's PNG to ``path`` (parent directories are created)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure(run, config).savefig(out)
    return out


def figure(run: Run, config: KpiConfig) -> Figure:
    """The run's three panels. Limits are drawn black, each in its own dash pattern and
    labelled on the panel, so neither is taken for the curve it bounds."""
    from matplotlib.figure import Figure

    if run.trace is None:
        raise ValueError("the run kept no trace (simulate with trace_points > 0)")
    tr = run.trace
    t = tr["t_h"]
    fig = Figure(figsize=(12, 9), dpi=100, layout="constrained")
    ax_t, ax_a, ax_q = fig.subplots(3, 1, sharex=True)
    k = run.kpis
    ratio = "-" if k.reuse_ratio is None else f"{k.reuse_ratio:.3f}"
    fig.suptitle(
        f"{run.scenario} - {run.controller}   |   IT heat reused {k.it_heat_reused_mwh:.1f} MWh "
        f"({ratio} of ideal), supply over limit {k.supply_over_limit_s:.0f} s, "
        f"{k.hp_starts} heat-pump starts",
        fontsize=11,
    )

    ax_t.plot(t, tr["supply_c"], label="coolant supply", color="tab:blue", lw=1.2)
    ax_t.plot(t, tr["return_c"], label="coolant return", color="tab:cyan", lw=0.9)
    ax_t.plot(t, tr["rack_inlet_c"], label="hottest rack inlet", color="tab:purple", lw=0.9)
    ax_t.plot(t, tr["tank_top_c"], label="storage top", color="tab:red", lw=0.9)
    ax_t.plot(t, tr["outdoor_c"], label="outdoor", color="tab:gray", lw=0.9)
    a2 = config.rack_limits_c[-1]
    for value, style, text in ((config.supply_limit_c, "--", "supply limit"),
                               (a2, ":", "rack inlet limit (A2)")):
        ax_t.axhline(value, color="black", ls=style, lw=1.4, label=f"{text} {value:g} degC")
        ax_t.annotate(f"{text} {value:g} degC", (0.995, value), xycoords=("axes fraction", "data"),
                      ha="right", va="bottom", fontsize=8,
                      bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1})
    ceiling = max(config.supply_limit_c, a2) + _OFF_SCALE_K
    peak = max(max(tr["supply_c"], default=0.0), max(tr["rack_inlet_c"], default=0.0))
    if peak > ceiling:
        low = min(min(tr[k], default=0.0) for k in ("supply_c", "outdoor_c", "tank_top_c"))
        ax_t.set_ylim(low - 3.0, ceiling)
        ax_t.text(
            0.01,
            0.95,
            f"off scale: peaks at {peak:.0f} degC",
            transform=ax_t.transAxes,
            va="top",
            color="tab:red",
            fontweight="bold",
        )
    ax_t.set_ylabel("temperature (degC)")
    ax_t.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax_t.grid(alpha=0.3)

    ax_a.fill_between(
        t,
        0.0,
        tr["hp_running"],
        step="post",
        color="tab:orange",
        alpha=0.15,
        label="heat pump running",
    )
    ax_a.plot(t, tr["valve"], label="recovery valve", color="tab:green", lw=1.2)
    ax_a.plot(t, tr["fan"], label="dry-cooler fan", color="tab:gray", lw=0.9)
    ax_a.plot(t, tr["hp_capacity"], label="heat-pump capacity", color="tab:orange", lw=1.2)
    ax_a.set_ylim(-0.03, 1.05)
    ax_a.set_ylabel("position (0..1)")
    ax_a.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax_a.grid(alpha=0.3)

    ax_q.plot(t, tr["demand_kw"], label="network demand", color="black", lw=1.0)
    ax_q.plot(t, tr["delivered_kw"], label="delivered to network", color="tab:red", lw=1.2)
    ax_q.plot(t, tr["hp_heat_kw"], label="heat-pump heat", color="tab:orange", lw=0.9)
    ax_q.fill_between(t, 0.0, storage_discharge_kw(tr), color="tab:purple", alpha=0.45, lw=0,
                      label="storage discharge (delivered beyond heat-pump heat)")
    ax_q.plot(
        t, tr["available_kw"], label="heat available (ideal)", color="tab:green", ls="--", lw=0.9
    )
    ax_q.set_ylabel("heat (kW)")
    ax_q.set_xlabel("scenario time (h)")
    ax_q.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax_q.grid(alpha=0.3)
    return fig


def storage_discharge_kw(trace: Mapping[str, list[float]]) -> list[float]:
    """Heat the network got beyond what the heat pump made: what the tank gave back."""
    return [max(d - h, 0.0) for d, h in zip(trace["delivered_kw"], trace["hp_heat_kw"],
                                            strict=True)]


def can_plot() -> bool:
    """Whether matplotlib (the ``plot`` extra) is installed."""
    return find_spec("matplotlib") is not None
