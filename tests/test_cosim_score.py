"""``heatd hil score``: JSON with stable keys, readable tables, PNGs on disk, clear errors."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

import pytest

from heatd.cli import main as heatd_main
from heatd.hil.cosim import NO_CONTROLLER, StepError, longest_step, simulate
from heatd.hil.kpi import Kpis, kpi_config
from heatd.hil.plots import figure, plot_run, storage_discharge_kw
from heatd.hil.scenario import load_scenario
from heatd.hil.score import (
    JSON_KEYS,
    SITE_CONTROL,
    ScoreError,
    format_run,
    format_table,
    main,
    make_controller,
    run_record,
    score,
    site_control,
)

KPI_KEYS = [f.name for f in fields(Kpis)]


@pytest.fixture
def short_scenario(tmp_path: Path) -> Path:
    """Two hours of a Copenhagen winter with a supply sensor stuck for 20 minutes."""
    path = tmp_path / "short.yaml"
    path.write_text(
        "name: short\n"
        "weather: copenhagen\n"
        "start_hour: 400\n"
        "duration_h: 2\n"
        "faults:\n"
        "  - {kind: sensor_stuck, target: coolant_supply_temp, start_s: 3600, duration_s: 1200}\n"
    )
    return path


def args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "scenario": None, "all": False, "controller": "heatd", "seed": 0, "plant": None,
        "site": None, "dt": 10.0, "json": False, "plot_dir": "out/plots", "no_plot": True,
        "gas_co2": None, "grid_co2": None, "heat_price": None, "electricity_price": None,
        "family": None,
    }  # fmt: skip
    base.update(kw)
    return argparse.Namespace(**base)


def test_json_is_one_object_per_run_with_stable_keys(
    short_scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(args(scenario=str(short_scenario), controller="baseline", json=True))
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert list(obj) == [*JSON_KEYS, *KPI_KEYS]
    assert obj["scenario"] == "short" and obj["controller"] == "baseline"
    assert obj["dt_s"] == 10.0 and obj["duration_h"] == pytest.approx(2.0)
    assert isinstance(obj["hp_starts"], int)


def test_the_cli_prints_a_table_and_writes_a_png(
    short_scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plots = tmp_path / "plots"
    argv = ["hil", "score", "--scenario", str(short_scenario), "--plot-dir", str(plots)]
    assert heatd_main(argv) == 0
    out = capsys.readouterr().out
    assert "short - heatd (2 h at dt 10 s)" in out
    assert "supply over limit" in out and "reuse ratio" in out and "net CO2 avoided" in out
    assert "trips by cause" in out
    png = plots / "short-heatd.png"
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 30_000  # three panels of curves, not an empty canvas


def test_plot_marks_a_runaway_as_off_scale(short_scenario: Path, tmp_path: Path) -> None:
    sc = load_scenario(short_scenario)
    run = score(sc, "none", plot_dir=tmp_path)
    assert run.trace is not None
    hot = dict(run.trace)
    hot["supply_c"] = [500.0] * len(hot["supply_c"])
    out = plot_run(
        run.__class__(**{**_asdict(run), "trace": hot}),
        tmp_path / "hot.png",
        kpi_config(sc.params),
    )
    assert out.stat().st_size > 10_000
    with pytest.raises(ValueError, match="trace"):
        plot_run(
            run.__class__(**{**_asdict(run), "trace": None}),
            tmp_path / "x.png",
            kpi_config(sc.params),
        )


def test_plot_tells_limits_from_curves_and_shows_storage_discharge(
        short_scenario: Path, tmp_path: Path) -> None:
    from matplotlib.colors import to_rgba

    sc = load_scenario(short_scenario)
    config = kpi_config(sc.params)
    run = score(sc, "heatd", plot_dir=tmp_path)
    assert run.trace is not None
    temperatures, _, heat = figure(run, config).axes
    lines = {line.get_label(): line for line in temperatures.get_lines()}
    supply = f"supply limit {config.supply_limit_c:g} degC"
    rack = f"rack inlet limit (A2) {config.rack_limits_c[-1]:g} degC"
    limits = [lines[supply], lines[rack]]
    curves = [lines["coolant supply"], lines["hottest rack inlet"]]
    assert limits[0].get_linestyle() != limits[1].get_linestyle()
    curve_colours = {to_rgba(c.get_color()) for c in curves}
    assert not {to_rgba(x.get_color()) for x in limits} & curve_colours
    assert {supply, rack} <= {text.get_text() for text in temperatures.texts}  # on the panel
    series = [c.get_label() for c in heat.collections]
    assert any(label.startswith("storage discharge") for label in series)
    discharge = storage_discharge_kw(run.trace)
    expected = [max(d - h, 0.0) for d, h in zip(run.trace["delivered_kw"],
                                                 run.trace["hp_heat_kw"], strict=True)]
    assert discharge == expected and len(discharge) == len(run.trace["t_h"])


def _asdict(run: object) -> dict[str, object]:
    return {f.name: getattr(run, f.name) for f in fields(run)}  # type: ignore[arg-type]


def test_table_puts_heatd_and_baseline_side_by_side(short_scenario: Path) -> None:
    sc = load_scenario(short_scenario)
    pair = (score(sc, "heatd"), score(sc, "baseline"))
    text = format_table([pair, pair])
    lines = text.splitlines()
    assert lines[0] == "each cell: heatd / baseline"
    assert "supply over limit (s)" in lines[1]
    assert len(lines) == 4 and lines[2].startswith("short ")
    h, b = pair[0].kpis, pair[1].kpis
    assert f"{h.it_heat_reused_mwh:.2f} / {b.it_heat_reused_mwh:.2f}" in lines[2]
    assert len({len(line) for line in lines[1:]}) == 1  # columns line up
    assert format_run(pair[0]).splitlines()[0] == "short - heatd (2 h at dt 10 s)"


def test_run_record_is_json_safe_for_a_controller_that_never_runs(short_scenario: Path) -> None:
    rec = run_record(score(load_scenario(short_scenario), "none"))
    assert rec["seasonal_cop"] is None and rec["hp_starts"] == 0
    json.dumps(rec, allow_nan=False)


def test_site_file_tunes_heatd_on_top_of_plant_facts(tmp_path: Path) -> None:
    plant = load_scenario("winter_week").params
    default = site_control(plant)
    assert default.optimiser.hp_nominal_heat_kw == plant.heat_pump.heat_nominal_kw
    assert default.envelope.rack_inlet_limit_c == SITE_CONTROL["envelope"]["rack_inlet_limit_c"]
    site = tmp_path / "site.yaml"
    site.write_text("site: {id: x}\ncontrol:\n  optimiser: {supply_setpoint_c: 38.0}\n")
    tuned = site_control(plant, site)
    assert tuned.optimiser.supply_setpoint_c == 38.0
    assert tuned.optimiser.hp_nominal_heat_kw == plant.heat_pump.heat_nominal_kw  # kept
    site.write_text("control:\n  optimiser: {no_such_knob: 1}\n")
    with pytest.raises(ScoreError, match=r"site\.yaml"):
        site_control(plant, site)
    site.write_text("control: [1, 2]\n")
    with pytest.raises(ScoreError, match="control"):
        site_control(plant, site)


def test_site_file_changes_the_score(
    short_scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("control:\n  optimiser: {hp_nominal_heat_kw: 60.0}\n")
    main(args(scenario=str(short_scenario), json=True))
    main(args(scenario=str(short_scenario), json=True, site=str(site)))
    full, small = (json.loads(x) for x in capsys.readouterr().out.splitlines())
    assert small["it_heat_reused_mwh"] < 0.5 * full["it_heat_reused_mwh"]


def test_co2_factors_and_prices_come_from_the_command_line(
    short_scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["hil", "score", "--scenario", str(short_scenario), "--json", "--no-plot"]
    assert heatd_main(argv) == 0
    assert heatd_main([*argv, "--gas-co2", "0.25", "--grid-co2", "0.05", "--heat-price", "60",
                       "--electricity-price", "80"]) == 0  # fmt: skip
    default, local = (json.loads(x) for x in capsys.readouterr().out.splitlines())
    assert default["hp_electricity_mwh"] > 0
    for run, gas, grid, heat, power in ((default, 0.224, 0.380, 45.0, 120.0),
                                        (local, 0.25, 0.05, 60.0, 80.0)):  # fmt: skip
        electricity = run["hp_electricity_mwh"] + run["fan_electricity_mwh"]
        sold = run["heat_delivered_mwh"]
        assert run["net_co2_t"] == pytest.approx(sold * gas - electricity * grid)
        assert run["net_money"] == pytest.approx(sold * heat - electricity * power)
    assert local["net_co2_t"] > default["net_co2_t"]


@pytest.mark.parametrize("option", ["--grid-co2", "--heat-price"])
@pytest.mark.parametrize("bad", ["-0.1", "nan", "inf", "lots"])
def test_a_bad_factor_or_price_is_refused_by_name(
    option: str, bad: str, short_scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        heatd_main(["hil", "score", "--scenario", str(short_scenario), option, bad])
    assert exit_.value.code == 2
    assert option in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["0", "-5", "nan", "inf", "fast"])
def test_a_step_that_is_not_above_0_is_refused_with_the_arguments(
    bad: str, short_scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        heatd_main(["hil", "score", "--scenario", str(short_scenario), "--no-plot", "--dt", bad])
    assert exit_.value.code == 2
    assert f"argument --dt: '{bad}' is not a" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["file/sub", "file"])
def test_a_plot_folder_that_cannot_be_made_is_refused_before_the_run(
    where: str, short_scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One line naming the folder, exit 2, and nothing co-simulated (no result printed)."""
    (tmp_path / "file").write_text("a file, not a folder")
    plots = tmp_path / where
    assert heatd_main(["hil", "score", "--scenario", str(short_scenario), "--plot-dir",
                       str(plots)]) == 2
    out, err = capsys.readouterr()
    assert err == f"heatd hil score: {plots}: Not a directory\n"
    assert out == ""


def test_bad_inputs_are_reported_not_raised(
    short_scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args(scenario="no_such_scenario")) == 2
    assert "no_such_scenario" in capsys.readouterr().err
    site = tmp_path / "missing.yaml"
    assert main(args(scenario=str(short_scenario), site=str(site))) == 2
    assert "missing.yaml" in capsys.readouterr().err
    plant = tmp_path / "plant.yaml"
    plant.write_text("heat_pump: {heat_nominal_kw: -5}\n")
    assert main(args(scenario=str(short_scenario), plant=str(plant))) == 2
    assert "plant.yaml" in capsys.readouterr().err


def test_plant_file_replaces_the_plant(
    short_scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plant = tmp_path / "plant.yaml"
    plant.write_text("it: {idle_kw: 50.0, peak_kw: 120.0}\n")
    main(args(scenario=str(short_scenario), controller="none", json=True))
    main(args(scenario=str(short_scenario), controller="none", json=True, plant=str(plant)))
    default, small = (json.loads(x) for x in capsys.readouterr().out.splitlines())
    assert small["it_energy_mwh"] < 0.7 * default["it_energy_mwh"]


@pytest.mark.slow
def test_all_scores_every_scenario_both_ways(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args(all=True, json=True, no_plot=False, plot_dir=str(tmp_path))) == 0
    recs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    names = {r["scenario"] for r in recs}
    assert len(recs) == 2 * len(names) and len(names) >= 14
    assert {r["controller"] for r in recs} == {"heatd", "baseline"}
    assert len(list(tmp_path.glob("*.png"))) == len(recs)


def test_a_step_the_plants_plc_would_fall_back_at_is_refused_before_any_run(
    short_scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """heatd's heartbeat changes once a step; at 31 s the PLC (timeout 30 s) would run the
    plant on local cooling. One line naming the largest step, exit 2, no result printed;
    the controller that writes nothing is not concerned."""
    assert heatd_main(["hil", "score", "--scenario", str(short_scenario), "--no-plot",
                       "--dt", "31"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("--dt must be at most 30 s\n") and "heatd hil score: --dt 31:" in err
    assert heatd_main(["hil", "score", "--family", "1", "--scenarios", "winter_week",
                       "--dt", "60"]) == 2
    assert "--dt must be at most 30 s" in capsys.readouterr().err
    sc = load_scenario(str(short_scenario))
    with pytest.raises(StepError, match="at most 30 s"):
        simulate(sc, make_controller("heatd", sc.params, site_control(sc.params)), dt=45.0)
    assert simulate(sc, NO_CONTROLLER, dt=60.0).kpis.plc_fallback_s > 0
    at_limit = simulate(sc, make_controller("heatd", sc.params, site_control(sc.params)),
                        dt=longest_step(sc.params))
    assert at_limit.kpis.plc_fallback_s == 0.0
