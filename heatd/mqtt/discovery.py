"""Home Assistant MQTT discovery: the site as one HA device, built from the site file.

Two formats. ``device`` (Home Assistant 2024.11 and later) sends the whole site in one
retained message, ``<prefix>/device/heatd_<site>/config`` with ``dev``, ``o`` and ``cmps``;
``entity`` sends one retained message per entity, ``<prefix>/<platform>/heatd_<site>/<key>/
config``, which every release with MQTT discovery reads. Both describe the same entities
with the same unique ids, so a site can move between them; each format clears the other's
topics first, or HA would refuse the second copy of every unique id.

Entities are named for people: a point's ``description`` when the site file gives one,
else its device and point name cleaned up ("PDU IT power"). A point is a binary sensor
when its data type is boolean or it is bound to a role the controller reads as true/false
(an OPC UA ``Boolean`` variable needs no declared data type). Valve, fan and capacity
fractions (0..1) are shown in percent, so HA keeps statistics in the unit people read.
Every point entity is available only while both heatd (site status) and its device are
online, so HA shows "unavailable" rather than a frozen last value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heatd.control import roles as R
from heatd.control.state import Mode
from heatd.drivers.codec import DataType
from heatd.mqtt.command_payloads import CommandLimits
from heatd.mqtt.settings import HomeAssistantSettings
from heatd.mqtt.topics import Topics
from heatd.role_units import FRACTION_ROLES
from heatd.units import canonical_unit

if TYPE_CHECKING:
    from heatd.config import PointConfig, SiteConfig

# heatd's name of a unit (``heatd.units``, which knows its other spellings) -> (HA
# device_class, HA unit, state_class).
UNITS: dict[str, tuple[str | None, str, str]] = {
    "degC": ("temperature", "°C", "measurement"),
    "W": ("power", "W", "measurement"),
    "kW": ("power", "kW", "measurement"),
    "MW": ("power", "MW", "measurement"),
    "Wh": ("energy", "Wh", "total_increasing"),
    "kWh": ("energy", "kWh", "total_increasing"),
    "MWh": ("energy", "MWh", "total_increasing"),
    "m3/h": ("volume_flow_rate", "m³/h", "measurement"),
    "L/min": ("volume_flow_rate", "L/min", "measurement"),
    "bar": ("pressure", "bar", "measurement"),
    "kPa": ("pressure", "kPa", "measurement"),
    "%": (None, "%", "measurement"),
}

BOOLEAN_ROLES: dict[str, str | None] = {
    R.HP_RUNNING: "running",
    R.HP_FAULT: "problem",
    R.HP_LOCKOUT: "problem",
    R.HP_MIN_OFF_ACTIVE: None,
    R.PLC_FALLBACK: "problem",
    R.HP_ENABLE: None,
    R.HP_RESET: None,
}
"""Roles the controller reads or writes as true/false -> the binary sensor's device class."""

ACRONYMS = frozenset({"ai", "bms", "cdu", "cop", "dh", "di", "do", "hp", "hx", "it", "pdu",
                      "plc", "ups"})
"""Words of point and device names written in capitals in entity names."""


def discovery_topic(settings: HomeAssistantSettings, site_id: str) -> str:
    """The device-format topic (one message for the whole site)."""
    return f"{settings.prefix}/device/heatd_{site_id}/config"


def entity_topic(settings: HomeAssistantSettings, site_id: str, platform: str,
                 key: str) -> str:
    """The entity-format topic of one component."""
    return f"{settings.prefix}/{platform}/heatd_{site_id}/{key}/config"


def label(device: str, name: str, point: PointConfig) -> str:
    """What HA calls a point: its description, else 'Device point name' cleaned up."""
    if point.description:
        return point.description
    words = f"{device} {name}".replace("_", " ").replace("-", " ").split()
    text = " ".join(w.upper() if w in ACRONYMS else w for w in words)
    return text[:1].upper() + text[1:]


def _availability(topics: Topics, device: str | None) -> dict[str, Any]:
    entries = [{"topic": topics.status, "payload_available": "online",
                "payload_not_available": "offline"}]
    if device is not None:
        entries.append({"topic": topics.availability(device), "payload_available": "online",
                        "payload_not_available": "offline"})
    return {"availability": entries, "availability_mode": "all"}


class _PointRoles:
    """The roles each point is bound to, to tell flags and fractions from plain numbers."""

    def __init__(self, site: SiteConfig) -> None:
        self._roles: dict[str, set[str]] = {}
        for role in site.roles:
            for ref in site.role_points(role):
                self._roles.setdefault(ref, set()).add(role)

    def boolean(self, ref: str, point: PointConfig) -> tuple[bool, str | None]:
        """Whether the point is a flag, and its binary-sensor device class."""
        flags = sorted(r for r in self._roles.get(ref, ()) if r in BOOLEAN_ROLES)
        if flags:
            return True, BOOLEAN_ROLES[flags[0]]
        return point.data_type in (DataType.BOOL, DataType.BIT), None

    def fraction(self, ref: str, point: PointConfig) -> bool:
        """A 0..1 fraction (valve, fan, capacity) whose point is not in percent already."""
        return point.unit != "%" and bool(self._roles.get(ref, set()) & FRACTION_ROLES)


def _reading(unique: str, device: str, name: str, point: PointConfig, roles: _PointRoles,
             topics: Topics) -> dict[str, Any]:
    """A sensor (or binary_sensor for flags) reading one point from its device state.
    A bad read is ``null`` in the state: the templates give HA ``None`` (unknown) for it,
    never a false "off" or a zero."""
    field = f"value_json[{name!r}]"
    ref = f"{device}.{name}"
    cmp: dict[str, Any] = {
        "unique_id": unique,
        "name": label(device, name, point),
        "state_topic": topics.state(device),
        **_availability(topics, device),
    }
    flag, device_class = roles.boolean(ref, point)
    if flag:
        cmp["p"] = "binary_sensor"
        cmp["value_template"] = (
            f"{{{{ none if {field} is none else ('ON' if {field} else 'OFF') }}}}"
        )
        if device_class is not None:
            cmp["device_class"] = device_class
        return cmp
    cmp["p"] = "sensor"
    if roles.fraction(ref, point):
        cmp["value_template"] = (
            f"{{{{ none if {field} is none else ({field} * 100) | round(2) }}}}"
        )
        cmp["unit_of_measurement"] = "%"
        cmp["state_class"] = "measurement"
        return cmp
    cmp["value_template"] = f"{{{{ {field} }}}}"
    if point.unit is not None:
        device_class, unit, state_class = UNITS.get(canonical_unit(point.unit),
                                                    (None, point.unit, "measurement"))
        if device_class is not None:
            cmp["device_class"] = device_class
        cmp["unit_of_measurement"] = unit
        cmp["state_class"] = state_class
    return cmp


def _override(unique: str, ref: str, point: PointConfig, low: float, high: float,
              percent: bool, topics: Topics, ttl: float) -> dict[str, Any]:
    """A number that leases the point for ``ttl`` seconds within its write bounds; a
    fraction is set in percent and sent as the fraction the point takes."""
    device, name = ref.split(".", 1)
    field = f"value_json[{name!r}]"
    value = "{{ value / 100 }}" if percent else "{{ value }}"
    template = f'{{"point":"{ref}","value":{value},"ttl":{ttl:g},"by":"homeassistant"}}'
    scale = 100.0 if percent else 1.0
    low, high = low * scale, high * scale
    cmp: dict[str, Any] = {
        "p": "number",
        "unique_id": unique,
        "name": f"{label(device, name, point)} override",
        "command_topic": topics.command("override"),
        "command_template": template,
        "state_topic": topics.state(device),
        "value_template": (f"{{{{ none if {field} is none else ({field} * 100) | round(2) }}}}"
                           if percent else f"{{{{ {field} }}}}"),
        "min": low,
        "max": high,
        "step": 10 ** -2 if high - low <= 10 else 10 ** -1,
        "mode": "box",
        "entity_category": "config",
        **_availability(topics, device),
    }
    if percent:
        cmp["unit_of_measurement"] = "%"
    elif point.unit is not None:
        cmp["unit_of_measurement"] = UNITS.get(canonical_unit(point.unit),
                                               (None, point.unit, ""))[1]
    return cmp


def _switch(unique: str, ref: str, point: PointConfig, topics: Topics,
            ttl: float) -> dict[str, Any]:
    """A switch that leases a true/false point (heat-pump enable) for ``ttl`` seconds."""
    device, name = ref.split(".", 1)
    field = f"value_json[{name!r}]"

    def lease(value: str) -> str:
        return f'{{"point":"{ref}","value":{value},"ttl":{ttl:g},"by":"homeassistant"}}'

    return {
        "p": "switch",
        "unique_id": unique,
        "name": f"{label(device, name, point)} override",
        "command_topic": topics.command("override"),
        "payload_on": lease("true"),
        "payload_off": lease("false"),
        "state_topic": topics.state(device),
        "value_template": f"{{{{ none if {field} is none else ('ON' if {field} else 'OFF') }}}}",
        "state_on": "ON",
        "state_off": "OFF",
        "entity_category": "config",
        **_availability(topics, device),
    }


def _release(unique: str, ref: str, point: PointConfig, topics: Topics) -> dict[str, Any]:
    """A button that ends the point's override lease before its time-to-live."""
    device, name = ref.split(".", 1)
    return {
        "p": "button",
        "unique_id": unique,
        "name": f"{label(device, name, point)} release override",
        "command_topic": topics.command("override"),
        "payload_press": f'{{"point":"{ref}","value":null,"by":"homeassistant"}}',
        "entity_category": "config",
        **_availability(topics, None),
    }


def components(site: SiteConfig, topics: Topics, settings: HomeAssistantSettings,
               limits: CommandLimits) -> dict[str, dict[str, Any]]:
    """Every entity of the site, by component key, each with its platform ``p``."""
    site_id = site.site.id
    roles = _PointRoles(site)
    cmps: dict[str, dict[str, Any]] = {
        "mode": {
            "p": "select",
            "unique_id": f"heatd_{site_id}_mode",
            "name": "Mode",
            "options": [m.value for m in Mode],
            "command_topic": topics.command("mode"),
            "command_template": '{"mode":"{{ value }}","by":"homeassistant"}',
            "state_topic": topics.control_state,
            "value_template": "{{ value_json.mode }}",
            **_availability(topics, None),
        },
        "reset_lockout": {
            "p": "button",
            "unique_id": f"heatd_{site_id}_reset_lockout",
            "name": "Reset heat-pump lockout",
            "command_topic": topics.command("reset_lockout"),
            "payload_press": '{"by":"homeassistant"}',
            "entity_category": "config",
            **_availability(topics, None),
        },
    }
    for device, config in site.devices.items():
        for name, point in config.points.items():
            key = f"{device}_{name}"
            cmps[key] = _reading(f"heatd_{site_id}_{key}", device, name, point, roles, topics)
    for ref, bounds in limits.points.items():
        key = ref.replace(".", "_")
        unique = f"heatd_{site_id}_{key}"
        point = site.point(ref)
        if bounds.boolean:
            cmps[f"{key}_override"] = _switch(f"{unique}_override", ref, point, topics,
                                              settings.override_ttl)
        elif bounds.low is not None and bounds.high is not None:
            percent = bounds.role in FRACTION_ROLES and point.unit != "%"
            cmps[f"{key}_override"] = _override(f"{unique}_override", ref, point, bounds.low,
                                                bounds.high, percent, topics,
                                                settings.override_ttl)
        else:
            continue
        cmps[f"{key}_release"] = _release(f"{unique}_release", ref, point, topics)
    cmps.update(_contract_totals(site, topics))
    return cmps


TOTALS = {"heat_kwh": "heat delivered", "it_kwh": "IT energy",
          "hp_electricity_kwh": "heat-pump electricity"}
"""Running totals on ``meter/totals`` -> what their Home Assistant energy sensor is."""


def _contract_totals(site: SiteConfig, topics: Topics) -> dict[str, dict[str, Any]]:
    """An energy sensor (total_increasing, kWh) per contract total: Home Assistant's
    energy dashboard takes them as they are."""
    contracts = site.contracts
    if contracts is None or site.meter is None:
        return {}
    fields = [(c.name, "heat_kwh") for c in contracts.heat_purchase]
    if contracts.cooling_guarantee is not None:
        name = contracts.cooling_guarantee.name
        fields += [(name, "it_kwh"), (name, "hp_electricity_kwh")]
    cmps = {}
    for contract, field in fields:
        key = f"contract_{contract}_{field}"
        cmps[key] = {
            "p": "sensor", "unique_id": f"heatd_{site.site.id}_{key}",
            "name": f"{contract} {TOTALS[field]}",
            "state_topic": topics.meter_totals,
            "value_template": f"{{{{ value_json[{contract!r}][{field!r}] }}}}",
            "device_class": "energy", "unit_of_measurement": "kWh",
            "state_class": "total_increasing", **_availability(topics, None),
        }
    return cmps


def _device(site: SiteConfig, version: str) -> dict[str, Any]:
    site_id = site.site.id
    return {
        "ids": [f"heatd_{site_id}"],
        "name": site.site.name or f"heatd {site_id}",
        "mf": "heatd",
        "mdl": "heat-recovery controller",
        "sw": version,
    }


def discovery_payload(site: SiteConfig, topics: Topics, settings: HomeAssistantSettings,
                      limits: CommandLimits, version: str) -> dict[str, Any]:
    """The device-format message for the whole site."""
    return _device_message(site, components(site, topics, settings, limits), version)


def _device_message(site: SiteConfig, cmps: dict[str, dict[str, Any]],
                    version: str) -> dict[str, Any]:
    return {"dev": _device(site, version), "o": {"name": "heatd", "sw": version}, "cmps": cmps,
            "qos": 1}


def discovery_messages(site: SiteConfig, topics: Topics, settings: HomeAssistantSettings,
                       limits: CommandLimits, version: str) -> dict[str, dict[str, Any] | None]:
    """Topic -> retained discovery payload in the configured format; ``None`` (an empty
    retained message, which deletes) first for the other format's topics."""
    site_id = site.site.id
    cmps = components(site, topics, settings, limits)
    device_topic = discovery_topic(settings, site_id)
    per_entity = {entity_topic(settings, site_id, c["p"], key): c for key, c in cmps.items()}
    if settings.format == "entity":
        device, origin = _device(site, version), {"name": "heatd", "sw": version}
        messages: dict[str, dict[str, Any] | None] = {device_topic: None}
        for topic, cmp in per_entity.items():
            body = {k: v for k, v in cmp.items() if k != "p"}
            messages[topic] = {**body, "dev": device, "o": origin, "qos": 1}
        return messages
    messages = dict.fromkeys(per_entity)
    messages[device_topic] = _device_message(site, cmps, version)
    return messages
