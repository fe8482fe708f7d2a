"""``heatd browse``: walk an OPC UA server's address space with a site's connection
settings and list every variable as a site file would name it, so commissioning starts
from what the server has instead of from a vendor's spreadsheet; ``--snippet`` writes
the list as a ``points:`` section to paste under the device."""

from __future__ import annotations

import asyncio
import re
import time
from io import StringIO
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from heatd.config import OpcUaDeviceConfig, SiteConfig
from heatd.devices import bind_opcua

if TYPE_CHECKING:
    from heatd.drivers.opcua.browse import VariableInfo

CONNECT_WAIT_S = 10.0
"""Longest the first connect may take, failures included, before browse gives up."""


async def browse(site: SiteConfig, device_name: str, start: str | None, out: IO[str],
                 snippet: Path | None = None, max_depth: int = 8) -> int:
    """Print the variables below ``start`` (default: Objects); 0 when the server was
    reached, 2 when not (with the named reason)."""
    config = site.devices[device_name]
    if not isinstance(config, OpcUaDeviceConfig):
        out.write(f"{device_name} is a {config.protocol} device; browse is for OPC UA\n")
        return 2
    driver = bind_opcua(device_name, config).driver
    await driver.start()
    try:
        deadline = time.monotonic() + CONNECT_WAIT_S
        while not driver.online:
            error = driver.last_error
            if time.monotonic() > deadline or error not in (None, "disconnected"):
                out.write(f"{device_name}: no connection to {config.endpoint}: "
                          f"{error or 'no answer'}\n")
                return 2
            await asyncio.sleep(0.1)
        try:
            found = await driver.browse(start, max_depth=max_depth)
        except ValueError as exc:
            out.write(f"{device_name}: {exc}\n")
            return 2
    finally:
        await driver.close()
    out.write(_table(found) + "\n")
    out.write(f"{len(found)} variables below {start or 'Objects'} on {config.endpoint}\n")
    if snippet is not None:
        await asyncio.to_thread(snippet.write_text, points_yaml(found))
        out.write(f"points written to {snippet}\n")
    return 0


def _table(found: list[VariableInfo]) -> str:
    rows = [("node_id", "path", "type", "access", "value")]
    for info in found:
        value = info.status if info.status != "Good" else _value(info.value)
        rows.append((info.node_id, info.path, info.data_type, info.access, value))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def _value(value: object) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def points_yaml(found: list[VariableInfo]) -> str:
    """A ``points:`` section in the site file's format: one point per variable heatd can
    read, named after its browse path, with its ``nsu=`` node id and data type. Nothing is
    made writable: that stays the engineer's decision (the server's access is noted)."""
    points = CommentedMap()
    skipped = []
    for info in found:
        if info.heatd_type is None:
            skipped.append(f"{info.node_id} ({info.data_type})")
            continue
        name = _unique(_point_name(info.path), points)
        entry = CommentedMap(node_id=info.node_id, data_type=info.heatd_type.value)
        entry.fa.set_flow_style()
        points[name] = entry
        points.yaml_add_eol_comment(f"server: {info.data_type}, {info.access}", name)
    root = CommentedMap(points=points)
    if skipped:
        root.yaml_set_start_comment("not numbers heatd reads, left out:\n" +
                                    "\n".join(f"  {s}" for s in skipped))
    yaml = YAML()
    yaml.width = 4096
    yaml.indent(mapping=2)
    text = StringIO()
    yaml.dump(root, text)
    return text.getvalue()


def _point_name(path: str) -> str:
    """The last parts of the browse path, in the site file's [a-z0-9_-] alphabet."""
    name = re.sub(r"[^a-z0-9_-]+", "_", path.lower().replace("/", "_")).strip("_")
    return (name or "point")[-64:].lstrip("_-") or "point"


def _unique(name: str, taken: CommentedMap) -> str:
    candidate, n = name, 2
    while candidate in taken:
        suffix = f"_{n}"
        candidate, n = name[:64 - len(suffix)] + suffix, n + 1
    return candidate
