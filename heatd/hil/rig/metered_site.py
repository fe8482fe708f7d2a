"""The smallest metered site the daemon tests run: one Modbus TCP unit with the IT power
(input register 0, 0.1 kW) and IT energy counter (input registers 1-2, kWh), read every
100 ms, metered into SQLite in 1 s intervals, with MQTT and a PLC heartbeat if asked."""

from __future__ import annotations

from pathlib import Path


def metered_site(site_id: str, *, port: int, db: Path | str, mqtt: int | None = None,
                 heartbeat: int | None = None, stop_timeout: float | None = None) -> str:
    """The site file's text; ``mqtt``: the broker's port on 127.0.0.1 (None: no
    ``mqtt:`` section); ``heartbeat``: the holding register of ``plc.heartbeat``."""
    points = ["      it_power: {table: input, address: 0, data_type: uint16, scale: 0.1,"
              " unit: kW}",
              "      it_energy: {table: input, address: 1, data_type: uint32, unit: kWh}"]
    roles = ["  it.power: m.it_power", "  it.energy: m.it_energy"]
    if heartbeat is not None:
        points.append(f"      heartbeat: {{table: holding, address: {heartbeat},"
                      " data_type: uint16, writable: true}")
        roles.append("  plc.heartbeat: m.heartbeat")
    runtime = "cycle_period: 0.1" + ("" if stop_timeout is None
                                     else f", stop_timeout: {stop_timeout}")
    lines = [f"site: {{id: {site_id}}}", "poll_groups:", "  default: {interval: 0.1}",
             "devices:", "  m:", "    protocol: modbus_tcp", "    host: 127.0.0.1",
             f"    port: {port}", "    address_base: 0", "    timeout: 0.5", "    points:",
             *points, "roles:", *roles, f"runtime: {{{runtime}}}"]
    if mqtt is not None:
        lines.append(f"mqtt: {{host: 127.0.0.1, port: {mqtt}, reconnect_min: 0.05,"
                     " reconnect_max: 0.3}")
    lines.append(f"meter: {{interval: 1, database: {db}}}")
    return "\n".join(lines) + "\n"
