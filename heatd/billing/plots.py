"""The report's figures (matplotlib's object API on the Agg canvas: no display, no pyplot
state). Imported only when matplotlib is there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from heatd.billing.indicators import ENEFG_ERF
from heatd.billing.summary import ContractTotals, Month


def daily_energy(totals: ContractTotals, path: Path) -> Figure:
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax = fig.subplots()
    days = np.array(list(totals.daily_kwh), dtype="datetime64[D]")
    ax.bar(days, [v / 1000 for v in totals.daily_kwh.values()], color="tab:red")
    ax.set_ylabel("heat delivered (MWh/day)")
    ax.set_title(f"{totals.name}: daily heat delivered")
    fig.autofmt_xdate()
    fig.savefig(path, dpi=100)
    return fig


def duration_curve(totals: ContractTotals, path: Path) -> Figure:
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(range(1, len(totals.supply_hourly_c) + 1), totals.supply_hourly_c,
            color="tab:red", label="supply (hourly mean)")
    ax.plot(range(1, len(totals.return_hourly_c) + 1), totals.return_hourly_c,
            color="tab:blue", label="return (hourly mean)")
    if totals.min_supply_c is not None:
        ax.axhline(totals.min_supply_c, color="black", ls="--",
                   label=f"contract minimum {totals.min_supply_c:g} degC")
    ax.set_xlabel("hours, hottest first")
    ax.set_ylabel("degC")
    ax.set_title(f"{totals.name}: temperature duration curves")
    ax.legend(loc="lower left")
    fig.savefig(path, dpi=100)
    return fig


def erf_by_month(months: list[Month], path: Path) -> Figure:
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax = fig.subplots()
    at = range(len(months))
    ax.bar(at, [100 * (m.erf or 0.0) for m in months], color="tab:green", label="ERF")
    ax.set_xticks(at, [m.month for m in months])
    for since, share in ENEFG_ERF:
        ax.axhline(100 * share, ls="--", lw=1, color="grey")
        ax.annotate(f"EnEfG {share:.0%} (from {since:%Y-%m})", (0, 100 * share),
                    xytext=(2, 2), textcoords="offset points", fontsize=8)
    ax.set_ylabel("ERF (%)")
    ax.set_title("Energy Reuse Factor per month (ISO/IEC 30134-6)")
    ax.legend(loc="upper right")
    fig.savefig(path, dpi=100)
    return fig
