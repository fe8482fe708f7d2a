"""The assessment's figures: ERF and the IT heat reused per month, and the sweep's four
panels (heat, ERF, CO2, COP against heat-pump size, a line per tank volume)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from heatd.billing.indicators import ENEFG_ERF


def plot_months(figures: dict[str, Any], path: Path) -> Path:
    months = figures["months"]
    at = range(len(months))
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.subplots()
    ax.bar(at, [100 * (m["erf"] or 0) for m in months], color="tab:green", label="ERF")
    ax.plot(at, [100 * (m["it_share_reused"] or 0) for m in months], "o-",
            color="tab:red", label="IT heat reused")
    ax.set_xticks(at, [m["month"] for m in months])
    for since, share in ENEFG_ERF:
        ax.axhline(100 * share, ls="--", lw=1, color="grey")
        ax.annotate(f"EnEfG {share:.0%} (from {since:%Y-%m})", (0, 100 * share),
                    xytext=(2, 2), textcoords="offset points", fontsize=8)
    ax.set_ylabel("%")
    ax.set_title(f"{figures['size']}: ERF {100 * (figures['erf'] or 0):.1f} %, "
                 f"{figures['heat_delivered_mwh']:.0f} MWh delivered")
    ax.legend(loc="upper right")
    fig.savefig(path, dpi=100)
    return path


def plot_sweep(figures: list[dict[str, Any]], chosen: dict[str, Any], path: Path) -> Path:
    fig = Figure(figsize=(11, 8), layout="constrained")
    axes = fig.subplots(2, 2).flatten()
    panels = (("heat_delivered_mwh", "heat delivered (MWh)", 1.0),
              ("erf", "ERF (%)", 100.0), ("co2_avoided_t", "CO2 avoided (t)", 1.0),
              ("seasonal_cop", "seasonal COP", 1.0))
    tanks = sorted({f["storage_m3"] for f in figures}, key=lambda v: (v is None, v or 0))
    for ax, (key, label, scale) in zip(axes, panels, strict=True):
        for tank in tanks:
            rows = sorted((f for f in figures if f["storage_m3"] == tank),
                          key=lambda f: f["hp_kw"] or 0)
            ax.plot([f["hp_kw"] or 0 for f in rows], [scale * (f[key] or 0) for f in rows],
                    "o-", label="tank as built" if tank is None else f"tank {tank:g} m3")
        ax.plot([chosen["hp_kw"] or 0], [scale * (chosen[key] or 0)], "*", ms=16,
                color="black", label="what to buy")
        if key == "erf":
            for _, share in ENEFG_ERF:
                ax.axhline(100 * share, ls="--", lw=1, color="grey")
        ax.set_xlabel("heat-pump size (kW)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"what to buy: {chosen['size']}")
    fig.savefig(path, dpi=100)
    return path
