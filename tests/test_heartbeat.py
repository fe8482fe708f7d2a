"""The heartbeat the site PLC watches keeps its pace while a unit on the same TCP gateway
or the same RS-485 line is silent: every interval stays within one cycle period plus one
request timeout (checked with a generous margin for a loaded machine; the bench prints the
figure). The daemon runs in-process against real servers."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from heatd.hil.rig.heartbeat import (
    HEARTBEAT_ADDRESS,
    PLC,
    heartbeat_times,
    heartbeat_with_silent_unit,
    running,
)
from heatd.hil.rig.waiting import until

CYCLE, TIMEOUT = 0.5, 0.5
MARGIN = 0.5
"""Scheduling slack of a shared two-core machine; without the priority lane and the
breaker the silent unit's queued timeouts alone add whole seconds."""


@pytest.mark.parametrize(("serial", "retries"), [(False, 0), (True, 0), (False, 3)],
                         ids=["tcp", "rtu", "tcp-retries"])
async def test_heartbeat_keeps_its_pace_beside_a_silent_unit(tmp_path: Path, serial: bool,
                                                              retries: int) -> None:
    """With retries, each attempt is a turn of its own: pymodbus' own retries held the
    gateway for all of them (four timeouts here) while the heartbeat waited."""
    seconds = 6.0
    worst, beats = await heartbeat_with_silent_unit(tmp_path, serial=serial,
                                                    seconds=seconds, cycle=CYCLE,
                                                    timeout=TIMEOUT, retries=retries)
    assert worst <= CYCLE + TIMEOUT + MARGIN, worst
    # one heartbeat per cycle at most is lost to a timeout in flight
    assert beats >= seconds / (CYCLE + TIMEOUT), beats


# --- the heartbeat keeps changing whatever point carries it -----------------------------

@pytest.mark.parametrize(("point", "start", "expected"), [
    # an INT watchdog word: past 32767 the old counter could not be encoded, and stopped
    ("table: holding, address: 0, data_type: int16", 32764, [32765, 32766, 32767, 0, 1, 2]),
    # ten units a count: every count must still change the register
    ("table: holding, address: 0, data_type: uint16, scale: 10", 3, [4, 5, 6, 7]),
    # a write_max of 5: the counter wraps under it instead of standing at it
    ("table: holding, address: 0, data_type: uint16, write_max: 5", 3, [4, 5, 0, 1, 2]),
], ids=["int16-wrap", "scale-10", "write-max-5"])
async def test_the_heartbeat_changes_every_cycle_within_its_point(
        tmp_path: Path, point: str, start: int, expected: list[int]) -> None:
    async with running(tmp_path, serial=False, cycle=0.2, heartbeat=point) as rig:
        rig.daemon._beats = start - 1  # as after a long run, before the first cycle
        await until(lambda: len(heartbeat_times(rig.server)) >= len(expected) + 2, 15.0,
                    what="heartbeat writes")
        raw = [r.registers[0] for r in rig.server.writes(PLC, HEARTBEAT_ADDRESS)]
    assert raw[:len(expected)] == expected, raw
    assert all(a != b for a, b in itertools.pairwise(raw)), raw
    assert not [name for name, _ in rig.daemon.alarms if name == "write_failed"]


async def test_a_coil_heartbeat_toggles(tmp_path: Path) -> None:
    """A watchdog bit: the old counter wrote ON at every cycle, which never changes."""
    async with running(tmp_path, serial=False, cycle=0.2,
                       heartbeat="table: coil, address: 0, data_type: bool") as rig:
        def bits() -> list[bool]:
            return [r.bits[0] for r in rig.server.coil_writes(PLC, HEARTBEAT_ADDRESS)]

        await until(lambda: len(bits()) >= 6, 15.0, what="heartbeat coil writes")
    written = bits()
    assert all(a != b for a, b in itertools.pairwise(written)), written
