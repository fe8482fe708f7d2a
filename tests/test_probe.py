"""``heatd probe`` against real servers: it judges every point as ``run`` does (the point's
range, NaN, the control core's plausible range of the role it is bound to), says why a
device is offline, reads the devices at the same time and exits 2 on any bad point."""

from __future__ import annotations

import errno
import io
import struct
from pathlib import Path

import pytest

from heatd.config_loader import parse_site
from heatd.drivers.failures import describe
from heatd.drivers.modbus import Table
from heatd.hil.rig.modbus import SimServer, unit
from heatd.hil.siteports import free_port
from heatd.probe import probe

from opcua_servers import NAMESPACE, make_cert, start_server

SITE = """\
site: {{id: t}}
poll_groups:
  default: {{interval: 0.5}}
devices:
  loop:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {port}
    unit_id: 1
    address_base: 0
    timeout: 0.3
    points:
      supply: {{table: input, address: 0, data_type: float32, unit: degC}}
      inlet: {{table: input, address: 2, data_type: int16, unit: degC, range: [-10, 60]}}
      flow: {{table: input, address: 3, data_type: float32, unit: m3/h}}
      running: {{table: coil, address: 0, data_type: bool}}
  holes:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {port}
    unit_id: 3
    address_base: 0
    timeout: 0.3
    points:
      missing: {{table: holding, address: 5, data_type: uint16}}
  silent:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {port}
    unit_id: 2
    address_base: 0
    timeout: 0.3
    points:
      fault: {{table: coil, address: 0, data_type: bool}}
  gone:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {nobody}
    address_base: 0
    timeout: 0.3
    points:
      power: {{table: input, address: 0, data_type: uint16, unit: kW}}
  line:
    protocol: modbus_rtu
    serial_port: {tty}
    parity: N
    address_base: 0
    timeout: 0.3
    points:
      heat: {{table: input, address: 0, data_type: uint16, unit: kW}}
roles:
  coolant.supply_temp: loop.supply
  rack.inlet_temp: loop.inlet
  coolant.flow: loop.flow
  hp.running: loop.running
"""


def _float_words(value: float) -> list[int]:
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [high, low]


def _rows(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines()]


async def test_probe_judges_like_run_and_names_why_devices_are_offline(tmp_path: Path) -> None:
    server = SimServer([unit(1), unit(2), unit(3, holes=[(0, 20)])])
    await server.start()
    server.faults.silent.add(2)
    # 570 degC has no point range to break, but coolant.supply_temp is plausible only
    # up to 100 degC: run calls it bad, so must the probe
    await server.set(1, Table.INPUT, 0, [*_float_words(570.0), 70, *_float_words(float("nan"))])
    await server.set(1, Table.COIL, 0, [True])
    site = parse_site(SITE.format(port=server.port, nobody=free_port(),
                                  tty=tmp_path / "ttyUSB9"), "site.yaml")
    out = io.StringIO()
    try:
        status = await probe(site, None, out)
    finally:
        await server.stop()
    rows = _rows(out.getvalue())
    assert status == 2
    assert "device loop (modbus_tcp): online" in rows
    assert ("supply 440E 8000 - degC "
            "bad:coolant.supply_temp: out of range: 570 not in [-10, 100]") in rows
    assert "inlet 0046 - degC bad:out of range: 70 not in [-10, 60]" in rows
    assert "flow 7FC0 0000 - m3/h bad:NaN" in rows
    assert "running 0001 True good" in rows
    assert "device holes (modbus_tcp): online (exception 2 illegal data address)" in rows
    assert "missing - - bad:exception 2 illegal data address" in rows
    assert "device silent (modbus_tcp): offline (timeout)" in rows
    assert "device gone (modbus_tcp): offline (connection refused)" in rows
    line = next(r for r in rows if r.startswith("device line"))
    assert line.startswith("device line (modbus_rtu): offline (no such serial port: ")
    assert str(tmp_path / "ttyUSB9") in line


async def test_probe_exits_0_when_every_point_is_good() -> None:
    server = SimServer([unit(1)])
    await server.start()
    await server.set(1, Table.INPUT, 0, [*_float_words(38.5), 22, *_float_words(12.0)])
    text = SITE.format(port=server.port, nobody=0, tty="x").split("  holes:")[0]
    text += "roles:\n  coolant.supply_temp: loop.supply\n"
    site = parse_site(text, "site.yaml")
    out = io.StringIO()
    try:
        status = await probe(site, None, out)
    finally:
        await server.stop()
    assert status == 0, out.getvalue()
    assert "supply 421A 0000 38.5 degC good" in _rows(out.getvalue())


async def test_probe_reports_an_untrusted_certificate_as_the_driver_does(tmp_path: Path) -> None:
    server_cert = make_cert(tmp_path, "server", "urn:heatd:test:server", server=True)
    trusted = make_cert(tmp_path, "client", "urn:heatd:test:client", server=False)
    stranger = make_cert(tmp_path, "stranger", "urn:heatd:test:stranger", server=False)
    server = await start_server(cert=server_cert, trusted_client=trusted)
    site = parse_site(f"""\
site: {{id: t}}
devices:
  hp:
    protocol: opcua
    endpoint: {server.endpoint}
    security_policy: Basic256Sha256
    security_mode: SignAndEncrypt
    certificate: {stranger.certificate}
    private_key: {stranger.private_key}
    application_uri: {stranger.uri}
    server_certificate: {server_cert.certificate}
    timeout: 1.0
    points:
      supply: {{node_id: "ns=2;s=Loop.SupplyTemp"}}
""", "site.yaml")
    out = io.StringIO()
    try:
        status = await probe(site, None, out)
    finally:
        await server.stop()
    assert status == 2
    line = _rows(out.getvalue())[0]
    assert line.startswith("device hp (opcua): offline (")
    # the driver's own words: asyncua's status, or its classification of it
    assert "BadCertificateUntrusted" in line or "client_certificate_untrusted" in line


@pytest.mark.parametrize(("exc", "phrase"), [
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"), "connection refused"),
    (PermissionError(errno.EACCES, "Permission denied", "/dev/ttyS0"),
     "permission denied: /dev/ttyS0"),
    (OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 502, 0, 0), "
             "[Errno 111] Connect call failed ('127.0.0.1', 502)"), "connection refused"),
    (TimeoutError(), "timeout"),
])
def test_connect_failures_are_named(exc: BaseException, phrase: str) -> None:
    assert describe(exc) == phrase


async def test_a_mixed_site_shows_a_read_plan_for_modbus_devices_only() -> None:
    """Modbus and OPC UA devices probed together: each point is read by its own
    protocol's driver, and only the Modbus unit has a read plan."""
    modbus, opcua = SimServer([unit(1)]), await start_server()
    await modbus.start()
    await modbus.set(1, Table.INPUT, 0, [*_float_words(38.5), 22, *_float_words(12.0)])
    text = SITE.format(port=modbus.port, nobody=0, tty="x").split("  holes:")[0]
    text += (f"  plc:\n    protocol: opcua\n    endpoint: {opcua.endpoint}\n"
             f"    mode: polling\n    points:\n"
             f'      supply: {{node_id: "nsu={NAMESPACE};s=Loop.SupplyTemp"}}\n')
    out = io.StringIO()
    try:
        status = await probe(parse_site(text, "site.yaml"), None, out)
    finally:
        await modbus.stop()
        await opcua.stop()
    report = out.getvalue()
    assert status == 0, report
    loop, plc = report.split("device plc (opcua): online\n")
    assert loop.startswith("device loop (modbus_tcp): online\nread plan:\n")
    assert "read plan" not in plc
    assert "unit 1 input" in loop and "unit 1 coil" in loop
    assert "supply 35.5 35.5 Double read/write good" in _rows(plc)


async def test_values_are_printed_in_full_so_a_scale_can_be_checked() -> None:
    """An energy counter's display shows every digit: 12345678.9 kWh must not print as
    1.23457e+07 (which raw 12345679 with scale 1 would print too)."""
    server = SimServer([unit(1)])
    await server.start()
    await server.set(1, Table.INPUT, 0, [
        *divmod(123456789, 0x10000), *divmod(1234567, 0x10000), *divmod(12345679, 0x10000),
        *_float_words(12.345679), *_float_words(0.1)])
    site = parse_site(f"""\
site: {{id: t}}
devices:
  meter:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {server.port}
    address_base: 0
    timeout: 0.3
    points:
      energy: {{table: input, address: 0, data_type: uint32, scale: 0.1, unit: kWh}}
      small: {{table: input, address: 2, data_type: uint32, scale: 0.1, unit: kWh}}
      whole: {{table: input, address: 4, data_type: uint32, scale: 1.0, offset: 0.5}}
      flow: {{table: input, address: 6, data_type: float32, unit: kg/s}}
      tenth: {{table: input, address: 8, data_type: float32, scale: 10}}
""", "site.yaml")
    out = io.StringIO()
    try:
        assert await probe(site, None, out) == 0, out.getvalue()
    finally:
        await server.stop()
    rows = _rows(out.getvalue())
    assert "energy 075B CD15 12345678.9 kWh good" in rows
    assert "small 0012 D687 123456.7 kWh good" in rows  # not 123456.70000000001
    assert "whole 00BC 614F 12345679.5 good" in rows
    assert "flow 4145 87E7 12.345679 kg/s good" in rows  # the float32, not its double
    assert "tenth 3DCC CCCD 1 good" in rows


async def test_opcua_raw_values_are_printed_in_full() -> None:
    """The raw column of an OPC UA point has every digit too, so it can be compared with
    the decoded value beside it: a Double counter 12345678.9 is not 1.23457e+07 and a
    Float is shown to the digits a float32 carries (12.345679, not 12.3457)."""
    server = await start_server()
    await server.set("Loop.SupplyTemp", 12345678.9)
    await server.set("Loop.Flow", 12.345679)
    site = parse_site(f"""\
site: {{id: t}}
devices:
  plc:
    protocol: opcua
    endpoint: {server.endpoint}
    mode: polling
    points:
      energy: {{node_id: "nsu={NAMESPACE};s=Loop.SupplyTemp", unit: kWh}}
      flow: {{node_id: "nsu={NAMESPACE};s=Loop.Flow", scale: 10}}
""", "site.yaml")
    out = io.StringIO()
    try:
        assert await probe(site, None, out) == 0, out.getvalue()
    finally:
        await server.stop()
    rows = _rows(out.getvalue())
    assert "energy 12345678.9 12345678.9 kWh Double read/write good" in rows
    [flow] = [row.split() for row in rows if row.startswith("flow ")]
    assert flow[1] == "12.345679"
