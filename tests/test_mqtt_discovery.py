"""Home Assistant discovery against a real mosquitto, as HA reads it: entity names for
people, flags as binary sensors (an OPC UA Boolean without a declared data type too),
fractions in percent with statistics, both discovery formats and the move between them.
The templates are rendered with Jinja2, the engine HA renders them with."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jinja2
import pytest
from pydantic import ValidationError

from heatd.config_loader import parse_site
from heatd.hil.rig.broker import Mosquitto, Recorder, broker_fixture, retained
from heatd.mqtt.command_payloads import CommandLimits, OverrideCommand, ResetLockoutCommand, parse
from heatd.mqtt.link import MqttLink
from heatd.mqtt.settings import HomeAssistantSettings, MqttSettings

broker = broker_fixture()

SITE_YAML = """
site: {id: ha1, name: Boiler room}
devices:
  pdu:
    protocol: modbus_tcp
    host: 127.0.0.1
    address_base: 0
    points:
      it_power: {table: input, address: 0, data_type: float32, unit: kW}
      valve_actual: {table: input, address: 2, data_type: uint16, scale: 0.001}
      valve_setpoint: {table: holding, address: 3, data_type: uint16, scale: 0.001,
                       writable: true, write_min: 0, write_max: 1}
      fan_percent: {table: holding, address: 4, data_type: uint16, unit: "%", writable: true,
                    write_min: 0, write_max: 100}
      hp_enable: {table: coil, address: 0, data_type: bool, writable: true}
  heatpump:
    protocol: opcua
    endpoint: opc.tcp://127.0.0.1:4840
    points:
      running: {node_id: "ns=2;s=HP.Running", description: Heat pump running}
      fault: {node_id: "ns=2;s=HP.Fault"}
      trip_code: {node_id: "ns=2;s=HP.TripCode", data_type: uint16}
      capacity: {node_id: "ns=2;s=HP.Capacity", data_type: float64, writable: true,
                 write_min: 0, write_max: 1}
roles:
  it.power: pdu.it_power
  valve.recovery.actual: pdu.valve_actual
  valve.recovery: pdu.valve_setpoint
  drycooler.fan: pdu.fan_percent
  hp.enable: pdu.hp_enable
  hp.running: heatpump.running
  hp.fault: heatpump.fault
  hp.capacity: heatpump.capacity
"""
SITE = parse_site(SITE_YAML, "ha-site.yaml")
DEVICE_TOPIC = "homeassistant/device/heatd_ha1/config"
LIMITS = CommandLimits.from_site(SITE, max_ttl=3600)


def render(template: str, **variables: Any) -> str:
    return jinja2.Environment().from_string(template).render(**variables)


def state(name: str, value: Any) -> dict[str, Any]:
    """What a template sees of a device state message carrying ``value`` for ``name``."""
    return {"value_json": {"ts": 1, name: value}}


async def started(b: Mosquitto, discovery: bool | str, site: Any = SITE) -> MqttLink:
    settings = MqttSettings.model_validate_json(json.dumps({
        "host": b.host, "port": b.port, "reconnect_min": 0.05, "reconnect_max": 0.3,
        "homeassistant": {"discovery": discovery, "override_ttl": 600}}), strict=True)
    link = MqttLink(settings, site, lambda _: None, version="9.9.9")  # type: ignore[arg-type]
    await link.start()
    await asyncio.wait_for(link.wait_connected(), 10)
    return link


async def device_components(b: Mosquitto) -> dict[str, dict[str, Any]]:
    async with Recorder(b, DEVICE_TOPIC) as rec:
        message = await rec.wait(DEVICE_TOPIC)
    assert message.retain
    return json.loads(message.payload)["cmps"]


async def test_device_format_names_flags_and_percent(broker: Mosquitto) -> None:
    link = await started(broker, "device")
    try:
        cmps = await device_components(broker)
    finally:
        await link.stop()
    names = {key: c["name"] for key, c in cmps.items()}
    assert names["pdu_it_power"] == "PDU IT power"
    assert names["heatpump_running"] == "Heat pump running"  # the point's description
    assert names["heatpump_fault"] == "Heatpump fault"
    assert names["pdu_hp_enable_override"] == "PDU HP enable override"
    assert names["heatpump_running"] != "heatpump running"
    assert len({c["unique_id"] for c in cmps.values()}) == len(cmps)

    running, fault = cmps["heatpump_running"], cmps["heatpump_fault"]
    assert (running["p"], running["device_class"]) == ("binary_sensor", "running")
    assert (fault["p"], fault["device_class"]) == ("binary_sensor", "problem")
    assert render(running["value_template"], **state("running", True)) == "ON"
    assert render(fault["value_template"], **state("fault", False)) == "OFF"
    assert render(running["value_template"], **state("running", None)) == "None"  # unknown
    assert cmps["heatpump_trip_code"]["p"] == "sensor"

    valve = cmps["pdu_valve_actual"]
    assert (valve["p"], valve["unit_of_measurement"], valve["state_class"]) == (
        "sensor", "%", "measurement")
    assert float(render(valve["value_template"], **state("valve_actual", 0.75))) == 75.0
    assert render(valve["value_template"], **state("valve_actual", None)) == "None"
    fan = cmps["pdu_fan_percent"]  # in percent on the wire already: shown as it is
    assert fan["unit_of_measurement"] == "%" and fan["state_class"] == "measurement"
    assert float(render(fan["value_template"], **state("fan_percent", 40.0))) == 40.0

    for key, role, typed, sent in (("pdu_valve_setpoint", "valve.recovery", 37.5, 0.375),
                                   ("heatpump_capacity", "hp.capacity", 80.0, 0.8),
                                   ("pdu_fan_percent", "drycooler.fan", 40.0, 40.0)):
        number = cmps[f"{key}_override"]
        assert (number["p"], number["min"], number["max"], number["unit_of_measurement"]) == (
            "number", 0.0, 100.0, "%"), key
        command = parse("override", render(number["command_template"], value=typed).encode(),
                        LIMITS)
        assert isinstance(command, OverrideCommand)
        assert (command.role, command.value, command.ttl) == (role, pytest.approx(sent), 600.0)
        shown = render(number["value_template"], **state(key.split("_", 1)[1], sent))
        assert float(shown) == pytest.approx(typed)
    assert await retained(broker, "homeassistant/sensor/heatd_ha1/pdu_it_power/config") is None


async def test_a_latched_lockout_can_be_reset_from_home_assistant(broker: Mosquitto) -> None:
    link = await started(broker, "device")
    try:
        cmps = await device_components(broker)
    finally:
        await link.stop()
    button = cmps["reset_lockout"]
    assert (button["p"], button["command_topic"]) == ("button", "heatd/ha1/cmd/reset_lockout")
    command = parse("reset_lockout", button["payload_press"].encode(), LIMITS)
    assert isinstance(command, ResetLockoutCommand) and command.by == "homeassistant"


async def test_entity_format_replaces_the_device_message_and_answers_ha_birth(
        broker: Mosquitto) -> None:
    device_link = await started(broker, True)  # true: the device format
    try:
        device_cmps = await device_components(broker)
    finally:
        await device_link.stop()

    link = await started(broker, "entity")
    try:
        async with Recorder(broker, "homeassistant/#") as rec:
            entities = {}
            for key, cmp in device_cmps.items():
                topic = f"homeassistant/{cmp['p']}/heatd_ha1/{key}/config"
                message = await rec.wait(topic, lambda m: bool(m.payload))
                assert message.retain
                entities[key] = json.loads(message.payload)
            mark = rec.mark()
            await rec.client.publish("homeassistant/status", b"online", qos=1)
            await rec.wait("homeassistant/sensor/heatd_ha1/pdu_it_power/config", after=mark)
        assert await retained(broker, DEVICE_TOPIC) is None  # the device message is cleared
    finally:
        await link.stop()
    for key, entity in entities.items():
        expected = {k: v for k, v in device_cmps[key].items() if k != "p"}
        assert {k: v for k, v in entity.items() if k not in ("dev", "o", "qos")} == expected
        assert entity["dev"]["ids"] == ["heatd_ha1"] and entity["dev"]["name"] == "Boiler room"
        assert entity["o"] == {"name": "heatd", "sw": "9.9.9"}


async def test_a_reload_deletes_the_entities_of_a_device_that_is_gone(broker: Mosquitto) -> None:
    head = SITE_YAML.split("  heatpump:", 1)[0]
    smaller = parse_site(head + "roles:\n  it.power: pdu.it_power\n", "smaller.yaml")
    gone = "homeassistant/binary_sensor/heatd_ha1/heatpump_running/config"
    kept = "homeassistant/sensor/heatd_ha1/pdu_it_power/config"
    link = await started(broker, "entity")
    try:
        async with Recorder(broker, gone) as rec:
            await rec.wait(gone, lambda m: bool(m.payload))
            link.set_site(smaller)
            await rec.wait(gone, lambda m: m.payload == b"")
    finally:
        await link.stop()
    assert await retained(broker, gone) is None
    assert json.loads(await retained(broker, kept) or b"{}")["name"] == "PDU IT power"


def test_discovery_formats_of_the_settings() -> None:
    assert HomeAssistantSettings().format is None
    assert HomeAssistantSettings(discovery=True).format == "device"
    assert HomeAssistantSettings(discovery="device").format == "device"
    assert HomeAssistantSettings(discovery="entity").format == "entity"
    with pytest.raises(ValidationError, match="discovery"):
        HomeAssistantSettings.model_validate({"discovery": "entities"})


def test_a_unit_spelt_as_its_manual_spells_it_is_shown_as_home_assistant_names_it() -> None:
    """``℃``, ``Cel`` and ``kw`` are degC and kW: HA gets its own unit and the device class
    that keeps statistics; a unit heatd does not know is passed on as written."""
    from heatd.mqtt.discovery import components
    from heatd.mqtt.topics import Topics

    text = (SITE_YAML.replace("unit: kW}", "unit: kw}")
            .replace("  heatpump:\n", "      supply: {table: input, address: 6, data_type: "
                     "int16, unit: '℃'}\n      ret: {table: input, address: 7, data_type: "
                     "int16, unit: Cel}\n      odd: {table: input, address: 8, data_type: "
                     "int16, unit: furlong}\n  heatpump:\n"))
    site = parse_site(text, "ha-site.yaml")
    cmps = components(site, Topics("heatd/ha1"), HomeAssistantSettings(discovery=True),
                      CommandLimits.from_site(site, max_ttl=3600))
    shown = {key: (cmps[key].get("device_class"), cmps[key]["unit_of_measurement"])
             for key in ("pdu_it_power", "pdu_supply", "pdu_ret", "pdu_odd")}
    assert shown == {"pdu_it_power": ("power", "kW"), "pdu_supply": ("temperature", "°C"),
                     "pdu_ret": ("temperature", "°C"), "pdu_odd": (None, "furlong")}
