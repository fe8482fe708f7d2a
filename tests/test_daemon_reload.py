"""Reloading the MQTT and meter settings of a running heatd: a changed ``mqtt:`` section
gets a new link, which takes over the old one's topics without a word of ``offline``
(topics it leaves for another base are told ``offline``), a removed device's retained
topics are deleted, and a file whose credentials cannot be read is refused before
anything stops."""

from __future__ import annotations

import asyncio
import copy
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from test_daemon_e2e import DEVICES, all_online, cycles

from heatd.config_loader import load_site
from heatd.drivers.modbus import Table
from heatd.hil.rig.broker import Mosquitto, Recorder, broker_fixture
from heatd.hil.rig.daemon import Stack, running_stack
from heatd.hil.rig.metered_site import metered_site
from heatd.hil.rig.modbus import SimServer, unit
from heatd.hil.rig.waiting import until
from heatd.runtime import Daemon


def edit_site(path: Path, **mqtt: Any) -> None:
    yaml = YAML(typ="rt")
    tree = yaml.load(path.read_text(encoding="utf-8"))
    tree["mqtt"].update(mqtt)
    with path.open("w", encoding="utf-8") as fh:
        yaml.dump(tree, fh)


async def test_reload_command_moves_the_site_to_a_new_base_topic(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await all_online(stack)
        new_base = "plants/north"
        assert stack.client is not None
        await stack.client.subscribe(f"{new_base}/#", qos=1)
        edit_site(stack.site_path, base_topic=new_base)

        reply = await stack.command("reload", {})
        # answered on the old link, which then says offline on its own topics
        assert reply["accepted"] is True, reply
        last = stack.observer.last
        await stack.until(lambda: last.get(stack.topic("status")) == "offline",
                          what="old base offline")
        await stack.until(lambda: last.get(f"{new_base}/status") == "online",
                          what="new base online")
        for device in DEVICES:
            await stack.until(lambda d=device: last.get(f"{new_base}/{d}/availability")
                              == "online", what=f"{device} online on the new base")
        await stack.until(lambda: last.get(f"{new_base}/control/state", {}).get("cycle", {})
                          .get("cycles", 0) > 0, what="control state on the new base")
        old_retained = await stack.retained()
        assert old_retained[stack.topic("status")] == "offline"

        # the new link takes commands on its own topics
        stack.base = new_base
        reply = await stack.command("mode", {"mode": "recovery_off"})
        assert reply["accepted"] is True, reply
        await stack.until(lambda: stack.control().get("mode") == "recovery_off",
                          what="mode on the new link")
        assert stack.proc is not None and stack.proc.poll() is None


def edit_tree(path: Path, change: Any) -> None:
    """``change(tree)`` on the site file's YAML, written back."""
    yaml = YAML(typ="rt")
    tree = yaml.load(path.read_text(encoding="utf-8"))
    change(tree)
    with path.open("w", encoding="utf-8") as fh:
        yaml.dump(tree, fh)


def add_hp_b(tree: Any) -> None:
    """A second OPC UA session to the heat pump's server, reading whether it runs."""
    hp_b = copy.deepcopy(dict(tree["devices"]["heatpump"]))
    hp_b["points"] = {"running": copy.deepcopy(tree["devices"]["heatpump"]["points"]["running"])}
    tree["devices"]["hp_b"] = hp_b


def remove_hp_b_and_refresh(tree: Any) -> None:
    del tree["devices"]["hp_b"]
    tree["mqtt"]["full_refresh"] = 7.0


async def reload_by_signal(stack: Stack) -> dict[str, Any]:
    """SIGHUP, then the ``reload`` event it gives."""
    before = len([e for e in stack.observer.events if e.get("kind") == "reload"])
    stack.signal(signal.SIGHUP)
    events = await stack.until(
        lambda: [e for e in stack.observer.events if e.get("kind") == "reload"][before:],
        what="the reload event")
    assert events[0]["accepted"] is True, events[0].get("problems")
    return dict(events[0])


async def test_reloads_of_every_kind_say_nothing_offline(tmp_path: Path) -> None:
    """A recorder of every message on the site's topics through four reloads: nothing
    changed, a device added, the ``mqtt:`` section changed (a new link on the same
    broker and base, by the MQTT command), and the ``mqtt:`` section changed with the
    device removed. No availability topic and not the site's status ever says
    ``offline``: every device keeps answering. The removed device's retained topics are
    deleted, as Home Assistant expects of a removed entity, never left ``offline``."""
    async with running_stack(tmp_path) as stack:
        await all_online(stack)
        async with Recorder(stack.broker, f"{stack.base}/#") as rec:
            def offline() -> list[str]:
                return [m.topic for m in rec.seen if m.payload == b"offline"]

            def said(topic: str, payload: bytes, after: int) -> bool:
                return any(m.topic == topic and m.payload == payload
                           for m in rec.seen[after:])

            status = stack.topic("status")
            assert (await reload_by_signal(stack)).get("unchanged") is True

            edit_tree(stack.site_path, add_hp_b)
            await reload_by_signal(stack)
            await stack.until(lambda: said(stack.topic("hp_b/availability"), b"online", 0),
                              what="the added device online")
            await stack.until(lambda: cycles(stack) > 0, what="cycles")

            edit_site(stack.site_path, full_refresh=6.0)
            mark = rec.mark()
            reply = await stack.command("reload", {})
            assert reply["accepted"] is True, reply
            await stack.until(lambda: said(status, b"online", mark), what="the new link")
            mark = rec.mark()
            await stack.until(lambda: any(m.topic == stack.topic("control/state")
                                          for m in rec.seen[mark:]), what="control state")
            assert offline() == []

            edit_tree(stack.site_path, remove_hp_b_and_refresh)
            mark = rec.mark()
            await reload_by_signal(stack)
            await stack.until(lambda: said(status, b"online", mark), what="the third link")
            for suffix in ("availability", "state", "last_error"):
                await stack.until(lambda s=suffix: said(stack.topic(f"hp_b/{s}"), b"", mark),
                                  what=f"hp_b/{suffix} deleted")
            mark = rec.mark()
            before = cycles(stack)
            await stack.until(lambda: cycles(stack) > before + 10, what="cycles after")
            assert offline() == []
            retained = await stack.retained()
            assert retained[status] == "online"
            for device in DEVICES:
                assert retained[stack.topic(f"{device}/availability")] == "online", device
            assert not [t for t in retained if "/hp_b/" in t], retained
            info = retained[stack.topic("info")]
            assert "hp_b" not in (info if isinstance(info, dict) else json.loads(info))[
                "devices"]


async def test_reload_with_an_unreadable_password_keeps_the_old_link(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await all_online(stack)
        missing = tmp_path / "no-such-password"
        edit_site(stack.site_path, username="heatd", password_file=str(missing))
        stack.signal(signal.SIGHUP)
        refused = await stack.until(
            lambda: [e for e in stack.observer.events if e.get("kind") == "reload"],
            what="reload event")
        assert refused[0]["accepted"] is False
        assert any(str(missing) in p for p in refused[0]["problems"])
        before = cycles(stack)
        await stack.until(lambda: cycles(stack) > before + 5, what="still publishing")
        assert stack.observer.last.get(stack.topic("status")) == "online"


def test_run_refuses_an_unreadable_password_before_starting(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    missing = tmp_path / "no-such-password"
    site.write_text(
        "site: {id: t}\n"
        "devices: {}\n"
        f"mqtt: {{host: 127.0.0.1, port: 1, username: heatd, password_file: '{missing}'}}\n"
    )
    done = subprocess.run([sys.executable, "-m", "heatd.cli", "run", str(site)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert f"{site}: mqtt.password_file {missing}" in done.stdout + done.stderr


async def test_reload_of_an_unchanged_site_restarts_nothing(tmp_path: Path) -> None:
    """A reload flood must not touch the drivers or the PLC heartbeat: an unchanged file
    is answered "unchanged"; a rotated password file alone is a change."""
    async with running_stack(tmp_path) as stack:
        await all_online(stack)
        flips: list[str] = []
        feed = stack.observer.feed

        def watch(message: Any) -> None:
            if message.topic.value.endswith("/availability"):
                flips.append(message.topic.value)
            feed(message)

        stack.observer.feed = watch  # type: ignore[method-assign]
        for _ in range(3):
            reply = await stack.command("reload", {})
            assert reply["accepted"] is True, reply
            assert reply["reason"].startswith("configuration unchanged") or \
                reply["detail"].get("merged"), reply
        assert "configuration reloaded" not in stack.daemon_log()
        assert flips == []  # no device went offline and back
        unchanged = [e for e in stack.observer.events
                     if e.get("kind") == "reload" and e.get("unchanged")]
        assert unchanged and unchanged[0]["accepted"] is True


broker = broker_fixture()


def closed_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_device_changed_by_a_reload_goes_offline_only_if_it_stops_answering(
        tmp_path: Path, broker: Mosquitto) -> None:
    """The daemon in this process against a real Modbus server and broker. A reload that
    changes the device's timeout restarts its driver, and the device goes on answering:
    its retained availability never says ``offline``. A reload that moves it to a port
    nothing listens on: it stops answering, and says so, with the reason."""
    server = SimServer([unit(1)])
    await server.start()
    await server.set(1, Table.INPUT, 0, [1200, 0, 5000])
    path = tmp_path / "site.yaml"
    path.write_text(metered_site("rl", port=server.port, mqtt=broker.port,
                                 db=tmp_path / "meter.sqlite"))
    daemon = Daemon(path, load_site(path))
    availability, last_error = "heatd/rl/m/availability", "heatd/rl/m/last_error"
    async with Recorder(broker, "heatd/rl/#") as rec:
        task = asyncio.create_task(daemon.run())
        try:
            await rec.wait(availability, lambda m: m.payload == b"online", timeout=15)
            mark = rec.mark()
            path.write_text(path.read_text().replace("timeout: 0.5", "timeout: 0.8"))
            assert (await daemon.reload())[0]
            await until(lambda: daemon.acquisition.polls.get(("m", "default"), 0) >= 20,
                        timeout=15, what="polls of the new driver")
            assert daemon.acquisition.online("m") is True
            assert [m.payload for m in rec.seen[mark:] if m.topic == availability
                    and m.payload != b"online"] == []

            path.write_text(path.read_text().replace(f"port: {server.port}",
                                                     f"port: {closed_port()}"))
            mark = rec.mark()
            assert (await daemon.reload())[0]
            await rec.wait(availability, lambda m: m.payload == b"offline", after=mark,
                           timeout=15)
            error = await rec.wait(last_error, lambda m: bool(m.payload), after=mark)
            assert "refused" in json.loads(error.payload)["error"]
        finally:
            daemon.request_stop()
            assert await asyncio.wait_for(task, 20) == 0
            await server.stop()


async def test_a_reload_leaves_no_gap_in_the_readings_of_devices_it_did_not_change(
        tmp_path: Path) -> None:
    """The daemon in this process against a real Modbus server. A reload that changes a
    control setting (its devices as they were) restarts the drivers, and control never
    sees the IT power unknown on the way: the readings carried over age as they would
    have until the new driver reads again (the new drivers' first, unconnected reads were
    a cycle of ``disconnected``: on a cooling input that is the worst case, a heat pump
    stopped for a configuration edit). A reload that moves the device to a port nothing
    listens on: its reading goes stale on its own max age, as a silent device's would."""
    server = SimServer([unit(1)])
    await server.start()
    await server.set(1, Table.INPUT, 0, [1200, 0, 5000])
    path = tmp_path / "site.yaml"
    path.write_text(metered_site("gap", port=server.port, db=tmp_path / "meter.sqlite"))
    daemon = Daemon(path, load_site(path))
    unknown: list[str] = []
    sampling = True

    async def sample() -> None:
        seen = None
        while sampling:
            d = daemon.last_decision
            if d is not None and d is not seen:
                seen = d
                if "it.power" in d.invalid:
                    unknown.append(d.invalid["it.power"])
            await asyncio.sleep(0.01)

    task = asyncio.create_task(daemon.run())
    sampler: asyncio.Task[None] | None = None
    try:
        await until(lambda: daemon.last_decision is not None
                    and "it.power" not in daemon.last_decision.invalid,
                    timeout=15, what="the IT power read")
        sampler = asyncio.create_task(sample())
        base = path.read_text()
        for delay in (61, 62, 63):  # each a reload that restarts every driver
            path.write_text(base + f"control: {{optimiser: {{stop_delay_s: {delay}}}}}\n")
            assert (await daemon.reload())[0]
            await until(lambda: daemon.acquisition.polls.get(("m", "default"), 0) >= 10,
                        timeout=15, what="polls of the new driver")
        sampling = False
        await sampler
        assert unknown == []

        path.write_text(path.read_text().replace(f"port: {server.port}",
                                                 f"port: {closed_port()}"))
        assert (await daemon.reload())[0]
        await until(lambda: "it.power" in daemon.last_decision.invalid,  # type: ignore[union-attr]
                    timeout=15, what="the IT power unknown")
    finally:
        sampling = False
        if sampler is not None:
            await sampler
        daemon.request_stop()
        assert await asyncio.wait_for(task, 20) == 0
        await server.stop()
