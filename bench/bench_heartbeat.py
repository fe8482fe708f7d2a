"""Heartbeat and write-truth figures, with the real daemon in-process against pymodbus
servers (TCP, and RTU over a socat pty pair).

(a) The heartbeat's worst interval, as the server saw the writes, while the heat-pump unit
on the same TCP gateway / the same RS-485 line is silent. The bound is one cycle period
plus one request timeout. (b) The time from another client's write of the recovery-valve
setpoint to heatd writing it back (read-back every ``--verify-every`` seconds).

    .venv/bin/python bench/bench_heartbeat.py [--seconds 30] [--verify-every 1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient

from heatd.drivers.modbus import Table
from heatd.hil.rig.heartbeat import PLC, VALVE_ADDRESS, heartbeat_with_silent_unit, running
from heatd.hil.rig.waiting import until

CYCLE, TIMEOUT = 0.5, 0.5


async def silent_unit(serial: bool, seconds: float) -> dict[str, float | int]:
    with tempfile.TemporaryDirectory() as tmp:
        worst, beats = await heartbeat_with_silent_unit(Path(tmp), serial=serial,
                                                        seconds=seconds, cycle=CYCLE,
                                                        timeout=TIMEOUT)
    return {"worst_interval_s": round(worst, 3), "heartbeats": beats,
            "bound_s": CYCLE + TIMEOUT}


async def foreign_write(rounds: int, verify_every: float) -> dict[str, float | int]:
    """Seconds from a foreign write of the valve register to the daemon's correction."""
    delays: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with running(Path(tmp), serial=False, cycle=CYCLE, timeout=TIMEOUT) as rig:
            rig.daemon.writer.verify_every = verify_every  # read-back period
            await until(lambda: all(s["verified"] for s in rig.daemon.writer.status().values()),
                        15, what="every output verified")
            held = (await rig.server.get(PLC, Table.HOLDING, VALVE_ADDRESS, 1))[0]
            other = AsyncModbusTcpClient("127.0.0.1", port=rig.server.port)
            await other.connect()
            try:
                for i in range(rounds):
                    await asyncio.sleep(verify_every * (0.3 + 0.4 * (i % 3)))  # any phase
                    await other.write_register(VALVE_ADDRESS, 777, device_id=PLC)
                    written = time.monotonic()
                    async with asyncio.timeout(verify_every * 4 + 5):
                        while True:
                            fixes = [r.at for r in rig.server.writes(PLC, VALVE_ADDRESS)
                                     if r.registers == (held,) and r.at > written]
                            if fixes:
                                delays.append(fixes[0] - written)
                                break
                            await asyncio.sleep(0.005)
            finally:
                other.close()
            alarms = sum(1 for name, _ in rig.daemon.alarms if name == "write_mismatch")
    return {"verify_every_s": verify_every, "rounds": rounds, "write_mismatch_alarms": alarms,
            "correction_s_median": round(statistics.median(delays), 3),
            "correction_s_max": round(max(delays), 3)}


async def main(args: argparse.Namespace) -> dict[str, object]:
    return {
        "heartbeat_silent_unit_tcp": await silent_unit(False, args.seconds),
        "heartbeat_silent_unit_rtu": await silent_unit(True, args.seconds),
        "foreign_write_correction": await foreign_write(args.rounds, args.verify_every),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--verify-every", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    import logging

    logging.disable(logging.CRITICAL)  # pymodbus logs every timeout of the silent unit
    figures = asyncio.run(main(arguments))
    if arguments.json:
        print(json.dumps(figures))
    else:
        for name, values in figures.items():
            print(name, " ".join(f"{k}={v}" for k, v in values.items()))
