"""Home Assistant device discovery: one HA device per site, built from the site file.

Uses the device-based format (``<prefix>/device/<id>/config`` with ``dev``, ``o`` and
``cmps``) so a site appears or changes in one retained message instead of one per entity.
Every point entity is available only while both heatd (site status) and its device are
online, so HA shows "unavailable" rather than a frozen last value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivers.codec import DataType
from heatd.control.state import Mode
from heatd.mqtt.commands import CommandLimits
from heatd.mqtt.settings import HomeAssistantSettings
from heatd.mqtt.topics import Topics

if TYPE_CHECKING:
    from heatd.config import PointConfig, SiteConfig

# Site-file unit -> (HA device_class, HA unit, state_class).
UNITS: dict[str, tuple[str | None, str, str]] = {
    "degC": ("temperature", "°C", "measurement"),
    "°C": ("temperature", "°C", "measurement"),
    "W": ("power", "W", "measurement"),
    "kW": ("power", "kW", "measurement"),
    "MW": ("power", "MW", "measurement"),
    "Wh": ("energy", "Wh", "total_increasing"),
    "kWh": ("energy", "kWh", "total_increasing"),
    "MWh": ("energy", "MWh", "total_increasing"),
    "m3/h": ("volume_flow_rate", "m³/h", "measurement"),
    "m³/h": ("volume_flow_rate", "m³/h", "measurement"),
    "l/min": ("volume_flow_rate", "L/min", "measurement"),
    "L/min": ("volume_flow_rate", "L/min", "measurement"),
    "bar": ("pressure", "bar", "measurement"),
    "kPa": ("pressure", "kPa", "measurement"),
    "%": (None, "%", "measurement"),
}


def discovery_topic(settings: HomeAssistantSettings, site_id: str) -> str:
    return f"{settings.prefix}/device/heatd_{site_id}/config"


def _availability(topics: Topics, device: str | None) -> dict[str, Any]:
    entries = [{"topic": topics.status, "payload_available": "online",
                "payload_not_available": "offline"}]
    if device is not None:
        entries.append({"topic": topics.availability(device), "payload_available": "online",
                        "payload_not_available": "offline"})
    return {"availability": entries, "availability_mode": "all"}


def _is_bool(point: PointConfig) -> bool:
    return point.data_type in (DataType.BOOL, DataType.BIT)


def _reading(unique: str, device: str, name: str, point: PointConfig,
             topics: Topics) -> dict[str, Any]:
    """A sensor (or binary_sensor for booleans) reading one point from its device state."""
    field = f"value_json[{name!r}]"
    cmp: dict[str, Any] = {
        "unique_id": unique,
        "name": f"{device} {name}",
        "state_topic": topics.state(device),
        **_availability(topics, device),
    }
    if _is_bool(point):
        # "None" makes HA show unknown for a bad read instead of a false "off".
        cmp["p"] = "binary_sensor"
        cmp["value_template"] = (
            f"{{{{ none if {field} is none else ('ON' if {field} else 'OFF') }}}}"
        )
        return cmp
    cmp["p"] = "sensor"
    cmp["value_template"] = f"{{{{ {field} }}}}"
    if point.unit is not None:
        device_class, unit, state_class = UNITS.get(point.unit, (None, point.unit, "measurement"))
        if device_class is not None:
            cmp["device_class"] = device_class
        cmp["unit_of_measurement"] = unit
        cmp["state_class"] = state_class
    return cmp


def _override(unique: str, ref: str, point: PointConfig, low: float, high: float,
              topics: Topics, ttl: float) -> dict[str, Any]:
    """A number that leases the point for ``ttl`` seconds within its write bounds."""
    device, name = ref.split(".", 1)
    template = (f'{{"point":"{ref}","value":{{{{ value }}}},"ttl":{ttl:g},'
                f'"by":"homeassistant"}}')
    cmp: dict[str, Any] = {
        "p": "number",
        "unique_id": unique,
        "name": f"{device} {name} override",
        "command_topic": topics.command("override"),
        "command_template": template,
        "state_topic": topics.state(device),
        "value_template": f"{{{{ value_json[{name!r}] }}}}",
        "min": low,
        "max": high,
        "step": 10 ** -2 if high - low <= 10 else 10 ** -1,
        "mode": "box",
        "entity_category": "config",
        **_availability(topics, device),
    }
    if point.unit is not None:
        cmp["unit_of_measurement"] = UNITS.get(point.unit, (None, point.unit, ""))[1]
    return cmp


def _switch(unique: str, ref: str, topics: Topics, ttl: float) -> dict[str, Any]:
    """A switch that leases a true/false point (heat-pump enable) for ``ttl`` seconds."""
    device, name = ref.split(".", 1)
    field = f"value_json[{name!r}]"

    def lease(value: str) -> str:
        return f'{{"point":"{ref}","value":{value},"ttl":{ttl:g},"by":"homeassistant"}}'

    return {
        "p": "switch",
        "unique_id": unique,
        "name": f"{device} {name} override",
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


def _release(unique: str, ref: str, topics: Topics) -> dict[str, Any]:
    """A button that ends the point's override lease before its time-to-live."""
    device, name = ref.split(".", 1)
    return {
        "p": "button",
        "unique_id": unique,
        "name": f"{device} {name} release override",
        "command_topic": topics.command("override"),
        "payload_press": f'{{"point":"{ref}","value":null,"by":"homeassistant"}}',
        "entity_category": "config",
        **_availability(topics, None),
    }


def discovery_payload(site: SiteConfig, topics: Topics, settings: HomeAssistantSettings,
                      limits: CommandLimits, version: str) -> dict[str, Any]:
    """The retained discovery message for the whole site."""
    site_id = site.site.id
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
        }
    }
    for device, config in site.devices.items():
        for name, point in config.points.items():
            key = f"{device}_{name}"
            cmps[key] = _reading(f"heatd_{site_id}_{key}", device, name, point, topics)
    for ref, bounds in limits.points.items():
        key = ref.replace(".", "_")
        unique = f"heatd_{site_id}_{key}"
        if bounds.boolean:
            cmps[f"{key}_override"] = _switch(f"{unique}_override", ref, topics,
                                              settings.override_ttl)
        elif bounds.low is not None and bounds.high is not None:
            cmps[f"{key}_override"] = _override(f"{unique}_override", ref, site.point(ref),
                                                bounds.low, bounds.high, topics,
                                                settings.override_ttl)
        else:
            continue
        cmps[f"{key}_release"] = _release(f"{unique}_release", ref, topics)
    return {
        "dev": {
            "ids": [f"heatd_{site_id}"],
            "name": site.site.name or f"heatd {site_id}",
            "mf": "heatd",
            "mdl": "heat-recovery controller",
            "sw": version,
        },
        "o": {"name": "heatd", "sw": version},
        "cmps": cmps,
        "qos": 1,
    }
