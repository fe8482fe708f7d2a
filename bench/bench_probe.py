"""``heatd probe`` on a site with three unreachable devices: a Modbus TCP port nobody
listens on (connection refused), a Modbus unit that never answers (timeout) and a serial
port that does not exist, beside one device that answers.

Prints the wall time of one probe of the whole site against a baseline measured in the
same run: the same devices probed one after another (``probe --device`` each), which is
what the probe did before it read devices at the same time.

    .venv/bin/python bench/bench_probe.py [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import tempfile
import time
from pathlib import Path

from heatd.config_loader import parse_site
from heatd.hil.rig.modbus import SimServer, unit
from heatd.hil.siteports import free_port
from heatd.probe import probe

SITE = """\
site: {{id: bench}}
devices:
  ok:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {port}
    unit_id: 1
    address_base: 0
    points:
      power: {{table: input, address: 0, data_type: uint16, unit: kW}}
  silent:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {port}
    unit_id: 2
    address_base: 0
    points:
      power: {{table: input, address: 0, data_type: uint16, unit: kW}}
  refused:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {nobody}
    address_base: 0
    points:
      power: {{table: input, address: 0, data_type: uint16, unit: kW}}
  serial:
    protocol: modbus_rtu
    serial_port: {tty}
    address_base: 0
    points:
      heat: {{table: input, address: 0, data_type: uint16, unit: kW}}
"""


async def _measure() -> dict[str, float]:
    server = SimServer([unit(1), unit(2)])
    await server.start()
    server.faults.silent.add(2)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            site = parse_site(SITE.format(port=server.port, nobody=free_port(),
                                          tty=Path(tmp) / "ttyUSB9"), "bench.yaml")
            started = time.perf_counter()
            for name in site.devices:
                await probe(site, name, io.StringIO())
            one_by_one = time.perf_counter() - started
            started = time.perf_counter()
            status = await probe(site, None, io.StringIO())
            together = time.perf_counter() - started
    finally:
        await server.stop()
    assert status == 2, "three devices are unreachable: the probe must say so"
    return {"one_by_one_s": round(one_by_one, 2), "probe_s": round(together, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # its connect failures, expected
    figures = asyncio.run(_measure())
    if args.json:
        print(json.dumps(figures))
        return
    print(f"probe of 4 devices, 3 unreachable: {figures['probe_s']:.2f} s "
          f"(one device after another: {figures['one_by_one_s']:.2f} s)")


if __name__ == "__main__":
    main()
