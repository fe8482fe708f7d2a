"""The broker files in config/mosquitto against the real mosquitto: the ACL lets heatd
work and each user do only what it should, the shipped mosquitto.conf serves heatd over
TLS, and the bridge carries state out and commands in."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from heatd.config_loader import parse_site
from heatd.hil.rig.broker import Mosquitto, Recorder
from heatd.hil.rig.waiting import until
from heatd.hil.siteports import free_port
from heatd.mqtt.command_payloads import Command, CommandResult
from heatd.mqtt.link import MqttLink
from heatd.mqtt.settings import MqttSettings

CONFIG = Path(__file__).resolve().parents[1] / "config" / "mosquitto"
SITE = parse_site("""
site: {id: demo, name: ACL demo}
devices:
  loop:
    protocol: opcua
    endpoint: opc.tcp://127.0.0.1:4840
    points:
      supply_temp: {node_id: "ns=2;s=Supply", unit: degC}
roles:
  coolant.supply_temp: loop.supply_temp
""", "demo.yaml")
BASE = "heatd/demo"
USERS = {"heatd": "heatd-pw", "operator": "operator-pw", "reader": "reader-pw"}


class Configured(Mosquitto):
    """mosquitto from a configuration built for its port (the test's logging added)."""

    def __init__(self, build: Callable[[int], str]) -> None:
        super().__init__()
        self.build = build

    def _config(self) -> Path:
        lines = [self.build(self.port), f"log_dest file {self.log}", "log_type all"]
        if os.geteuid() == 0:  # else mosquitto drops to its own user and cannot read our files
            lines.append("user root")
        path = Path(self._dir.name) / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path


def passwd_file(directory: Path) -> Path:
    """A password file for USERS, made the way passwd.example says."""
    path = directory / "passwd"
    for n, (user, password) in enumerate(USERS.items()):
        create = ["-c"] if n == 0 else []
        subprocess.run(["mosquitto_passwd", *create, "-b", str(path), user, password],
                       check=True, capture_output=True)
    assert "heatd-pw" not in path.read_text()  # hashed
    return path


class Runtime:
    def __init__(self) -> None:
        self.calls: list[Command] = []

    async def __call__(self, command: Command) -> CommandResult:
        self.calls.append(command)
        return CommandResult(True, "ok")


def v5_request(response_topic: str, correlation: bytes) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = response_topic
    props.CorrelationData = correlation
    return props


async def heatd_link(broker: Mosquitto, directory: Path, runtime: Runtime,
                     **extra: Any) -> MqttLink:
    (directory / "mqtt-password").write_text(USERS["heatd"] + "\n")
    data = {"host": broker.host, "port": broker.port, "username": "heatd",
            "password_file": str(directory / "mqtt-password"), "reconnect_min": 0.05,
            "reconnect_max": 0.3, **extra}
    link = MqttLink(MqttSettings.model_validate_json(json.dumps(data)), SITE, runtime)
    await link.start()
    await until(lambda: link.connected or link.stats.failures, timeout=10)
    assert link.connected, link.stats.last_error
    return link


def as_user(user: str) -> dict[str, str]:
    return {"username": user, "password": USERS[user]}


# ------------------------------------------------------------------ the ACL


async def test_acl_lets_heatd_and_the_operator_work_and_the_reader_only_read(
    tmp_path: Path,
) -> None:
    passwd = passwd_file(tmp_path)
    broker = Configured(lambda port: "\n".join([
        f"listener {port} 127.0.0.1",
        "persistence false",
        "allow_anonymous false",
        f"password_file {passwd}",
        f"acl_file {CONFIG / 'acl'}",  # the shipped file, unchanged
    ]))
    runtime = Runtime()
    async with broker:
        link = await heatd_link(broker, tmp_path, runtime)
        try:
            async with (Recorder(broker, f"{BASE}/#", **as_user("reader")) as reader,
                        Recorder(broker, f"{BASE}/reply/#", f"{BASE}/cmd/+/response",
                                 **as_user("operator")) as operator):
                await reader.wait(f"{BASE}/status", lambda m: m.payload == b"online")
                # The reader may not command: the broker drops it, heatd never hears it.
                await reader.client.publish(f"{BASE}/cmd/mode", b'{"mode": "safe", "id": "r"}',
                                            qos=1, properties=v5_request(f"{BASE}/reply/r",
                                                                         b"r"))
                # Nor forge heatd's topics; nor may the operator.
                await reader.client.publish(f"{BASE}/status", b"forged", qos=1, retain=True)
                await operator.client.publish(f"{BASE}/cmd/mode/response", b"forged", qos=1)
                # The operator commands, and the answer comes below the reply prefix.
                await operator.client.publish(
                    f"{BASE}/cmd/mode", b'{"mode": "manual", "id": "op"}', qos=1,
                    properties=v5_request(f"{BASE}/reply/op/1", b"corr-op"))
                reply = await operator.wait(f"{BASE}/reply/op/1")
                # heatd itself cannot write outside its tree: the broker says so (v5).
                link.publish("elsewhere/x", b"nope")
                await until(lambda: link.stats.broker_refused == 1)
                await operator.client.publish(  # 3.1.1-style operator, answered too
                    f"{BASE}/cmd/republish", b'{"id": "op2"}', qos=1)
                await operator.wait(f"{BASE}/cmd/republish/response")
        finally:
            await link.stop()
    assert reply.properties.CorrelationData == b"corr-op"
    assert json.loads(reply.payload)["accepted"] is True
    assert [c.id for c in runtime.calls] == ["op"]  # the reader's never arrived
    assert link.stats.commands == 2 and link.stats.refused == 0
    assert not [m for m in reader.seen if m.payload == b"forged"]
    assert not reader.on(f"{BASE}/reply/r")
    assert all(json.loads(m.payload)["id"] != "r" for m in reader.on(f"{BASE}/events"))


# ------------------------------------------------------------------ TLS and the bridge


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throw-away CA, a server certificate for localhost and a client certificate."""
    d = tmp_path_factory.mktemp("certs")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=heatd test CA")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, ext in (("server", ["-extfile", "san.ext"]), ("client", [])):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *ext)
    yield d


def shipped_conf(certs: Path, passwd: Path, local: int, tls: int) -> str:
    """config/mosquitto/mosquitto.conf with its paths and ports pointed at the test's."""
    text = (CONFIG / "mosquitto.conf").read_text()
    swaps = {
        "/etc/mosquitto/passwd": str(passwd),
        "/etc/mosquitto/acl": str(CONFIG / "acl"),
        "/etc/mosquitto/certs/": f"{certs}/",
        "listener 1883 127.0.0.1": f"listener {local} 127.0.0.1",
        "listener 8883": f"listener {tls} 127.0.0.1",
        "persistence true": "persistence false",
        "log_dest syslog": "",
    }
    for old, new in swaps.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


async def test_shipped_mosquitto_conf_serves_heatd_over_tls_and_loopback(
    tmp_path: Path, certs: Path,
) -> None:
    tls_port, passwd = free_port(), passwd_file(tmp_path)
    broker = Configured(lambda port: shipped_conf(certs, passwd, port, tls_port))
    async with broker:
        over_tls = MqttLink(MqttSettings.model_validate_json(json.dumps({
            "host": "localhost", "port": tls_port, "username": "heatd",
            "password_file": str(tmp_path / "pw"), "tls": {"ca": str(certs / "ca.crt")},
            "reconnect_min": 0.05, "reconnect_max": 0.3})), SITE, Runtime())
        (tmp_path / "pw").write_text(USERS["heatd"])
        await over_tls.start()
        try:
            await until(lambda: over_tls.connected or over_tls.stats.failures, timeout=10)
            assert over_tls.connected, over_tls.stats.last_error
            async with Recorder(broker, f"{BASE}/status", **as_user("reader")) as rec:
                await rec.wait(f"{BASE}/status", lambda m: m.payload == b"online")
        finally:
            await over_tls.stop()
        # Loopback needs a password too.
        with pytest.raises(aiomqtt.MqttError):
            async with broker.client():
                pass


async def test_bridge_carries_state_out_and_commands_in(tmp_path: Path, certs: Path) -> None:
    """The shipped bridge.conf between a site broker and a central one (TLS, client
    certificate): heatd's status reaches central, a command from central is answered
    there with its correlation data, and commands do not travel back out."""
    central_tls = free_port()
    central = Configured(lambda port: "\n".join([
        f"listener {port} 127.0.0.1", "persistence false", "allow_anonymous true",
        f"listener {central_tls} 127.0.0.1", f"certfile {certs / 'server.crt'}",
        f"keyfile {certs / 'server.key'}", f"cafile {certs / 'ca.crt'}",
        "require_certificate true"]))
    bridge = (CONFIG / "bridge.conf").read_text()
    for old, new in {"central.example.net:8883": f"localhost:{central_tls}",
                     "/etc/mosquitto/certs/central-ca.crt": str(certs / "ca.crt"),
                     "/etc/mosquitto/certs/bridge-demo.crt": str(certs / "client.crt"),
                     "/etc/mosquitto/certs/bridge-demo.key": str(certs / "client.key")
                     }.items():
        assert old in bridge, old
        bridge = bridge.replace(old, new)
    site = Configured(lambda port: "\n".join([
        f"listener {port} 127.0.0.1", "persistence false", "allow_anonymous true", bridge]))
    runtime = Runtime()
    async with central, site, Recorder(central, "heatd/#", "bridges/#") as rec:
        link = MqttLink(MqttSettings.model_validate_json(json.dumps({
            "host": site.host, "port": site.port, "reconnect_min": 0.05,
            "reconnect_max": 0.3})), SITE, runtime)
        await link.start()
        try:
            await rec.wait(f"{BASE}/status", lambda m: m.payload == b"online",
                           timeout=20)  # the bridge connects in its own time
            await rec.client.publish(
                f"{BASE}/cmd/mode", b'{"mode": "auto", "id": "central"}', qos=1,
                properties=v5_request(f"{BASE}/reply/central", b"corr-central"))
            reply = await rec.wait(f"{BASE}/reply/central")
            await rec.wait(f"{BASE}/events", lambda m: b'"central"' in m.payload)
        finally:
            await link.stop()
        await rec.wait(f"{BASE}/status", lambda m: m.payload == b"offline")
    assert reply.properties.CorrelationData == b"corr-central"
    assert json.loads(reply.payload)["accepted"] is True
    assert [c.id for c in runtime.calls] == ["central"]
    assert len(rec.on(f"{BASE}/cmd/mode")) == 1  # ours, not echoed back by the bridge
    assert not rec.on("bridges/heatd-demo-central/state")  # kept local
