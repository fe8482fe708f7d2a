"""A site pays only for the protocols it uses: a Modbus-only site is checked and run with
asyncua impossible to import, and no site's check loads a protocol library at all. Nor
does a site without a meter load SQLite or the metering and billing that write to it.

heatd runs in a subprocess through a wrapper that makes ``import asyncua`` fail (as on a
gateway where it is not installed) and reports, at exit, which protocol libraries, which
of heatd's driver modules and which of its metering modules were loaded."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from asyncua import ua

from heatd.drivers.modbus import Table
from heatd.drivers.opcua.nodeid import check_node_id
from heatd.drivers.opcua.spec import OpcUaPoint
from heatd.hil.rig.broker import Recorder, broker_fixture
from heatd.hil.rig.modbus import SimServer, unit
from heatd.hil.rig.waiting import until

ROOT = Path(__file__).resolve().parent.parent
DEMO_SITE = ROOT / "config" / "demo-site.yaml"

broker = broker_fixture()

WRAPPER = """\
import atexit, json, sys
sys.modules["asyncua"] = None  # any import of asyncua or its submodules raises ImportError

def _report():
    names = [name for name in sys.modules if sys.modules[name] is not None]
    libraries = {name.split(".")[0] for name in names} & {"asyncua", "pymodbus"}
    drivers = [name for name in names if name.startswith("heatd.drivers.")]
    metering = [name for name in names if name.split(".")[0] == "sqlite3"
                or name.startswith(("heatd.billing", "heatd.meter"))]
    with open(REPORT, "w") as fh:
        json.dump({"libraries": sorted(libraries), "drivers": sorted(drivers),
                   "metering": sorted(metering),
                   "heatd": sorted(name for name in names if name.startswith("heatd."))}, fh)

atexit.register(_report)
from heatd.cli import main
sys.exit(main())
"""

MODBUS_SITE = """\
site: {{id: lean}}
poll_groups: {{default: {{interval: 0.2}}}}
devices:
  loop:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {port}
    address_base: 0
    points:
      supply_temp: {{table: holding, address: 0, data_type: int16, scale: 0.1, unit: degC,
                    range: [0, 90]}}
      fan: {{table: holding, address: 10, data_type: uint16, scale: 0.1, unit: "%",
            writable: true, write_min: 0, write_max: 100}}
      heartbeat: {{table: holding, address: 20, data_type: uint16, writable: true}}
roles:
  coolant.supply_temp: loop.supply_temp
  drycooler.fan: loop.fan
  plc.heartbeat: loop.heartbeat
runtime: {{cycle_period: 0.2, stop_timeout: 2.0}}
mqtt: {{host: 127.0.0.1, port: {broker_port}}}
"""


def wrapper(tmp: Path) -> tuple[Path, Path]:
    report = tmp / "loaded.json"
    script = tmp / "no_asyncua.py"
    script.write_text(WRAPPER.replace("REPORT", repr(str(report))))
    return script, report


async def heartbeat_moves(server: SimServer) -> None:
    """Until heatd's writes reach the server: the heartbeat register changes."""
    first = await server.get(1, Table.HOLDING, 20, 1)

    async def moved() -> bool:
        return await server.get(1, Table.HOLDING, 20, 1) != first

    await until(moved, what="a heartbeat write at the server")


def test_check_config_loads_no_protocol_library(tmp_path: Path) -> None:
    """The demo site has an OPC UA device: its node ids are checked without asyncua, and
    neither protocol library is loaded to validate a file, nor any driver module beyond
    what the checks read (Modbus tables and forbidden ranges, codecs, node ids, namespace
    URIs): not the driver's point and device specs."""
    script, report = wrapper(tmp_path)
    done = subprocess.run([sys.executable, str(script), "check-config", str(DEMO_SITE)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert ": ok (site demo" in done.stdout
    loaded = json.loads(report.read_text())
    assert loaded["libraries"] == []
    assert set(loaded["drivers"]) <= {
        "heatd.drivers.reading", "heatd.drivers.codec", "heatd.drivers.modbus",
        "heatd.drivers.modbus.addresses", "heatd.drivers.opcua", "heatd.drivers.opcua.nodeid",
        "heatd.drivers.opcua.namespaces",
    }, loaded["drivers"]


def test_check_config_loads_nothing_of_the_cycle(tmp_path: Path) -> None:
    """The checks convert role values to point units (``heatd.role_units``) without the
    core's snapshot: neither the point image, nor the core's signals, nor the snapshot
    building of ``heatd.role_signals`` is loaded to validate a file."""
    script, report = wrapper(tmp_path)
    done = subprocess.run([sys.executable, str(script), "check-config", str(DEMO_SITE)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(report.read_text())["heatd"])
    assert "heatd.role_units" in loaded
    assert not loaded & {"heatd.points", "heatd.control.signals", "heatd.role_signals"}, loaded


async def test_modbus_only_site_runs_without_asyncua(tmp_path: Path, broker) -> None:
    server = SimServer([unit(1)])
    await server.start()
    try:
        await server.set(1, Table.HOLDING, 0, [412])  # 41.2 degC
        site = tmp_path / "site.yaml"
        site.write_text(MODBUS_SITE.format(port=server.port, broker_port=broker.port))
        script, report = wrapper(tmp_path)
        async with Recorder(broker, "heatd/lean/#") as rec:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(script), "run", str(site),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT)
            try:
                state = await rec.wait("heatd/lean/loop/state",
                                       lambda m: json.loads(m.payload).get("supply_temp")
                                       == pytest.approx(41.2), timeout=30)
                assert json.loads(state.payload)["quality"] == {}
                await rec.wait("heatd/lean/control/state")
                await heartbeat_moves(server)
            finally:
                proc.send_signal(signal.SIGTERM)
                _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, stderr.decode()
        assert b"Traceback" not in stderr
        assert json.loads(report.read_text())["libraries"] == ["pymodbus"]
    finally:
        await server.stop()


async def test_a_site_without_a_meter_audits_commands_without_sqlite(
        tmp_path: Path, broker) -> None:
    """No ``meter:`` section: no meter file, so a command's audit record goes out from
    memory, and neither SQLite nor the meter, its store or billing's records are loaded.
    What the site file's checks read of billing (``contracts:``) may be, and the
    arguments of the ``heatd`` billing commands."""
    server = SimServer([unit(1)])
    await server.start()
    try:
        site = tmp_path / "site.yaml"
        site.write_text(MODBUS_SITE.format(port=server.port, broker_port=broker.port))
        script, report = wrapper(tmp_path)
        async with Recorder(broker, "heatd/lean/#") as rec:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(script), "run", str(site),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT)
            try:
                await rec.wait("heatd/lean/control/state", timeout=30)
                await rec.client.publish("heatd/lean/cmd/mode",
                                         b'{"mode": "auto", "id": "m1"}', qos=1)
                reply = await rec.wait("heatd/lean/cmd/mode/response")
                audit = await rec.wait("heatd/lean/events",
                                       lambda m: json.loads(m.payload).get("id") == "m1")
            finally:
                proc.send_signal(signal.SIGTERM)
                _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, stderr.decode()
        assert b"Traceback" not in stderr
        assert json.loads(reply.payload)["accepted"] is True
        assert json.loads(audit.payload)["kind"] == "command"
        assert json.loads(audit.payload)["accepted"] is True
        metering = json.loads(report.read_text())["metering"]
        assert set(metering) <= {"heatd.billing", "heatd.billing.contracts",
                                 "heatd.billing.points", "heatd.billing.cli"}, metering
    finally:
        await server.stop()


@pytest.mark.parametrize("text", [
    "i=85", "ns=2;s=Loop.SupplyTemp", "ns=3;s=a;b=c", "nsu=urn:vendor:plant;i=1001",
    "nsu=http://example.com/UA/;s=Pump 1", "ns=1;g=09087e75-8e5e-499b-954f-f2a9603db28a",
    "ns=1;b=M/RbKBsRVkePCePcx24oRA==", "ns=1;b=0x0a0b",
])
def test_node_ids_asyncua_reads_are_accepted(text: str) -> None:
    check_node_id(text)
    assert ua.NodeId.from_string(text).Identifier is not None


@pytest.mark.parametrize("text", [
    "", "85", "ns=2", "ns=x;i=1", "ns=70000;i=1", "i=4294967296", "i=12a", "x=1",
    "ns=1;g=not-a-guid", "s=", "nsu=;i=1",
])
def test_malformed_node_ids_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"node id|namespace|numeric"):
        check_node_id(text)
    with pytest.raises(ValueError, match="invalid node id"):
        OpcUaPoint("p", text)
