"""The heartbeat the site PLC watches keeps its pace while a unit on the same TCP gateway
or the same RS-485 line is silent: every interval stays within one cycle period plus one
request timeout (checked with a generous margin for a loaded machine; the bench prints the
figure). The daemon runs in-process against real servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from heatd.hil.rig.heartbeat import heartbeat_with_silent_unit

CYCLE, TIMEOUT = 0.5, 0.5
MARGIN = 0.5
"""Scheduling slack of a shared two-core machine; without the priority lane and the
breaker the silent unit's queued timeouts alone add whole seconds."""


@pytest.mark.parametrize("serial", [False, True], ids=["tcp", "rtu"])
async def test_heartbeat_keeps_its_pace_beside_a_silent_unit(tmp_path: Path,
                                                              serial: bool) -> None:
    seconds = 6.0
    worst, beats = await heartbeat_with_silent_unit(tmp_path, serial=serial,
                                                    seconds=seconds, cycle=CYCLE,
                                                    timeout=TIMEOUT)
    assert worst <= CYCLE + TIMEOUT + MARGIN, worst
    # one heartbeat per cycle at most is lost to a timeout in flight
    assert beats >= seconds / (CYCLE + TIMEOUT), beats
