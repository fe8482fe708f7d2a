"""``heatd assess``: a window of the year co-simulated with heatd's control core; one week
agrees with ``hil score`` on the same week; a sweep picks what to buy, whatever the
number of processes; planners' CSV files replace the bundled year."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from heatd.billing.indicators import DISPLACED_HEAT_KG_PER_KWH, co2_avoided_kg
from heatd.cli import main as heatd_main
from heatd.hil.assess import months_of, parse_sweep
from heatd.hil.scenario import load_scenario
from heatd.hil.score import score

DEMO = str(Path(__file__).resolve().parents[1] / "config" / "demo-site.yaml")


def assess(capsys, tmp_path: Path, *extra: str) -> dict:
    assert heatd_main(["assess", DEMO, "--json", "--no-progress", "--out", str(tmp_path),
                       *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_one_week_agrees_with_hil_score_on_that_week(capsys, tmp_path: Path) -> None:
    week = load_scenario("winter_week")
    result = assess(capsys, tmp_path, "--start-hour", str(week.start_hour), "--hours", "168")
    figures, = result["results"]
    kpis = score(week, "heatd", site=DEMO).kpis
    drawn = figures["stored_heat_drawn_mwh"]
    assert 0 < drawn < 0.01 * kpis.heat_delivered_mwh  # the starting tank's charge
    made = kpis.heat_delivered_mwh - drawn
    assert figures["heat_delivered_mwh"] == pytest.approx(made, rel=1e-9)
    assert figures["it_heat_reused_mwh"] == pytest.approx(kpis.it_heat_reused_mwh, rel=1e-9)
    assert figures["hp_electricity_mwh"] == pytest.approx(kpis.hp_electricity_mwh, rel=1e-9)
    assert figures["erf"] == pytest.approx(kpis.erf * made / kpis.heat_delivered_mwh, rel=1e-9)
    assert figures["seasonal_cop"] == pytest.approx(kpis.seasonal_cop, rel=1e-9)
    assert figures["co2_avoided_t"] == pytest.approx(
        kpis.net_co2_t - drawn * DISPLACED_HEAT_KG_PER_KWH, rel=1e-9)
    assert figures["homes_equivalent"] == pytest.approx(made * 1000 / 12000)
    assert [m["month"] for m in figures["months"]] == ["Jan"]
    assert (tmp_path / "months.png").stat().st_size > 1000
    assert "ISO/IEC 30134-6" in result["factors"]["ERF"]


def test_a_window_is_cut_at_the_months() -> None:
    assert months_of(0, 24) == [("Jan", 0.0, 86400.0)]
    cut = months_of(31 * 24 - 6, 12)  # 31 January 18:00 for 12 hours
    assert cut == [("Jan", 0.0, 6 * 3600.0), ("Feb", 6 * 3600.0, 6 * 3600.0)]
    assert sum(length for *_, length in months_of(0, 8760)) == 8760 * 3600
    assert len(months_of(8760 - 24, 48)) == 2  # the window wraps into January


def test_a_sweep_picks_the_smallest_size_near_the_most_heat(capsys, tmp_path: Path) -> None:
    assert parse_sweep("hp_kw=100,300,storage_m3=10")[1].hp_kw == 300.0
    with pytest.raises(ValueError, match="hp_kw or storage_m3"):
        parse_sweep("fans=3")
    window = ["--start-hour", "336", "--hours", "12", "--sweep", "hp_kw=60,300,storage_m3=20"]
    one = assess(capsys, tmp_path / "one", *window, "--jobs", "1")
    two = assess(capsys, tmp_path / "two", *window, "--jobs", "2")
    assert [r["heat_delivered_mwh"] for r in one["results"]] == [
        r["heat_delivered_mwh"] for r in two["results"]]
    small, large = one["results"]
    assert small["heat_delivered_mwh"] < large["heat_delivered_mwh"]
    assert one["best"]["hp_kw"] == 300.0 and "95% of the most CO2" in one["best_rule"]
    assert (tmp_path / "two" / "sweep.png").stat().st_size > 1000


def test_csv_series_replace_the_bundled_year(capsys, tmp_path: Path) -> None:
    load = tmp_path / "load.csv"
    load.write_text("it_kw\n" + "150\n" * 8760)
    demand = tmp_path / "demand.csv"
    demand.write_text("demand_kw\n" + "0\n" * 8760)
    result = assess(capsys, tmp_path, "--hours", "24", "--load", str(load), "--demand",
                    str(demand), "--grid-co2", "0.1", "--displaced-co2", "0.3")
    figures, = result["results"]
    assert figures["it_energy_mwh"] == pytest.approx(150 * 24 / 1000, rel=0.05)
    assert figures["heat_delivered_mwh"] == pytest.approx(0.0, abs=1e-6)  # nobody buys
    assert figures["co2_avoided_t"] == pytest.approx(co2_avoided_kg(
        0.0, (figures["hp_electricity_mwh"] + figures["fan_electricity_mwh"]) * 1000, 0.3, 0.1
    ) / 1000)
    assert result["factors"]["grid"] == "0.1 kg CO2/kWh"


def test_a_bad_series_file_is_named_with_its_line(capsys, tmp_path: Path) -> None:
    weather = tmp_path / "weather.csv"
    weather.write_text("dry_bulb_c\n1.0\nwarm\n")
    assert heatd_main(["assess", DEMO, "--hours", "1", "--no-progress", "--weather",
                       str(weather), "--out", str(tmp_path)]) == 2
    assert f"{weather}:3: dry_bulb_c: 'warm' is not a number" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["0", "-5", "nan"])
def test_a_step_that_is_not_above_0_is_refused_with_the_arguments(capsys, bad: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        heatd_main(["assess", DEMO, "--hours", "1", "--dt", bad])
    assert exit_.value.code == 2
    assert f"argument --dt: '{bad}' is not a step > 0 in seconds" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["0", "-12000", "nan", "inf", "many"])
def test_a_home_that_takes_no_finite_heat_is_refused_with_the_arguments(
        capsys, bad: str) -> None:
    """homes-equivalent divides by it: nan or inf would print nan or 0 homes."""
    with pytest.raises(SystemExit) as exit_:
        heatd_main(["assess", DEMO, "--hours", "1", "--kwh-per-home", bad])
    assert exit_.value.code == 2
    reason = "is not a number" if bad == "many" else "is not a yearly energy > 0 in kWh"
    assert f"argument --kwh-per-home: '{bad}' {reason}" in capsys.readouterr().err


def test_an_output_folder_that_cannot_be_made_is_refused_before_the_year_runs(
        capsys, tmp_path: Path) -> None:
    """Under a file: one line naming it, exit 2, before the co-simulation (no progress)."""
    (tmp_path / "file").write_text("a file, not a folder")
    out = tmp_path / "file" / "x"
    assert heatd_main(["assess", DEMO, "--hours", "24", "--jobs", "1", "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"heatd assess: {out}: Not a directory\n"


@pytest.mark.slow
def test_a_year_of_the_demo_site(capsys, tmp_path: Path) -> None:
    figures, = assess(capsys, tmp_path, "--jobs", "2")["results"]
    assert [m["month"] for m in figures["months"]][::11] == ["Jan", "Dec"]
    assert figures["hours"] == 8760
    assert figures["supply_over_limit_s"] == 0
    assert figures["erf"] > 0.1 and figures["heat_delivered_mwh"] > 500


def test_a_step_longer_than_the_plants_plc_heartbeat_timeout_is_refused_before_any_run(
        capsys, tmp_path: Path) -> None:
    """At 45 s the PLC would see heatd's heartbeat stand still for a whole step and run
    the plant on local cooling: 0 MWh of heat. Refused in one line naming the largest step
    the plant takes, exit 2, nothing co-simulated (no progress line)."""
    assert heatd_main(["assess", DEMO, "--hours", "24", "--jobs", "1", "--dt", "45",
                       "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "heatd assess: --dt 45: longer than the plant's PLC heartbeat timeout "
        "(plc.heartbeat_timeout_s 30 s), after which the PLC runs the plant on local "
        "cooling with the heat pump off; --dt must be at most 30 s"]
    assert not (tmp_path / "assess.json").exists()


def test_the_longest_step_the_plant_takes_gives_the_heat_of_the_default_step(
        capsys, tmp_path: Path) -> None:
    """30 s, the plant's heartbeat timeout, is the longest accepted step: a little less
    accurate than 10 s, never a different answer."""
    window = ["--hours", "6", "--jobs", "1"]
    fine, = assess(capsys, tmp_path / "fine", *window)["results"]
    coarse, = assess(capsys, tmp_path / "coarse", *window, "--dt", "30")["results"]
    assert fine["heat_delivered_mwh"] > 1.0
    assert coarse["heat_delivered_mwh"] == pytest.approx(fine["heat_delivered_mwh"], rel=0.05)
    assert coarse["drycooler_alone_h"] == pytest.approx(fine["drycooler_alone_h"], abs=0.5)


@pytest.mark.parametrize(("header", "value", "why"), [
    ("it_kw", "400", "it_kw: 400 kW is above the 250 kW the plant's servers draw at full "
                     "load (it.peak_kw of the bundled plant): give a plant sized for this "
                     "site with --plant"),
    ("it_kw", "-100", "it_kw: -100 is below 0"),
    ("cpu_load_fraction", "5", "cpu_load_fraction: 5 is outside 0..1"),
    ("cpu_load_fraction", "-0.1", "cpu_load_fraction: -0.1 is outside 0..1"),
])
def test_a_load_the_plant_cannot_carry_is_refused_with_its_line(
        capsys, tmp_path: Path, header: str, value: str, why: str) -> None:
    """Never clipped to the plant's 250 kW in silence: the row is named, exit 2."""
    load = tmp_path / "load.csv"
    load.write_text(f"{header}\n" + "0.5\n" * 9 + f"{value}\n" + "0.5\n" * 8750)
    assert heatd_main(["assess", DEMO, "--hours", "1", "--no-progress", "--load",
                       str(load), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"heatd assess: {load}:11: {why}\n"


def test_a_site_above_the_bundled_plant_is_assessed_on_a_plant_sized_for_it(
        capsys, tmp_path: Path) -> None:
    """400 kW of IT load, given a plant whose servers draw up to 500 kW: every kW is there."""
    load = tmp_path / "load.csv"
    load.write_text("it_kw\n" + "400\n" * 8760)
    plant = tmp_path / "plant.yaml"
    plant.write_text("it:\n  idle_kw: 200.0\n  peak_kw: 500.0\n")
    figures, = assess(capsys, tmp_path, "--hours", "2", "--jobs", "1", "--load", str(load),
                      "--plant", str(plant))["results"]
    assert figures["it_energy_mwh"] == pytest.approx(400 * 2 / 1000, rel=0.02)


def test_a_negative_demand_is_refused_with_its_line(capsys, tmp_path: Path) -> None:
    demand = tmp_path / "demand.csv"
    demand.write_text("demand_kw\n" + "10\n" * 4 + "-5\n" + "10\n" * 8755)
    assert heatd_main(["assess", DEMO, "--hours", "1", "--no-progress", "--demand",
                       str(demand), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"heatd assess: {demand}:6: demand_kw: -5 is below 0\n"


def test_the_figures_balance_heat_in_the_starting_tank_is_not_delivered(
        capsys, tmp_path: Path) -> None:
    """A run starts from a steady state with a charged tank; what it draws from it is not
    heat the site made. Heat delivered <= IT heat reused + heat-pump electricity (the
    condenser's heat), so ERF <= 1, over the run and in each month of it."""
    figures, = assess(capsys, tmp_path, "--hours", "24", "--jobs", "1")["results"]
    made = figures["it_heat_reused_mwh"] + figures["hp_electricity_mwh"]
    assert figures["stored_heat_drawn_mwh"] > 0.05  # the day empties part of the tank
    assert figures["heat_delivered_mwh"] > 0.9 * made
    assert figures["heat_delivered_mwh"] <= made + 1e-9
    assert figures["heat_delivered_mwh"] <= figures["condenser_heat_mwh"] + 1e-9
    energy_in = (figures["it_energy_mwh"] + figures["hp_electricity_mwh"]
                 + figures["fan_electricity_mwh"])
    assert figures["heat_delivered_mwh"] <= energy_in
    assert figures["erf"] == pytest.approx(figures["heat_delivered_mwh"] / energy_in)
    assert 0.9 < figures["erf"] <= 1.0
    assert all(m["erf"] <= 1.0 for m in figures["months"])


@pytest.mark.parametrize("option", ["--displaced-co2", "--grid-co2"])
@pytest.mark.parametrize("bad", ["nan", "inf", "-1"])
def test_a_factor_that_is_not_a_finite_number_at_least_0_is_refused(
        capsys, option: str, bad: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        heatd_main(["assess", DEMO, "--hours", "1", option, bad])
    assert exit_.value.code == 2
    assert (f"argument {option}: '{bad}' is not a factor >= 0 in kg CO2/kWh"
            in capsys.readouterr().err)
