"""``heatd report`` from stored records: totals are the sums of the records, the
indicators follow their definitions with every factor named, and without matplotlib the
tables are still written."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from heatd.billing.indicators import (
    DISPLACED_HEAT_KG_PER_KWH,
    GRID_KG_PER_KWH,
    enefg_target,
    read_grid_csv,
)
from heatd.billing.ledger import Ledger
from heatd.cli import main as heatd_main

DAY0 = 1_767_225_600  # 2026-01-01 00:00 UTC


def _records() -> list[dict]:
    """Three days of hours: heat for two contracts, the data centre's own energy."""
    out = []
    for h in range(72):
        start = (DAY0 + h * 3600) * 1000
        head = {"site": "s", "start": start, "end": start + 3_600_000, "downtime_s": 0.0}
        for name, kwh in (("city", 40.0 + h % 5), ("greenhouse", 10.0)):
            out.append({**head, "contract": name, "kind": "heat_purchase", "heat_kwh": kwh,
                        "heat_source": "counter", "heat_coverage": 1.0,
                        "computed_heat_kwh": kwh, "supply_avg_c": 60.0 + h % 12,
                        "return_avg_c": 40.0, "min_supply_c": 65.0,
                        "below_contract_s": 3600.0 if h % 12 < 5 else 0.0,
                        "availability": 0.0 if h % 12 < 5 else 1.0, "committed_kwh": 45.0,
                        "unmet_kwh": max(45.0 - kwh, 0.0),
                        "flags": ["missing"] if h == 3 else [], "counter_end": None})
        out.append({**head, "contract": "cooling", "kind": "cooling_guarantee",
                    "it_kwh": 200.0, "hp_electricity_kwh": 15.0, "fan_electricity_kwh": None,
                    "rack_inlet_class": "A1", "rack_inlet_limit_c": 32.0,
                    "rack_inlet_max_c": 33.0 if h == 10 else 28.0,
                    "rack_over_class_s": 120.0 if h == 10 else 0.0, "supply_limit_c": 45.0,
                    "supply_max_c": 44.0, "supply_over_limit_s": 0.0,
                    "cooling_coverage": 1.0, "flags": [], "counter_end": None})
    return out


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    db = tmp_path / "meter.sqlite"
    store = Ledger(db)
    store.append(_records(), send=False)
    store.close()
    return db


def test_csv_totals_are_the_sums_of_the_records(ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "csv"
    assert heatd_main(["report", "--from", "2026-01-01", "--to", "2026-01-02", "--format",
                       "csv", "--db", str(ledger), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "records-heat.csv").open()))
    assert len(rows) == 2 * 48  # two days of two contracts
    totals = {r["contract"]: r for r in csv.DictReader((out / "totals.csv").open())}
    for name in ("city", "greenhouse"):
        mine = [r for r in rows if r["contract"] == name]
        assert float(totals[name]["heat_kwh"]) == pytest.approx(
            sum(float(r["heat_kwh"]) for r in mine), abs=1e-6)
        assert float(totals[name]["unmet_kwh"]) == pytest.approx(
            sum(float(r["unmet_kwh"]) for r in mine), abs=1e-6)
    months = list(csv.DictReader((out / "months.csv").open()))
    reused = sum(float(r["heat_kwh"]) for r in rows)
    assert float(months[0]["reused_kwh"]) == pytest.approx(reused)
    assert float(months[0]["datacentre_kwh"]) == pytest.approx(48 * 215.0)
    assert float(months[0]["erf"]) == pytest.approx(reused / (48 * 215.0), abs=1e-5)
    co2 = reused * DISPLACED_HEAT_KG_PER_KWH - 48 * 15.0 * GRID_KG_PER_KWH
    assert float(months[0]["co2_avoided_kg"]) == pytest.approx(co2, abs=1e-3)


def test_markdown_names_the_factors_and_embeds_the_figures(ledger: Path, tmp_path: Path
                                                           ) -> None:
    out = tmp_path / "md"
    grid = tmp_path / "grid.csv"
    grid.write_text("hour,kg_per_kwh\n" + "".join(f"{h},0.1\n" for h in range(8760)))
    assert heatd_main(["report", "--from", "2026-01-01", "--to", "2026-01-03", "--contract",
                       "city", "--db", str(ledger), "--out", str(out),
                       "--grid-co2-csv", str(grid), "--displaced-co2", "0.25"]) == 0
    text = (out / "report.md").read_text()
    assert "## Contract city" in text and "## Contract greenhouse" not in text
    assert f"| heat delivered | {sum(40.0 + h % 5 for h in range(72)) / 1000:.3f} MWh |" in text
    assert "| hours below 65 degC | 30.00 h |" in text
    assert "rack inlet over class A1 (32 degC) | 0.033 h in 1 hours" in text
    assert "fans not metered" in text and "ISO/IEC 30134-6" in text
    assert "| **period** | 3.741 | 15.480 | 24.2 % |" in text  # the site's, both contracts
    assert "displaced heat: 0.25 kg CO2/kWh" in text
    assert f"hourly series {grid}" in text
    for png in ("daily-city.png", "duration-city.png", "erf.png"):
        assert f"]({png})" in text and (out / png).stat().st_size > 1000


def test_pdf_has_the_tables_and_the_figures(ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "pdf"
    assert heatd_main(["report", "--from", "2026-01-01", "--to", "2026-01-03", "--format",
                       "pdf", "--db", str(ledger), "--out", str(out)]) == 0
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")


def test_without_matplotlib_one_line_says_so_and_the_tables_are_written(
        ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "bare"
    code = ("import sys; sys.modules['matplotlib'] = None; from heatd.cli import main; "
            f"sys.exit(main(['report', '--from', '2026-01-01', '--to', '2026-01-01', "
            f"'--db', {str(ledger)!r}, '--out', {str(out)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("matplotlib") == 1 and "tables only" in done.stderr
    assert "| heat delivered |" in (out / "report.md").read_text()
    assert not list(out.glob("*.png"))


def test_enefg_targets_and_a_bad_grid_file(tmp_path: Path) -> None:
    from datetime import date

    assert [enefg_target(date(y, m, 1)) for y, m in ((2026, 6), (2026, 7), (2027, 7),
                                                      (2029, 1))] == [None, 0.10, 0.15, 0.20]
    bad = tmp_path / "grid.csv"
    bad.write_text("hour,kg_per_kwh\n0,0.3\n1,x\n")
    with pytest.raises(ValueError, match=r"grid.csv:3"):
        read_grid_csv(bad)
    assert json.dumps(enefg_target(date(2028, 7, 1))) == "0.2"


def test_with_the_site_file_the_report_prices_the_contract(ledger: Path, tmp_path: Path
                                                           ) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(f"""\
site: {{id: s, timezone: Europe/Copenhagen}}
devices: {{}}
mqtt: {{host: localhost}}
meter: {{database: {ledger}}}
contracts:
  heat_purchase:
    - name: city
      customer: City
      min_supply_temp_c: 65
      prices: {{heat_per_mwh: 50, shortfall_per_mwh: 10, currency: DKK}}
""")
    out = tmp_path / "priced"
    assert heatd_main(["report", "--from", "2026-01-01", "--to", "2026-01-02", "--db",
                       str(site), "--out", str(out), "--contract", "city"]) == 0
    text = (out / "report.md").read_text()
    assert "days in Europe/Copenhagen" in text
    rows = [r for r in _records() if r["contract"] == "city"
            and DAY0 - 3600 <= r["start"] / 1000 < DAY0 + 47 * 3600]  # local days
    heat = sum(r["heat_kwh"] for r in rows)
    unmet = sum(r["unmet_kwh"] for r in rows)
    assert f"| heat at 50 DKK/MWh | {heat / 1000 * 50:.2f} DKK |" in text
    assert f"| shortfall at 10 DKK/MWh | {unmet / 1000 * 10:.2f} DKK |" in text


def test_an_output_folder_that_cannot_be_made_is_refused_in_one_line(
        ledger: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    out = tmp_path / "file" / "x"
    assert heatd_main(["report", "--from", "2026-01-01", "--to", "2026-01-02", "--db",
                       str(ledger), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"heatd report: {out}: Not a directory\n"


@pytest.mark.parametrize("option", ["--displaced-co2", "--grid-co2"])
@pytest.mark.parametrize("bad", ["nan", "inf", "-1"])
def test_a_factor_that_is_not_a_finite_number_at_least_0_is_refused(
        ledger: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str,
        bad: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        heatd_main(["report", "--from", "2026-01-01", "--to", "2026-01-03", "--db",
                    str(ledger), "--out", str(tmp_path / "out"), option, bad])
    assert exit_.value.code == 2
    assert (f"argument {option}: '{bad}' is not a factor >= 0 in kg CO2/kWh"
            in capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_the_default_factors_are_named_with_their_source_and_basis(
        ledger: Path, tmp_path: Path) -> None:
    """0.202 kg/kWh is natural gas burnt (per kWh of fuel); the boiler's heat it displaces
    costs more gas than heat, so the default is that over the boiler's efficiency."""
    assert abs(DISPLACED_HEAT_KG_PER_KWH - 0.202 / 0.9) < 5e-4
    out = tmp_path / "md"
    assert heatd_main(["report", "--from", "2026-01-01", "--to", "2026-01-03", "--db",
                       str(ledger), "--out", str(out), "--displaced-co2", "0"]) == 0
    text = (out / "report.md").read_text()
    assert "displaced heat: 0 kg CO2/kWh" in text  # given, even 0, is used
    assert "grid electricity: 0.38 kg CO2/kWh (default: German electricity mix 2023" in text
    assert heatd_main(["report", "--from", "2026-01-01", "--to", "2026-01-03", "--db",
                       str(ledger), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert ("displaced heat: 0.224 kg CO2/kWh (default: a gas boiler's heat, 0.202 kg "
            "CO2/kWh of natural gas (IPCC 2006, net calorific value, combustion only) / 90% "
            "seasonal efficiency)") in text


def test_a_contract_neither_the_records_nor_the_site_file_know_is_refused(
        ledger: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A typo is refused naming the known contracts, exit 2, nothing written; a contract
    the site file lists is reported even before it has records."""
    out = tmp_path / "out"
    argv = ["report", "--from", "2026-01-01", "--to", "2026-01-02", "--out", str(out)]
    assert heatd_main([*argv, "--db", str(ledger), "--contract", "cty"]) == 2
    assert capsys.readouterr().err == (
        "heatd report: --contract 'cty': no such contract (known: city, greenhouse)\n")
    assert not out.exists()
    site = tmp_path / "site.yaml"
    site.write_text(f"""\
site: {{id: s, timezone: Europe/Copenhagen}}
devices: {{}}
mqtt: {{host: localhost}}
meter: {{database: {ledger}}}
contracts:
  heat_purchase:
    - {{name: city, customer: City, min_supply_temp_c: 65}}
    - {{name: school, customer: School, min_supply_temp_c: 60}}
""")
    assert heatd_main([*argv, "--db", str(site), "--contract", "cty"]) == 2
    assert capsys.readouterr().err == ("heatd report: --contract 'cty': no such contract "
                                       "(known: city, greenhouse, school)\n")
    assert heatd_main([*argv, "--db", str(site), "--contract", "school"]) == 0
    assert "## Contract school" in (out / "report.md").read_text()
