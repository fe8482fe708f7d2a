"""The fixed-rate grid the control cycle and the poll loops share."""

from __future__ import annotations

from heatd.tasks import next_tick


def test_next_tick_keeps_the_grid_and_skips_missed_ticks() -> None:
    assert next_tick(10.0, 10.2, 1.0) == 11.0  # on time
    assert next_tick(10.0, 13.5, 1.0) == 14.0  # overran 3.5 periods: no burst, same phase
