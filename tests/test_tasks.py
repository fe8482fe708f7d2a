"""The fixed-rate grid the control cycle and the poll loops share, and stopping tasks."""

from __future__ import annotations

from heatd.tasks import next_tick


def test_next_tick_keeps_the_grid_and_skips_missed_ticks() -> None:
    assert next_tick(10.0, 10.2, 1.0) == 11.0  # on time
    assert next_tick(10.0, 13.5, 1.0) == 14.0  # overran 3.5 periods: no burst, same phase


async def test_cancel_all_cancels_again_a_task_that_swallowed_its_cancellation() -> None:
    import asyncio

    from heatd.drivers.cancel import cancel_all

    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as a wait_for that lost the cancellation to a reply

    tasks = [asyncio.create_task(stubborn())]
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_all(tasks), 5)
    assert swallowed == 1 and tasks == []
