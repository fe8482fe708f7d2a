"""A host setting (``mqtt.host``, a Modbus TCP device's ``host``) as the resolver takes it:
a name or an address, nothing more. A URL, a port, a blank or an unexpanded ``${VAR}``
never resolves; heatd would start and retry that host for ever, so the site file is
refused with what to write instead."""

from __future__ import annotations

import ipaddress
import re

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_HOST_PORT = re.compile(r"^[^:]+:\d+$")


def check_host(value: str, port_field: str) -> str:
    """``value`` if it can be a host name or an IP address; else ValueError saying why.
    ``port_field`` names where the port goes (``mqtt.port``)."""
    if not value.strip():
        raise ValueError("the host is empty")
    if "://" in value:
        raise ValueError(f"{value!r} is a URL; write the host name alone, and the port as "
                         f"{port_field}")
    if "$" in value:
        raise ValueError(f"{value!r} holds a variable, which heatd does not expand in a "
                         "host; write the host name")
    if any(c.isspace() for c in value):
        raise ValueError(f"{value!r} has a blank; a host name has none")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return value
    if value.startswith("[") or _HOST_PORT.match(value):
        raise ValueError(f"{value!r} has a port or brackets; write the host name or address "
                         f"alone, and the port as {port_field}")
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a host name or an IP address")
    return value
