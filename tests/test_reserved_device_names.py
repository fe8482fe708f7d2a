"""Device names the MQTT contract keeps for the site's own topics (``meter``, ``cmd``,
``status``, ...): with an ``mqtt:`` section such a name is a mistake in the file, named with
file, line and field by check-config, refused by ``heatd run`` before it starts and by a
reload, which keeps the old configuration publishing."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from test_config import problems_of
from test_daemon_e2e import all_online, cycles

from heatd.config_loader import ConfigError, check_site, parse_site
from heatd.hil.rig.daemon import running_stack

SITE = """\
site: {id: resv}
devices:
  meter:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: 1
    address_base: 0
    points:
      heat_energy: {table: input, address: 0, data_type: uint32, unit: kWh}
roles:
  hp.heat_energy: meter.heat_energy
"""
MQTT = "mqtt: {host: 127.0.0.1, port: 1}\n"
RESERVED = "cmd, control, events, info, meter, reply, stats, status"


def test_a_reserved_device_name_is_named_with_file_line_and_field() -> None:
    assert problems_of(SITE + MQTT) == [
        f"site.yaml:3: devices.meter: 'meter' is reserved on MQTT ({RESERVED}): rename the "
        "device"]
    assert problems_of(SITE.replace("meter", "status") + "mqtt: {port: 0}\n") == [
        "site.yaml:3: devices.status: 'status' is reserved on MQTT "
        f"({RESERVED}): rename the device",
        "site.yaml:12: mqtt.port: 0: Input should be greater than or equal to 1"]
    assert set(parse_site(SITE, "site.yaml").devices) == {"meter"}  # no topics, no clash



def test_a_point_named_like_a_key_of_the_device_state_is_named() -> None:
    """``ts`` and ``quality`` sit beside the points in ``<device>/state``: a point of that
    name overwrote the timestamp or lost its value to the quality map."""
    site = SITE.replace("meter", "hm").replace("heat_energy: {table", "ts: {table")
    site = site.replace("hp.heat_energy: hm.heat_energy", "hp.heat_energy: hm.ts")
    assert problems_of(site + MQTT) == [
        "site.yaml:9: devices.hm.points.ts: 'ts' is a key of the device's MQTT state "
        "(quality, ts): rename the point"]
    assert set(parse_site(site, "site.yaml").devices["hm"].points) == {"ts"}  # no MQTT

def test_check_config_and_run_refuse_it_before_starting(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(SITE + MQTT, encoding="utf-8")
    expected = f"{path}:3: devices.meter: 'meter' is reserved on MQTT"
    checked = subprocess.run([sys.executable, "-m", "heatd.cli", "check-config", str(path)],
                             capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 1 and expected in checked.stdout + checked.stderr
    done = subprocess.run([sys.executable, "-m", "heatd.cli", "run", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert expected in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def rename_device(path: Path, old: str, new: str) -> None:
    """The site file with device ``old`` called ``new``, and its role bindings with it."""
    yaml = YAML(typ="rt")
    tree = yaml.load(path.read_text(encoding="utf-8"))
    devices = CommentedMap((new if k == old else k, v) for k, v in tree["devices"].items())
    tree["devices"] = devices
    for role, refs in tree["roles"].items():
        if isinstance(refs, str) and refs.startswith(f"{old}."):
            tree["roles"][role] = new + refs[len(old):]
        elif not isinstance(refs, str):
            tree["roles"][role] = [new + r[len(old):] if r.startswith(f"{old}.") else r
                                   for r in refs]
    with path.open("w", encoding="utf-8") as fh:
        yaml.dump(tree, fh)


async def test_a_reload_into_a_reserved_name_is_refused_and_keeps_publishing(
    tmp_path: Path,
) -> None:
    async with running_stack(tmp_path) as stack:
        await all_online(stack)
        rename_device(stack.site_path, "dh", "meter")
        with pytest.raises(ConfigError, match=r"devices\.meter: 'meter' is reserved"):
            check_site(stack.site_path)  # the file is wrong, and the daemon must see it
        stack.signal(signal.SIGHUP)
        refused = await stack.until(
            lambda: [e for e in stack.observer.events if e.get("kind") == "reload"],
            what="reload event")
        assert refused[0]["accepted"] is False
        assert any("devices.meter: 'meter' is reserved on MQTT" in p
                   for p in refused[0]["problems"])
        before = cycles(stack)
        await stack.until(lambda: cycles(stack) > before + 5, what="still publishing")
        last = stack.observer.last
        assert last.get(stack.topic("status")) == "online"
        assert last.get(stack.topic("dh/availability")) == "online"  # the old devices
        assert "publishing failed" not in stack.daemon_log()

