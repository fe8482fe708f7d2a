"""One PNG per co-simulated run: what a person checks first when a figure looks wrong.

Three stacked panels on a common time axis (scenario hours): temperatures
with their limits, actuator positions, and heat (demand, delivered, made, available).
Uses matplotlib's object API on the Agg canvas, so it never needs a display and never
touches pyplot's global state.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from hil.cosim import Run
from hil.kpi import KpiConfig

PLOT_EXTRA = "plots need the 'plot' extra: pip install 'heatd[plot]'"
"""What a command that plots says, once, when matplotlib is missing; it does the rest."""

_OFF_SCALE_K = 20.0
"""Temperatures more than this above the supply limit are clipped (a runaway would
otherwise flatten every other curve) and their peak is written on the panel."""


def plot_run(run: Run, path: str | Path, config: KpiConfig) -> Path:
    """Write the run's PNG to ``path`` (parent directories are created)."""
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
    ax_t.axhline(
        config.supply_limit_c,
        color="tab:blue",
        ls="--",
        lw=1,
        label=f"supply limit {config.supply_limit_c:g} degC",
    )
    a2 = config.rack_limits_c[-1]
    ax_t.axhline(a2, color="tab:purple", ls=":", lw=1, label=f"rack inlet A2 {a2:g} degC")
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
    ax_q.plot(
        t, tr["available_kw"], label="heat available (ideal)", color="tab:green", ls="--", lw=0.9
    )
    ax_q.set_ylabel("heat (kW)")
    ax_q.set_xlabel("scenario time (h)")
    ax_q.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax_q.grid(alpha=0.3)

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def can_plot() -> bool:
    """Whether matplotlib (the ``plot`` extra) is installed."""
    return find_spec("matplotlib") is not None
