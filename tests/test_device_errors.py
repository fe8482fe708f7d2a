"""Why a device is not answering, on MQTT: a retained ``<device>/last_error`` beside its
availability, in the driver's words, deleted once the device is healthy again. Real
pymodbus server, real mosquitto."""

from __future__ import annotations

import asyncio
import json
import time

from heatd.acquisition import Acquisition
from heatd.config_loader import parse_site
from heatd.devices import point_limits
from heatd.hil.rig.broker import Mosquitto, Recorder, broker_fixture, retained
from heatd.hil.rig.modbus import SimServer, unit
from heatd.hil.siteports import free_port
from heatd.mqtt.link import MqttLink
from heatd.mqtt.settings import MqttSettings
from heatd.points import PointImage

broker = broker_fixture()

SITE = """\
site: {{id: t}}
poll_groups:
  default: {{interval: 0.1}}
devices:
  pump:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {port}
    address_base: 0
    timeout: 0.2
    backoff: {{min: 0.1, max: 0.2}}
    points:
      running: {{table: coil, address: 0, data_type: bool}}
"""


async def _link(b: Mosquitto, site) -> MqttLink:
    settings = MqttSettings.model_validate_json(json.dumps(
        {"host": b.host, "port": b.port, "reconnect_min": 0.05, "reconnect_max": 0.3}),
        strict=True)
    link = MqttLink(settings, site, _refuse_all)
    await link.start()
    await asyncio.wait_for(link.wait_connected(), 10)
    return link


def _error(message) -> str | None:
    return json.loads(message.payload)["error"] if message.payload else None


async def _refuse_all(command):  # no command is sent in these tests
    raise AssertionError(command)


async def test_last_error_names_the_cause_and_is_cleared_when_healthy(broker: Mosquitto) -> None:
    port = free_port()
    site = parse_site(SITE.format(port=port), "site.yaml")
    link = await _link(broker, site)
    acq = Acquisition(site, PointImage(point_limits(site)), clock=time.monotonic,
                      on_availability=link.publish_availability,
                      on_error=link.publish_last_error)
    server = SimServer([unit(1)], port=port)
    topic = "heatd/t/pump/last_error"
    try:
        async with Recorder(broker, "heatd/t/pump/#") as rec:
            await acq.start()
            refused = await rec.wait(topic, lambda m: _error(m) == "connection refused")
            assert refused.retain and isinstance(json.loads(refused.payload)["ts"], int)
            assert (await rec.wait("heatd/t/pump/availability")).payload == b"offline"

            await server.start()
            mark = len(rec.seen)
            assert (await rec.wait(topic, after=mark)).payload == b""  # cleared
            await rec.wait("heatd/t/pump/availability", lambda m: m.payload == b"online",
                           after=mark)
            assert await retained(broker, topic, timeout=0.5) is None

            server.faults.silent.add(1)
            mark = len(rec.seen)
            assert _error(await rec.wait(topic, after=mark)) == "timeout"
            assert json.loads(await retained(broker, topic) or b"{}")["error"] == "timeout"
            server.faults.silent.clear()
            mark = len(rec.seen)
            assert (await rec.wait(topic, after=mark)).payload == b""
    finally:
        await acq.stop()
        await server.stop()
        await link.stop()
