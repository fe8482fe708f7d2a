"""Reloading the MQTT and meter settings of a running heatd: a changed ``mqtt:`` section
gets a new link, the old topics are told ``offline``, and a file whose credentials cannot
be read is refused before anything stops."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from test_daemon_e2e import DEVICES, all_online, cycles

from heatd.hil.rig.daemon import running_stack


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
