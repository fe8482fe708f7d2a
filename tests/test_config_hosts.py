"""A host setting is a name or an address: a URL, a port, a blank or an unexpanded
``${VAR}`` never resolves, so check-config names it (``mqtt.host`` and a Modbus TCP
device's ``host``); and a broker heatd cannot reach is named in its ``mqtt down`` line."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest

from heatd.config_loader import ConfigError, parse_site
from heatd.hil.rig.logs import heatd_events
from heatd.hil.siteports import free_port
from heatd.mqtt.session import keep_session, make_client
from heatd.mqtt.settings import MqttSettings

SITE = """\
site: {id: north}
devices:
  racks:
    protocol: modbus_tcp
    host: DEVICE
    address_base: 0
    points:
      t1: {table: input, address: 0, data_type: int16, scale: 0.1, unit: degC}
mqtt:
  host: BROKER
  port: 1883
"""


def site(device: str = "127.0.0.1", broker: str = "broker.local") -> str:
    return SITE.replace("DEVICE", json.dumps(device)).replace("BROKER", json.dumps(broker))


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_site(text, "site.yaml")
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(("host", "why"), [
    ("tcp://127.0.0.1:1883", "'tcp://127.0.0.1:1883' is a URL; write the host name alone, and "
     "the port as mqtt.port"),
    ("mqtt://broker", "'mqtt://broker' is a URL; write the host name alone, and the port as "
     "mqtt.port"),
    ("broker .local", "'broker .local' has a blank; a host name has none"),
    (" broker", "' broker' has a blank; a host name has none"),
    ("${MQTT_HOST}", "'${MQTT_HOST}' holds a variable, which heatd does not expand in a host; "
     "write the host name"),
    ("broker:1883", "'broker:1883' has a port or brackets; write the host name or address "
     "alone, and the port as mqtt.port"),
    ("[::1]", "'[::1]' has a port or brackets; write the host name or address alone, and the "
     "port as mqtt.port"),
    ("", "the host is empty"),
    ("broker;rm", "'broker;rm' is not a host name or an IP address"),
])
def test_an_mqtt_host_that_cannot_resolve_is_named(host: str, why: str) -> None:
    assert problems_of(site(broker=host)) == [f"site.yaml:10: mqtt.host: {why}"]


def test_a_device_host_with_a_port_is_named_at_the_device() -> None:
    assert problems_of(site(device="10.0.0.5:502")) == [
        "site.yaml:5: devices.racks.host: '10.0.0.5:502' has a port or brackets; write the "
        "host name or address alone, and the port as the device's port:"]


@pytest.mark.parametrize("host", ["broker.local", "localhost", "127.0.0.1", "::1",
                                  "fe80::1", "mqtt-1.site_a.example"])
def test_names_and_addresses_are_accepted(host: str) -> None:
    loaded = parse_site(site(device=host, broker=host), "site.yaml")
    assert loaded.mqtt is not None and loaded.mqtt.host == host


async def test_the_mqtt_down_line_names_the_host_and_port_it_tried() -> None:
    """Nothing listens on the port: each failed attempt's warning says where it went."""
    port = free_port()
    config = MqttSettings.model_validate_json(json.dumps(
        {"host": "127.0.0.1", "port": port, "reconnect_min": 0.05, "reconnect_max": 0.1}),
        strict=True)
    stopping, connected = asyncio.Event(), asyncio.Event()

    async def never(client: aiomqtt.Client) -> None:
        raise AssertionError("nothing listens there")

    with heatd_events() as logs:
        task = asyncio.create_task(keep_session(
            config, lambda: make_client(config, "nowhere", None, None, inbox=1), never,
            stopping=stopping, connected=connected, counted=lambda _: None, name="mqtt"))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if any(entry["event"] == "mqtt down" for entry in logs):
                break
        stopping.set()
        await asyncio.wait_for(task, 5)
    down = [entry for entry in logs if entry["event"] == "mqtt down"]
    assert down, logs
    assert (down[0]["host"], down[0]["port"]) == ("127.0.0.1", port)
    assert down[0]["error"]
