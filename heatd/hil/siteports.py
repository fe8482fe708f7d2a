"""Copies of a site file on free local ports, so tests can serve and poll the demo site
while another copy (or a real plant) holds its fixed ports. Devices that share a port in
the original share the same new port in the copy; comments and layout are kept. Modbus
RTU lines move to fresh paths beside the copy, where the simulator's pseudo terminals
(``PlantServer(ptys=True)``) can be made.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ruamel.yaml import YAML

from heatd.control.params import ControlParams

_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago and was not handed out before in
    this process: two servers set up one after the other must not get the same port while
    the first has not bound it yet."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def with_free_ports(src: str | Path, dst: str | Path) -> dict[int, int]:
    """Write `src` to `dst` with every Modbus TCP device on 127.0.0.1, every port (Modbus
    and OPC UA) replaced by a free one, and every serial line on a path of its own in
    `dst`'s folder (``<dst stem>-line<n>``); returns old port -> new port."""
    yaml = YAML(typ="rt")
    tree = yaml.load(Path(src).read_text(encoding="utf-8"))
    moved: dict[int, int] = {}
    lines: dict[str, str] = {}
    stem = Path(dst).with_suffix("")

    def new_port(old: int) -> int:
        if old not in moved:
            moved[old] = free_port()
        return moved[old]

    for device in (tree.get("devices") or {}).values():
        protocol = device.get("protocol")
        if protocol == "modbus_tcp":
            device["host"] = "127.0.0.1"
            device["port"] = new_port(int(device.get("port", 502)))
        elif protocol == "modbus_rtu":
            old_line = str(device["serial_port"])
            device["serial_port"] = lines.setdefault(old_line, f"{stem}-line{len(lines) + 1}")
        elif protocol == "opcua":
            parts = urlsplit(device["endpoint"])
            netloc = f"127.0.0.1:{new_port(parts.port or 4840)}"
            device["endpoint"] = urlunsplit(parts._replace(netloc=netloc))
    with Path(dst).open("w", encoding="utf-8") as fh:
        yaml.dump(tree, fh)
    return moved


def accelerated_copy(src: str | Path, dst: str | Path, speed: float,
                     sections: dict[str, Any]) -> Path:
    """A copy of a site on free ports for a plant running ``speed`` times real time: its
    control timers scaled by the same factor (DESIGN.md, "Time"), and the given top-level
    sections (mqtt, runtime, ...) set as given."""
    with_free_ports(src, dst)
    yaml = YAML(typ="rt")
    tree = yaml.load(Path(dst).read_text(encoding="utf-8"))
    control = ControlParams.model_validate_json(json.dumps(tree.get("control", {})))
    tree["control"] = json.loads(control.time_scaled(speed).model_dump_json())
    tree.update(sections)
    with Path(dst).open("w", encoding="utf-8") as fh:
        yaml.dump(tree, fh)
    return Path(dst)
