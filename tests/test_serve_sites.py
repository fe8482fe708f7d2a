"""The demo site and the serve command: every role bound to a plant quantity, free-port
copies for tests, serial lines left out unless given a port, and the CLI end to end in a
subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from heatd.config import ModbusTcpDeviceConfig, OpcUaDeviceConfig, SiteConfig
from heatd.config_loader import load_site
from heatd.control.roles import (
    ALL_ROLES,
    DH_SUPPLY_SETPOINT,
    HP_MIN_OFF_ACTIVE,
    INPUT_ROLES,
    OUTPUT_ROLES,
)
from heatd.hil.pointmap import Binding, bind_site, site_devices_of, unbound
from heatd.hil.recorder import TRUTH_FILE
from heatd.hil.sensors import sensor_names
from heatd.hil.serve import PlantServer, build_scenario
from heatd.hil.siteports import with_free_ports

DEMO = Path(__file__).resolve().parent.parent / "config" / "demo-site.yaml"


@pytest.fixture(scope="module")
def demo() -> SiteConfig:
    return load_site(DEMO)


# -- the point map ------------------------------------------------------------------


NOT_MODELLED = frozenset({HP_MIN_OFF_ACTIVE, DH_SUPPLY_SETPOINT})
"""Roles of site hardware the plant model does not have: the heat pump's own
anti-short-cycle timer, a district-heating network that takes a supply setpoint."""


def test_demo_site_binds_every_role_and_every_point(demo: SiteConfig) -> None:
    assert set(demo.roles) == ALL_ROLES - NOT_MODELLED
    bindings = bind_site(demo, set(sensor_names(build_scenario("winter_week", 0, None).params)))
    assert unbound(bindings) == []
    assert {b.actuator for b in bindings.values() if b.role in OUTPUT_ROLES} == {
        "valve_recovery", "hp_enable", "hp_capacity", "hp_reset", "fan_speed", "heartbeat"}
    assert all(b.sensor for b in bindings.values() if b.role in INPUT_ROLES)
    racks = [bindings[ref].sensor for ref in demo.role_points("rack.inlet_temp")]
    assert racks == [f"rack_inlet_temp_{i}" for i in range(1, 13)]
    assert bindings["cdu.valve_actual"].sensor == "valve_position"
    assert bindings["drycooler.fan_power"].sensor == "fan_power"  # bound by its name


def test_percent_points_carry_percent_both_ways(tmp_path: Path) -> None:
    text = DEMO.read_text().replace(
        "valve_setpoint: {table: holding, address: 101, data_type: uint16, scale: 0.001,",
        'valve_setpoint: {table: holding, address: 101, data_type: uint16, scale: 0.1, unit: "%",'
    ).replace("writable: true, write_min: 0, write_max: 1}", "writable: true}", 1)
    (tmp_path / "pct.yaml").write_text(text)
    bindings = bind_site(load_site(tmp_path / "pct.yaml"), set())
    valve = bindings["cdu.valve_setpoint"]
    assert valve.factor == 100.0 and valve.actuator_value(45.0) == pytest.approx(0.45)
    assert bindings["cdu.valve_actual"].served(0.45) == pytest.approx(0.45)  # no unit: fraction
    assert Binding("d", "p", actuator="hp_enable").actuator_value(1) is True
    assert Binding("d", "p", actuator="heartbeat").actuator_value(7.0) == 7


def test_free_port_copy_moves_every_endpoint(demo: SiteConfig, tmp_path: Path) -> None:
    moved = with_free_ports(DEMO, tmp_path / "site.yaml")
    site = load_site(tmp_path / "site.yaml")
    tcp = {d.port for d in site.devices.values() if isinstance(d, ModbusTcpDeviceConfig)}
    assert tcp == {moved[15020]} and moved[15020] != 15020
    copy, original = site.devices["heatpump"], demo.devices["heatpump"]
    assert isinstance(copy, OpcUaDeviceConfig) and isinstance(original, OpcUaDeviceConfig)
    assert copy.endpoint == f"opc.tcp://127.0.0.1:{moved[14840]}/heatd/heatpump"
    assert "# The demo site" in (tmp_path / "site.yaml").read_text()  # comments kept


def test_rtu_lines_without_a_port_or_pty_are_listed_as_not_served(tmp_path: Path) -> None:
    with_free_ports(DEMO.parent / "example-site.yaml", tmp_path / "example.yaml")
    site = load_site(tmp_path / "example.yaml")
    server = PlantServer(site, build_scenario("winter_week", 0, None))
    assert server.skipped == [f"heatpump (Modbus RTU on {tmp_path / 'example-line1'})"]
    assert "heatpump" not in {name for e in server.endpoints for name in e.devices}




def test_cli_serves_the_site_for_the_given_duration(tmp_path: Path) -> None:
    with_free_ports(DEMO, tmp_path / "site.yaml")
    done = subprocess.run(
        [sys.executable, "-m", "heatd.cli", "hil", "serve", str(tmp_path / "site.yaml"),
         "--scenario", "winter_week", "--speed", "500", "--duration", "600",
         "--record", str(tmp_path / "rec")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Modbus TCP 127.0.0.1:" in done.stderr and "unit 5 plc" in done.stderr
    assert "OPC UA opc.tcp://127.0.0.1:" in done.stderr
    assert "supply=" in done.stdout and "fallback=" in done.stdout
    rows = (tmp_path / "rec" / TRUTH_FILE).read_text().splitlines()
    assert float(rows[-1].split(",")[1]) == pytest.approx(600.0)


def test_cli_rejects_a_bad_site(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {id: x}\ndevices: {}\nroles: {valve.recovery: nowhere.point}\n")
    done = subprocess.run(
        [sys.executable, "-m", "heatd.cli", "hil", "serve", str(bad)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 1
    assert f"{bad}:3" in done.stderr


def test_a_plant_device_fault_reaches_the_site_devices_serving_it() -> None:
    example = load_site(DEMO.parent / "example-site.yaml")
    groups = site_devices_of(bind_site(example, set()))
    assert groups["cdu"] == {"loop", "racks"}  # coolant temps on OPC UA, rack inlets on Modbus
    assert groups["pdu"] == {"racks"}
    assert groups["heatpump"] == {"heatpump"}
