"""Modbus RTU lines served by the simulator: on a pseudo-terminal pair it makes itself, or
on a serial port of its own that the caller names; lines it cannot serve are refused with
the reason, and heatd's own RTU driver reads the served line."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from heatd.config import ModbusRtuDeviceConfig
from heatd.config_loader import load_site, parse_site
from heatd.hil.rig.modbus import pty_pair
from heatd.hil.scenario import Scenario
from heatd.hil.serve import PlantServer, build_scenario
from heatd.hil.siteports import with_free_ports
from heatd.probe import probe

DEMO = Path(__file__).resolve().parent.parent / "config" / "demo-site.yaml"

SITE = """\
site: {{id: rtu}}
devices:
  drycooler:
    protocol: modbus_rtu
    serial_port: {port}
    baudrate: 19200
    parity: {parity}
    unit_id: 3
    address_base: 0
    timeout: 0.5
    points:
      fan_setpoint: {{table: holding, address: 0, data_type: uint16, scale: 0.001,
                     writable: true, write_min: 0, write_max: 1}}
      outdoor_temp: {{table: input, address: 2, data_type: int16, scale: 0.1, unit: degC,
                     range: [-40, 50]}}
"""


def site_on(port: str, parity: str = "N"):
    return parse_site(SITE.format(port=port, parity=parity), "site.yaml")


def ends(port: str) -> tuple[bool, bool]:
    """Whether the site's end and the simulator's end of a pty line are there."""
    return os.path.lexists(port), os.path.lexists(f"{port}.sim")


def winter() -> Scenario:
    return build_scenario("winter_week", 0, None)


def test_free_port_copy_moves_the_serial_line_beside_the_copy(tmp_path: Path) -> None:
    with_free_ports(DEMO, tmp_path / "site.yaml")
    line = load_site(tmp_path / "site.yaml").devices["drycooler"]
    assert isinstance(line, ModbusRtuDeviceConfig)
    assert line.serial_port == str(tmp_path / "site-line1")


async def test_a_pty_line_is_made_served_read_by_heatd_and_removed(tmp_path: Path) -> None:
    port = str(tmp_path / "rs485")
    site = site_on(port)
    server = PlantServer(site, winter(), ptys=True, status_interval_s=1e9)
    async with server:
        assert ends(port) == (True, True)
        out = io.StringIO()
        assert await probe(site, None, out) == 0
        rows = [" ".join(line.split()) for line in out.getvalue().splitlines()]
        assert "device drycooler (modbus_rtu): online" in rows
        outdoor = next(r for r in rows if r.startswith("outdoor_temp "))
        assert outdoor.endswith("degC good")
        served = server.plant.readings([])["outdoor_temp"]
        assert float(outdoor.split()[2]) == pytest.approx(served, abs=0.05)
    assert ends(port) == (False, False)


async def test_a_line_is_served_on_the_port_the_caller_names(tmp_path: Path) -> None:
    async with pty_pair(tmp_path) as (sim_end, heatd_end):
        site = site_on(heatd_end)
        server = PlantServer(site, winter(), serial={heatd_end: sim_end},
                             status_interval_s=1e9)
        assert server.skipped == [] and server.ptys == []
        async with server:
            out = io.StringIO()
            assert await probe(site, None, out) == 0
            assert "device drycooler (modbus_rtu): online" in out.getvalue()


def test_lines_that_cannot_be_served_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="parity N and bytesize 8"):
        PlantServer(site_on(str(tmp_path / "rs485"), parity="E"), winter(), ptys=True)
    with pytest.raises(ValueError, match="not making a pseudo terminal in /dev"):
        PlantServer(site_on("/dev/ttyUSB7"), winter(), ptys=True)
    with pytest.raises(ValueError, match="--serial /dev/ttyS9: no Modbus RTU device"):
        PlantServer(site_on("/dev/ttyUSB7"), winter(), serial={"/dev/ttyS9": "/x"})
    server = PlantServer(site_on("/dev/ttyUSB7"), winter())
    assert server.skipped == ["drycooler (Modbus RTU on /dev/ttyUSB7)"]


async def test_a_pty_is_never_made_over_an_existing_path(tmp_path: Path) -> None:
    taken = tmp_path / "rs485"
    taken.write_text("not a serial port")
    server = PlantServer(site_on(str(taken)), winter(), ptys=True)
    with pytest.raises(OSError, match="exists already"):
        await server.start()
    await server.stop()
    assert taken.read_text() == "not a serial port"


def test_cli_serves_the_demo_rtu_line_with_pty(tmp_path: Path) -> None:
    with_free_ports(DEMO, tmp_path / "site.yaml")
    done = subprocess.run(
        [sys.executable, "-m", "heatd.cli", "hil", "serve", str(tmp_path / "site.yaml"),
         "--speed", "500", "--duration", "300", "--pty"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"Modbus RTU {tmp_path / 'site-line1'}.sim: unit 3 drycooler" in done.stderr
    assert "not served" not in done.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "heatd.cli", "hil", "serve", str(tmp_path / "site.yaml"),
         "--serial", "nonsense"], capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "SITE_PORT=SIM_PORT" in bad.stderr
