"""The MQTT link against a real mosquitto: status and last will, retained state, commands
for v5 and 3.1.1 clients, broker restarts, and Home Assistant discovery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import textwrap
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from heatd.config_loader import parse_site
from heatd.control.state import Mode
from heatd.drivers.reading import Quality, Reading
from heatd.hil.rig.broker import Mosquitto, Recorder, broker_fixture, retained
from heatd.hil.rig.waiting import until
from heatd.mqtt.command_payloads import (
    Command,
    CommandLimits,
    CommandResult,
    ModeCommand,
    OverrideCommand,
    parse,
)
from heatd.mqtt.command_server import COMMAND_BACKLOG
from heatd.mqtt.link import MqttLink
from heatd.mqtt.settings import MqttSettings

broker = broker_fixture()

SITE_YAML = """
site: {id: t1, name: Test site}
devices:
  loop:
    protocol: opcua
    endpoint: opc.tcp://127.0.0.1:4840
    points:
      supply_temp: {node_id: "ns=2;s=Supply", unit: degC, range: [0, 90]}
      flow: {node_id: "ns=2;s=Flow", unit: m3/h}
      valve: {node_id: "ns=2;s=Valve", data_type: float64, unit: "%", writable: true,
              write_min: 0, write_max: 100}
  racks:
    protocol: modbus_tcp
    host: 127.0.0.1
    address_base: 0
    points:
      it_power: {table: input, address: 0, data_type: float32, unit: kW}
      it_energy: {table: input, address: 2, data_type: uint32, unit: kWh}
      status: {table: input, address: 4, data_type: uint16}
      enable: {table: coil, address: 0, data_type: bool, writable: true}
roles:
  coolant.supply_temp: loop.supply_temp
  coolant.flow: loop.flow
  valve.recovery: loop.valve
  it.power: racks.it_power
  it.energy: racks.it_energy
  hp.enable: racks.enable
"""
SITE = parse_site(SITE_YAML, "test-site.yaml")
BASE = "heatd/t1"


class Runtime:
    """Stands in for the daemon's runtime: records commands, refuses overrides above 0.9
    (its own rule, as the real one refuses what the cooling envelope forbids)."""

    def __init__(self) -> None:
        self.calls: list[Command] = []

    async def __call__(self, command: Command) -> CommandResult:
        self.calls.append(command)
        if isinstance(command, OverrideCommand) and command.value is not None \
                and not isinstance(command.value, bool) and command.value > 0.9:
            return CommandResult(False, "beyond the cooling envelope", {"valve_max": 0.9})
        return CommandResult(True, "ok", {"name": command.name})


def settings(b: Mosquitto, **extra: Any) -> MqttSettings:
    data = {"host": b.host, "port": b.port, "reconnect_min": 0.05, "reconnect_max": 0.3,
            "keepalive": 5, **extra}
    return MqttSettings.model_validate_json(json.dumps(data), strict=True)


async def started(b: Mosquitto, runtime: Runtime | None = None, **extra: Any) -> MqttLink:
    link = MqttLink(settings(b, **extra), SITE, runtime or Runtime(), version="9.9.9",
                    config_hash="abc123")
    await link.start()
    await asyncio.wait_for(link.wait_connected(), 10)
    return link


def v5_request(response_topic: str, correlation: bytes) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = response_topic
    props.CorrelationData = correlation
    return props


# ------------------------------------------------------------------ status and info


async def test_status_online_info_retained_and_offline_on_clean_stop(broker: Mosquitto) -> None:
    link = await started(broker)
    try:
        async with Recorder(broker, f"{BASE}/status", f"{BASE}/info") as rec:
            status = await rec.wait(f"{BASE}/status")
            assert status.payload == b"online" and status.retain
            info = json.loads((await rec.wait(f"{BASE}/info")).payload)
        assert info["version"] == "9.9.9" and info["config_hash"] == "abc123"
        assert info["site"] == "t1" and isinstance(info["started"], int)
        assert info["devices"]["loop"]["points"]["valve"] == {"unit": "%", "writable": True}
        assert info["roles"]["valve.recovery"] == ["loop.valve"]
    finally:
        await link.stop()
    assert await retained(broker, f"{BASE}/status") == b"offline"
    assert not link.connected


LINK_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from heatd.config_loader import parse_site
    from heatd.mqtt.command_payloads import CommandResult
    from heatd.mqtt.link import MqttLink
    from heatd.mqtt.settings import MqttSettings

    async def handler(command):
        return CommandResult(True)

    async def main():
        site = parse_site(sys.argv[1], "site.yaml")
        link = MqttLink(MqttSettings.model_validate_json(sys.argv[2]), site, handler)
        await link.start()
        await link.wait_connected()
        print("connected", flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
""")


async def test_last_will_marks_site_offline_when_the_process_dies(broker: Mosquitto) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LINK_SCRIPT, SITE_YAML, settings(broker).model_dump_json(),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        out = proc.stdout

        async def connected() -> None:  # log lines may come first
            while (line := await out.readline()) and line.strip() != b"connected":
                pass
            assert line, "the link process ended before it connected"

        await asyncio.wait_for(connected(), 30)
        async with Recorder(broker, f"{BASE}/status") as rec:
            await rec.wait(f"{BASE}/status", lambda m: m.payload == b"online")
            mark = rec.mark()
            proc.send_signal(signal.SIGKILL)  # no DISCONNECT packet: only the will can tell
            will = await rec.wait(f"{BASE}/status", after=mark)
        assert will.payload == b"offline"
        assert await retained(broker, f"{BASE}/status") == b"offline"
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone already
            proc.kill()
        await proc.wait()


# ------------------------------------------------------------------ device state


async def test_state_is_retained_json_with_numbers_nulls_and_quality(broker: Mosquitto) -> None:
    link = await started(broker)
    try:
        sent = link.publish_readings("racks", {
            "it_power": Reading.good(42.5, 1.0),
            "it_energy": Reading.good(123456, 1.0),
            "enable": Reading.good(True, 1.0),
            "status": Reading.bad("timeout", 1.0),
            "flow_copy": Reading(3.5, Quality.STALE, 1.0, "older than 5 s"),
        }, ts=1_700_000_000.123)
        assert sent
        link.publish_availability("racks", True)
        async with Recorder(broker, f"{BASE}/racks/#") as rec:
            state = await rec.wait(f"{BASE}/racks/state")
            avail = await rec.wait(f"{BASE}/racks/availability")
    finally:
        await link.stop()
    assert state.retain and avail.retain and avail.payload == b"online"
    body = json.loads(state.payload)
    assert body["ts"] == 1_700_000_000_123
    assert body["it_power"] == 42.5 and isinstance(body["it_power"], float)
    assert body["it_energy"] == 123456 and isinstance(body["it_energy"], int)
    assert body["enable"] is True
    assert body["status"] is None
    assert body["flow_copy"] == 3.5
    assert body["quality"] == {"status": "bad:timeout", "flow_copy": "stale:older than 5 s"}


async def test_deadband_suppresses_small_changes_and_refresh_resends(broker: Mosquitto) -> None:
    clock = [1000.0]
    link = MqttLink(
        settings(broker, deadband=0.5, deadbands={"loop.flow": 5.0}, full_refresh=60.0),
        SITE, Runtime(), monotonic=lambda: clock[0])
    await link.start()
    try:
        async with Recorder(broker, f"{BASE}/loop/state", f"{BASE}/events") as rec:
            await link.wait_connected()

            def offer(temp: float, flow: float) -> bool:
                return link.publish_readings("loop", {"supply_temp": Reading.good(temp, 1.0),
                                                      "flow": Reading.good(flow, 1.0)})

            async def states_after_sentinel(n: int) -> list[dict[str, Any]]:
                link.publish_event("sentinel", n=n)  # queued after any pending state
                await rec.wait(f"{BASE}/events", lambda m: json.loads(m.payload)["n"] == n)
                return [json.loads(m.payload) for m in rec.on(f"{BASE}/loop/state")]

            assert offer(30.0, 100.0)
            assert not offer(30.4, 104.0)  # both inside their deadbands
            assert len(await states_after_sentinel(1)) == 1
            assert offer(30.6, 104.0)  # temperature moved beyond 0.5
            states = await states_after_sentinel(2)
            assert [s["supply_temp"] for s in states] == [30.0, 30.6]
            assert states[-1]["flow"] == 104.0  # a sent state carries every current value
            clock[0] += 30
            assert not offer(30.6, 104.0)
            clock[0] += 31  # the full refresh is due: re-sent although nothing moved
            assert offer(30.6, 104.0)
            assert len(await states_after_sentinel(3)) == 3
    finally:
        await link.stop()


# ------------------------------------------------------------------ commands


async def test_v5_command_is_answered_on_response_topic_with_correlation(broker: Mosquitto) -> None:
    runtime = Runtime()
    link = await started(broker, runtime)
    try:
        async with Recorder(broker, f"{BASE}/reply/#") as rec:
            await rec.client.publish(
                f"{BASE}/cmd/mode", json.dumps({"mode": "manual", "ttl": 600}), qos=1,
                properties=v5_request(f"{BASE}/reply/ops/42", b"\x00corr-1"))
            reply = await rec.wait(f"{BASE}/reply/ops/42")
    finally:
        await link.stop()
    assert reply.properties.CorrelationData == b"\x00corr-1"
    body = json.loads(reply.payload)
    assert body["accepted"] is True and body["command"] == "mode"
    assert body["detail"] == {"name": "mode"}
    assert isinstance(body["ts"], int)
    assert runtime.calls == [ModeCommand(mode=Mode.MANUAL, ttl=600.0)]


async def test_v5_response_topic_outside_the_prefix_is_refused_on_the_311_topic(
    broker: Mosquitto,
) -> None:
    """Honouring any response topic would let whoever may command heatd make it publish
    wherever heatd may write; the refusal goes where a 3.1.1 client looks, correlated."""
    runtime = Runtime()
    link = await started(broker, runtime)
    try:
        async with Recorder(broker, "client/#", f"{BASE}/#") as rec:
            await rec.client.publish(
                f"{BASE}/cmd/mode", json.dumps({"mode": "manual", "id": "out"}), qos=1,
                properties=v5_request("client/replies/42", b"corr-out"))
            await rec.client.publish(  # looks like the prefix, is not below it
                f"{BASE}/cmd/mode", json.dumps({"mode": "manual", "id": "near"}), qos=1,
                properties=v5_request(f"{BASE}/replyx/1", b"corr-near"))
            refusals = [await rec.wait(f"{BASE}/cmd/mode/response",
                                       lambda m, i=i: json.loads(m.payload)["id"] == i)
                        for i in ("out", "near")]
    finally:
        await link.stop()
    for refusal, corr in zip(refusals, (b"corr-out", b"corr-near"), strict=True):
        body = json.loads(refusal.payload)
        assert body["accepted"] is False
        assert "refused: replies go only below heatd/t1/reply/" in body["reason"]
        assert refusal.properties.CorrelationData == corr
    assert not [m for m in rec.seen if m.topic.startswith(("client/", f"{BASE}/replyx"))]
    assert runtime.calls == []
    assert link.stats.refused == 2


async def test_configured_response_prefix_outside_the_site_is_honoured(
    broker: Mosquitto,
) -> None:
    link = await started(broker, response_prefix="ops/replies")
    try:
        async with Recorder(broker, "ops/#", f"{BASE}/cmd/+/response") as rec:
            for topic, corr in (("ops/replies/a", b"in"), (f"{BASE}/reply/b", b"default")):
                await rec.client.publish(f"{BASE}/cmd/republish", b"{}", qos=1,
                                         properties=v5_request(topic, corr))
            honoured = await rec.wait("ops/replies/a")
            refused = await rec.wait(f"{BASE}/cmd/republish/response")
    finally:
        await link.stop()
    assert honoured.properties.CorrelationData == b"in"
    assert json.loads(honoured.payload)["accepted"] is True
    assert refused.properties.CorrelationData == b"default"
    assert "below ops/replies/" in json.loads(refused.payload)["reason"]


async def test_311_command_is_answered_on_response_topic_echoing_id(broker: Mosquitto) -> None:
    runtime = Runtime()
    link = await started(broker, runtime)
    response = f"{BASE}/cmd/override/response"
    try:
        async with Recorder(broker, response, protocol=aiomqtt.ProtocolVersion.V311) as rec:
            for id_, value in (("r1", 0.5), ("r2", 0.95)):
                await rec.client.publish(f"{BASE}/cmd/override", json.dumps(
                    {"id": id_, "role": "valve.recovery", "value": value, "ttl": 60}), qos=1)
            ok = json.loads((await rec.wait(response, lambda m: b'"r1"' in m.payload)).payload)
            no = json.loads((await rec.wait(response, lambda m: b'"r2"' in m.payload)).payload)
    finally:
        await link.stop()
    assert ok["id"] == "r1" and ok["accepted"] is True
    assert no["id"] == "r2" and no["accepted"] is False
    assert no["reason"] == "beyond the cooling envelope" and no["detail"] == {"valve_max": 0.9}
    assert [c.value for c in runtime.calls if isinstance(c, OverrideCommand)] == [0.5, 0.95]


async def test_311_command_with_a_numeric_id_is_carried_out_and_answered_with_that_number(
        broker: Mosquitto) -> None:
    """JSON-RPC clients send integer ids: carried out, answered with the number as it came
    (it was refused, and the refusal said ``"id": null``), up to 64-bit magnitude exactly
    (2^53 + 1 is no double). An id no command may carry is refused, echoed when it is
    bounded (4.5, text cut to 128 characters), never when it is an object, a bool or a
    number beyond 64 bits."""
    runtime = Runtime()
    link = await started(broker, runtime)
    response = f"{BASE}/cmd/mode/response"
    sent: list[Any] = [4, 0, 2**53 + 1, -(2**64 - 1), 4.5, {"a": [1, 2]}, 2**64, 10**30,
                       True, "x" * 300]
    try:
        async with Recorder(broker, response, protocol=aiomqtt.ProtocolVersion.V311) as rec:
            for id_ in sent:
                await rec.client.publish(f"{BASE}/cmd/mode",
                                         json.dumps({"mode": "auto", "id": id_}), qos=1)
            await until(lambda: len(rec.on(response)) == len(sent), what="every answer")
    finally:
        await link.stop()
    answers = [json.loads(m.payload) for m in rec.on(response)]
    expected = [(4, True), (0, True), (2**53 + 1, True), (-(2**64 - 1), True), (4.5, False),
                (None, False), (None, False), (None, False), (None, False), ("x" * 128, False)]
    assert sorted(repr((a["id"], a["accepted"])) for a in answers) == sorted(map(repr, expected))
    assert all(a["reason"].startswith("id: must be text of at most 128 characters")
               for a in answers if not a["accepted"])
    assert [c.id for c in runtime.calls] == [4, 0, 2**53 + 1, -(2**64 - 1)]


async def test_invalid_payload_is_refused_with_reason_and_never_reaches_handler(
    broker: Mosquitto,
) -> None:
    runtime = Runtime()
    link = await started(broker, runtime)
    try:
        async with Recorder(broker, f"{BASE}/cmd/+/response") as rec:
            bad = [
                ("mode", {"id": "b1", "mode": "turbo"}, "mode: 'turbo' is not one of auto"),
                ("override", {"id": "b2", "role": "valve.recovery", "value": "0.5", "ttl": 60},
                 "value"),
                ("override", {"id": "b3", "point": "loop.valve", "value": 150, "ttl": 60},
                 "above write_max 100"),
                ("override", {"id": "b4", "role": "valve.recovery", "value": 0.5,
                              "ttl": 99999}, "exceeds the longest allowed lease"),
                ("reload", {"id": "b5", "force": True}, "force: Extra inputs are not permitted"),
                ("launch", {"id": "b6"}, "unknown command 'launch'"),
            ]
            for name, payload, _ in bad:
                await rec.client.publish(f"{BASE}/cmd/{name}", json.dumps(payload), qos=1)
            await rec.client.publish(f"{BASE}/cmd/mode", b"{not json", qos=1)
            for name, payload, reason in bad:
                reply = await rec.wait(f"{BASE}/cmd/{name}/response",
                                       lambda m, i=payload["id"]: json.loads(m.payload)["id"] == i)
                body = json.loads(reply.payload)
                assert body["accepted"] is False
                assert reason in body["reason"], body["reason"]
            broken = await rec.wait(f"{BASE}/cmd/mode/response",
                                    lambda m: json.loads(m.payload)["id"] is None)
            assert "Invalid JSON" in json.loads(broken.payload)["reason"]
    finally:
        await link.stop()
    assert runtime.calls == []
    assert link.stats.refused == 7


async def test_retained_command_ignored_and_every_command_audited(broker: Mosquitto) -> None:
    """A retained command is a stale order: one planted before heatd connects is never
    delivered (retain handling 2), one retained while heatd listens arrives flagged
    (retain as published) and is audited as ignored; neither is carried out."""
    runtime = Runtime()
    async with broker.client() as planter:  # a stale retained command waits on the broker
        await planter.publish(f"{BASE}/cmd/mode", b'{"mode": "safe", "id": "old"}', qos=1,
                              retain=True)
    async with Recorder(broker, f"{BASE}/events", f"{BASE}/cmd/+/response") as rec:
        link = await started(broker, runtime)
        try:
            for payload in (b'{"mode": "auto", "id": "c1"}', b'{"mode": "nope", "id": "c2"}'):
                await rec.client.publish(f"{BASE}/cmd/mode", payload, qos=1)
            await rec.client.publish(f"{BASE}/cmd/mode", b'{"mode": "safe", "id": "live"}',
                                     qos=1, retain=True)
            await rec.client.publish(f"{BASE}/cmd/override", json.dumps(
                {"id": "c3", "role": "valve.recovery", "value": 1.0, "ttl": 5}), qos=1)
            await rec.client.publish(f"{BASE}/cmd/republish", b'{"id": "c4"}', qos=1)
            await rec.wait(f"{BASE}/events", lambda m: b'"c4"' in m.payload)
        finally:
            await link.stop()
    # Refusals are audited at once, ahead of valid commands still waiting their turn.
    audit = {a["id"]: a for a in (json.loads(m.payload) for m in rec.on(f"{BASE}/events"))}
    assert all(a["kind"] == "command" and isinstance(a["ts"], int) for a in audit.values())
    summary = sorted((a["id"], a["command"], a["accepted"]) for a in audit.values())
    assert summary == [("c1", "mode", True), ("c2", "mode", False), ("c3", "override", False),
                       ("c4", "republish", True), ("live", "mode", False)]
    assert audit["live"]["reason"] == "retained command ignored"
    assert "live" in audit["live"]["payload"]
    assert audit["c1"]["args"] == {"by": None, "mode": "auto", "ttl": None}
    assert audit["c3"]["reason"] == "beyond the cooling envelope"
    assert len(rec.on(f"{BASE}/events")) == 5
    replies = [json.loads(m.payload)["id"] for m in rec.seen if m.topic.endswith("/response")]
    assert sorted(replies) == ["c1", "c2", "c3", "c4"]  # no reply to a retained one
    assert [c.id for c in runtime.calls] == ["c1", "c3"]  # republish is the link's own
    assert link.stats.commands == 5 and link.stats.refused == 3


# ------------------------------------------------------------------ broker outages


async def test_broker_restart_reconnects_resubscribes_and_republishes(broker: Mosquitto) -> None:
    runtime = Runtime()
    # a fixed 2 s backoff: after each refused attempt the link waits at least 1 s (jitter)
    link = await started(broker, runtime, reconnect_min=2.0, reconnect_max=2.0, queue_size=5)
    try:
        link.publish_readings("loop", {"supply_temp": Reading.good(31.0, 1.0)})
        link.publish_control_state({"mode": "auto", "setpoints": {"valve.recovery": 0.4}})
        async with Recorder(broker, f"{BASE}/control/state") as rec:
            await rec.wait(f"{BASE}/control/state")
        await broker.kill()
        await until(lambda: not link.connected, poll=0.01)
        # The broker is gone: publishing is a plain call that neither awaits nor fails.
        assert link.publish_readings("loop", {"supply_temp": Reading.good(35.0, 2.0)}) is True
        assert link.publish_control_state({"mode": "manual"}) is None
        for n in range(8):
            assert link.publish_event("alarm", n=n) is None
        assert link.stats.dropped == 3  # the oldest three: the queue holds five
        assert link.stats.dropped_by_kind == {"reply": 0, "audit": 0, "event": 3, "other": 0}
        await until(lambda: link.stats.failures >= 1)  # the lost connection
        refused = link.stats.failures
        # Right after a refused attempt the link pauses at least 1 s: time enough for the
        # broker to come back and the observer to subscribe before the queued events go
        # out (they are not retained: an observer arriving later would never see them).
        await until(lambda: link.stats.failures > refused, timeout=10)
        await broker.start()  # same port, empty retained store
        async with Recorder(broker, f"{BASE}/#") as rec:
            await asyncio.wait_for(link.wait_connected(), 10)
            await rec.wait(f"{BASE}/events", lambda m: json.loads(m.payload).get("n") == 7)
            await rec.client.publish(f"{BASE}/cmd/reload", b'{"id": "after"}', qos=1,
                                     properties=v5_request(f"{BASE}/reply/x", b"1"))
            reply = json.loads((await rec.wait(f"{BASE}/reply/x")).payload)
    finally:
        await link.stop()
    assert reply["accepted"] is True and reply["id"] == "after"
    assert link.stats.connects == 2
    events = [json.loads(m.payload) for m in rec.on(f"{BASE}/events")]
    assert [e["n"] for e in events if e["kind"] == "alarm"] == [3, 4, 5, 6, 7]
    republished = {m.topic: m.payload for m in rec.seen if m.retain}
    assert republished[f"{BASE}/status"] == b"online"
    assert json.loads(republished[f"{BASE}/loop/state"])["supply_temp"] == 35.0
    assert json.loads(republished[f"{BASE}/control/state"])["mode"] == "manual"
    assert f"{BASE}/info" in republished


async def test_publish_never_waits_while_broker_is_unreachable() -> None:
    dead = Mosquitto()  # never started: its port refuses connections
    link = MqttLink(settings(dead), SITE, Runtime())
    await link.start()
    try:
        for name in ("publish", "publish_readings", "publish_event", "publish_control_state",
                     "publish_availability", "republish"):
            assert not asyncio.iscoroutinefunction(getattr(link, name)), name
        for n in range(50):  # no await in between: the loop never ran the link task
            link.publish_event("e", n=n)
            link.publish_readings("loop", {"flow": Reading.good(float(n), 1.0)})
        await until(lambda: link.stats.failures >= 1)
        assert not link.connected
    finally:
        await link.stop(timeout=2)


async def test_a_command_flood_cannot_push_the_sites_events_out_of_the_queue() -> None:
    dead = Mosquitto()  # never started: everything waits in the queues
    link = MqttLink(settings(dead, queue_size=5), SITE, Runtime())
    await link.start()
    try:
        for n in range(3):
            link.publish_event("alarm", n=n)
        for n in range(50):
            link.take("mode", json.dumps({"mode": "auto", "id": str(n)}).encode())
        await until(lambda: link.stats.commands == 50)
        lost = link.stats.dropped_by_kind  # 100 answers (reply, audit) for 5 places
        assert lost["reply"] + lost["audit"] == 95 and lost["event"] == 0
    finally:
        await link.stop(timeout=1)


async def test_password_from_credentials_directory(tmp_path, monkeypatch) -> None:
    (tmp_path / "mqtt-password").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    async with Mosquitto(users={"heatd": "s3cret"}) as b:
        good = await started(b, username="heatd",
                             password_file="${CREDENTIALS_DIRECTORY}/mqtt-password")
        await good.stop()
        (tmp_path / "wrong").write_text("guess")
        bad = MqttLink(settings(b, username="heatd", password_file=str(tmp_path / "wrong")),
                       SITE, Runtime())
        await bad.start()
        try:
            await until(lambda: bad.stats.failures >= 2)  # refused, and it keeps trying
            assert not bad.connected and "authori" in (bad.stats.last_error or "").lower()
        finally:
            await bad.stop()


# ------------------------------------------------------------------ Home Assistant


async def test_homeassistant_discovery_content_and_resend_on_birth(broker: Mosquitto) -> None:
    topic = "homeassistant/device/heatd_t1/config"
    link = await started(broker, homeassistant={"discovery": True, "override_ttl": 600})
    try:
        async with Recorder(broker, topic) as rec:
            first = await rec.wait(topic)
            mark = rec.mark()
            await rec.client.publish("homeassistant/status", b"online", qos=1)
            await rec.wait(topic, after=mark)
    finally:
        await link.stop()
    assert first.retain
    doc = json.loads(first.payload)
    assert doc["dev"]["ids"] == ["heatd_t1"] and doc["dev"]["name"] == "Test site"
    assert doc["o"]["name"] == "heatd"
    cmps = doc["cmps"]
    expect = {
        "loop_supply_temp": ("sensor", "temperature", "°C", "measurement"),
        "loop_flow": ("sensor", "volume_flow_rate", "m³/h", "measurement"),
        "racks_it_power": ("sensor", "power", "kW", "measurement"),
        "racks_it_energy": ("sensor", "energy", "kWh", "total_increasing"),
    }
    for key, (platform, device_class, unit, state_class) in expect.items():
        c = cmps[key]
        assert (c["p"], c["device_class"], c["unit_of_measurement"], c["state_class"]) == (
            platform, device_class, unit, state_class), key
    temp = cmps["loop_supply_temp"]
    assert temp["state_topic"] == f"{BASE}/loop/state"
    assert temp["value_template"] == "{{ value_json['supply_temp'] }}"
    assert temp["availability_mode"] == "all"
    assert [a["topic"] for a in temp["availability"]] == [f"{BASE}/status",
                                                          f"{BASE}/loop/availability"]
    assert cmps["racks_enable"]["p"] == "binary_sensor"
    assert "state_class" not in cmps["racks_status"]

    mode = cmps["mode"]
    assert mode["p"] == "select" and mode["options"] == ["auto", "recovery_off", "manual", "safe"]
    assert [a["topic"] for a in mode["availability"]] == [f"{BASE}/status"]
    limits = CommandLimits.from_site(SITE, max_ttl=3600)
    chosen = mode["command_template"].replace("{{ value }}", "recovery_off")
    assert parse("mode", chosen.encode(), limits) == ModeCommand(
        mode=Mode.RECOVERY_OFF, by="homeassistant")

    number = cmps["loop_valve_override"]
    assert number["p"] == "number" and (number["min"], number["max"]) == (0.0, 100.0)
    assert number["command_topic"] == f"{BASE}/cmd/override"
    sent = parse("override", number["command_template"].replace("{{ value }}", "37.5").encode(),
                 limits)
    assert isinstance(sent, OverrideCommand)
    assert (sent.point, sent.role, sent.value, sent.ttl) == ("loop.valve", "valve.recovery",
                                                              37.5, 600.0)
    assert not any(c["p"] == "number" for k, c in cmps.items() if k.startswith("racks_enable"))


async def test_reloaded_site_updates_info_and_deletes_vanished_devices(broker: Mosquitto) -> None:
    link = await started(broker)
    head = SITE_YAML.split("  racks:", 1)[0]
    smaller = parse_site(head + "roles:\n  valve.recovery: loop.valve\n", "smaller.yaml")
    try:
        link.publish_readings("racks", {"it_power": Reading.good(1.0, 1.0)})
        link.publish_availability("racks", True)
        async with Recorder(broker, f"{BASE}/racks/state") as rec:
            await rec.wait(f"{BASE}/racks/state")
        assert await retained(broker, f"{BASE}/racks/state") is not None
        link.set_site(smaller, config_hash="new")
        async with Recorder(broker, f"{BASE}/info") as rec:
            info = json.loads((await rec.wait(
                f"{BASE}/info", lambda m: json.loads(m.payload)["config_hash"] == "new")).payload)
        assert list(info["devices"]) == ["loop"]
        assert await retained(broker, f"{BASE}/racks/state", timeout=0.5) is None
        assert await retained(broker, f"{BASE}/racks/availability", timeout=0.5) is None
    finally:
        await link.stop()


class Blocked(Runtime):
    """A runtime whose handler waits until released (a reload that takes its time)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.called = asyncio.Event()
        self.done = asyncio.Event()
        self.finished: list[str | None] = []

    async def __call__(self, command: Command) -> CommandResult:
        self.calls.append(command)
        self.called.set()
        await self.release.wait()
        self.finished.append(command.id)
        self.done.set()
        return CommandResult(True, "done")


async def test_slow_handler_is_answered_late_but_never_cancelled(broker: Mosquitto) -> None:
    runtime = Blocked()
    link = MqttLink(settings(broker), SITE, runtime, handler_timeout=0.2)
    await link.start()
    try:
        await link.wait_connected()
        async with Recorder(broker, f"{BASE}/cmd/reload/response") as rec:
            await rec.client.publish(f"{BASE}/cmd/reload", b'{"id": "slow"}', qos=1)
            reply = json.loads((await rec.wait(f"{BASE}/cmd/reload/response")).payload)
            assert reply["accepted"] is False and "no answer within 0.2 s" in reply["reason"]
            runtime.release.set()
            await asyncio.wait_for(runtime.done.wait(), 5)
        assert runtime.finished == ["slow"]
    finally:
        await link.stop()


async def test_stop_lets_the_command_in_progress_answer_first(broker: Mosquitto) -> None:
    """A reload that replaces the link stops it while the reload command is still being
    carried out; its answer must still go out, before ``offline``."""
    runtime = Blocked()
    link = await started(broker, runtime)
    response = f"{BASE}/cmd/reload/response"
    async with Recorder(broker, response, f"{BASE}/status") as rec:
        await rec.client.publish(f"{BASE}/cmd/reload", b'{"id": "swap"}', qos=1)
        await asyncio.wait_for(runtime.called.wait(), 5)
        stopping = asyncio.create_task(link.stop())
        await asyncio.sleep(0.3)  # the handler is still busy: stop must wait for it
        assert not stopping.done()
        runtime.release.set()
        await asyncio.wait_for(stopping, 10)
        reply = json.loads((await rec.wait(response)).payload)
        await rec.wait(f"{BASE}/status", lambda m: m.payload == b"offline")
    assert reply["id"] == "swap" and reply["accepted"] is True
    order = [m.topic for m in rec.seen if m.topic == response or m.payload == b"offline"]
    assert order == [response, f"{BASE}/status"]


async def test_commands_beyond_the_backlog_are_refused_as_busy(broker: Mosquitto) -> None:
    runtime = Blocked()  # a rate limit far above the flood: only the backlog refuses
    link = await started(broker, runtime, command_rate=1000.0, command_burst=1000)
    try:
        async with Recorder(broker, f"{BASE}/cmd/mode/response") as rec:
            for n in range(80):  # one in the handler, a bounded backlog, the rest refused
                await rec.client.publish(f"{BASE}/cmd/mode", json.dumps(
                    {"mode": "auto", "id": str(n)}), qos=1)
            expected = 80 - 1 - COMMAND_BACKLOG
            await until(lambda: len(rec.seen) == expected)  # nothing drains: all refused
            busy = [json.loads(m.payload) for m in rec.seen]
            assert all(b["accepted"] is False and b["reason"].startswith("busy") for b in busy)
            assert [int(b["id"]) for b in busy] == list(range(80 - expected, 80))
            runtime.release.set()
            await rec.wait(f"{BASE}/cmd/mode/response",
                           lambda m: json.loads(m.payload)["reason"] == "done")
    finally:
        await link.stop()
    assert runtime.calls[0].id == "0"
    assert link.stats.busy == expected and link.stats.rate_limited == 0


async def test_response_topic_inside_the_site_tree_is_not_honoured(broker: Mosquitto) -> None:
    runtime = Runtime()
    link = await started(broker, runtime)
    try:
        async with Recorder(broker, f"{BASE}/cmd/#") as rec:
            # honoured, the reply would arrive as a new (invalid) command, and so on
            await rec.client.publish(f"{BASE}/cmd/mode", b'{"mode": "auto", "id": "loop"}', qos=1,
                                     properties=v5_request(f"{BASE}/cmd/mode", b"x"))
            reply = await rec.wait(f"{BASE}/cmd/mode/response")
            # A looped-back reply would reach the link before this second command does.
            await rec.client.publish(f"{BASE}/cmd/mode", b'{"mode": "auto", "id": "next"}',
                                     qos=1)
            await rec.wait(f"{BASE}/cmd/mode/response", lambda m: b'"next"' in m.payload)
    finally:
        await link.stop()
    refusal = json.loads(reply.payload)
    assert refusal["id"] == "loop" and refusal["accepted"] is False
    assert "response topic 'heatd/t1/cmd/mode' refused" in refusal["reason"]
    assert [m.topic.rsplit("/", 1)[-1] for m in rec.seen] == [
        "mode", "response", "mode", "response"]
    assert link.stats.commands == 2 and link.stats.refused == 1
    assert [c.id for c in runtime.calls] == ["next"]
    with pytest.raises(ValueError, match="cannot publish"):
        link.publish("heatd/+/x", b"")


# ------------------------------------------------------------------ hardening


async def test_rate_limit_answers_rate_limited_beyond_the_burst(broker: Mosquitto) -> None:
    runtime = Runtime()
    link = await started(broker, runtime, command_rate=0.1, command_burst=3)
    try:
        async with Recorder(broker, f"{BASE}/cmd/+/response") as rec:
            for n in range(6):
                await rec.client.publish(f"{BASE}/cmd/mode", json.dumps(
                    {"mode": "auto", "id": f"m{n}"}), qos=1)
            await rec.client.publish(f"{BASE}/cmd/override", json.dumps(  # its own bucket
                {"id": "o", "role": "valve.recovery", "value": 0.2, "ttl": 9}), qos=1)
            await rec.wait(f"{BASE}/cmd/override/response")
            await until(lambda: len(rec.on(f"{BASE}/cmd/mode/response")) == 6)
    finally:
        await link.stop()
    answers = {b["id"]: b for b in (json.loads(m.payload) for m in rec.seen)}
    assert [answers[f"m{n}"]["accepted"] for n in range(6)] == [True] * 3 + [False] * 3
    assert answers["m5"]["reason"].startswith("rate limited: at most 0.1 commands a second")
    assert answers["o"]["accepted"] is True
    assert [c.id for c in runtime.calls] == ["m0", "m1", "m2", "o"]
    assert link.stats.rate_limited == 3


async def test_every_device_is_offline_after_a_clean_stop(broker: Mosquitto) -> None:
    link = await started(broker)
    link.publish_availability("loop", True)  # racks never reported: offline all the same
    async with Recorder(broker, f"{BASE}/loop/availability") as rec:
        await rec.wait(f"{BASE}/loop/availability", lambda m: m.payload == b"online")
    await link.stop()
    for device in SITE.devices:
        assert await retained(broker, f"{BASE}/{device}/availability") == b"offline", device
    assert await retained(broker, f"{BASE}/status") == b"offline"


async def test_nan_override_is_refused_at_validation_and_never_reaches_handler(
    broker: Mosquitto,
) -> None:
    runtime = Runtime()
    link = await started(broker, runtime)
    try:
        async with Recorder(broker, f"{BASE}/cmd/override/response") as rec:
            for id_, value in (("nan", b"NaN"), ("inf", b"Infinity"), ("ninf", b"-Infinity")):
                await rec.client.publish(
                    f"{BASE}/cmd/override", b'{"id": "' + id_.encode()
                    + b'", "role": "valve.recovery", "value": ' + value + b', "ttl": 60}',
                    qos=1)
            await until(lambda: len(rec.seen) == 3)
    finally:
        await link.stop()
    for body in (json.loads(m.payload) for m in rec.seen):
        assert body["accepted"] is False and body["id"] in ("nan", "inf", "ninf")
        assert body["reason"] == "value: must be a finite number (not NaN or Infinity)"
    assert runtime.calls == []


class Faulty(Runtime):
    """A runtime with bugs: it raises, answers with a detail that is not JSON, or
    returns something that is not a CommandResult."""

    async def __call__(self, command: Command) -> CommandResult:
        self.calls.append(command)
        if command.id == "raise":
            raise KeyError("oops")
        if command.id == "detail":
            return CommandResult(True, "ok", {"when": object()})
        if command.id == "none":
            return None  # type: ignore[return-value]
        return CommandResult(True, "fine")


async def test_a_buggy_handler_is_answered_once_and_the_worker_carries_on(
    broker: Mosquitto,
) -> None:
    runtime = Faulty()
    link = await started(broker, runtime)
    ids = ["raise", "detail", "none", "after"]
    try:
        async with Recorder(broker, f"{BASE}/cmd/mode/response", f"{BASE}/events") as rec:
            for id_ in ids:
                await rec.client.publish(f"{BASE}/cmd/mode", json.dumps(
                    {"mode": "auto", "id": id_}), qos=1)
            await rec.wait(f"{BASE}/cmd/mode/response", lambda m: b'"after"' in m.payload)
            await rec.wait(f"{BASE}/events", lambda m: b'"after"' in m.payload)
    finally:
        await link.stop()
    replies = [json.loads(m.payload) for m in rec.on(f"{BASE}/cmd/mode/response")]
    assert [r["id"] for r in replies] == ids  # one answer each, in order
    assert [r["id"] for r in map(json.loads, (m.payload for m in rec.on(f"{BASE}/events")))
            ] == ids
    by_id = {r["id"]: r for r in replies}
    assert by_id["raise"]["reason"].startswith("internal error: KeyError")
    assert by_id["detail"]["reason"] == "internal error: TypeError"
    assert by_id["none"]["reason"] == "internal error: handler returned no CommandResult"
    assert by_id["after"]["accepted"] is True
    assert link.stats.internal_errors == 3


async def test_stop_refuses_queued_commands_instead_of_starting_them(broker: Mosquitto) -> None:
    runtime = Blocked()
    link = await started(broker, runtime)
    response = f"{BASE}/cmd/mode/response"
    async with Recorder(broker, response) as rec:
        for n in range(3):
            await rec.client.publish(f"{BASE}/cmd/mode", json.dumps(
                {"mode": "auto", "id": f"q{n}"}), qos=1)
        await until(lambda: runtime.calls and link.stats.commands == 0
                    and link.server.waiting == 2)
        stopping = asyncio.create_task(link.stop())
        await asyncio.sleep(0.1)
        runtime.release.set()
        await asyncio.wait_for(stopping, 10)
        await until(lambda: len(rec.seen) == 3)
    answers = {b["id"]: b for b in (json.loads(m.payload) for m in rec.seen)}
    assert answers["q0"]["accepted"] is True and answers["q0"]["reason"] == "done"
    for id_ in ("q1", "q2"):
        assert answers[id_]["accepted"] is False
        assert answers[id_]["reason"].startswith("heatd is stopping")
    assert [c.id for c in runtime.calls] == ["q0"]
