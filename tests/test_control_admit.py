"""Bounds.admit keeps the last cycle's Setpoints when the clamped proposal equals them, and
makes new ones as soon as any output differs."""

from __future__ import annotations

import pytest

from heatd.control.bounds import device_bounds

CAP_MIN = 0.2
PREV = device_bounds().admit(0.6, 0.3, True, 0.5, False, True, CAP_MIN)


def test_an_unchanged_proposal_keeps_the_last_setpoints() -> None:
    assert device_bounds().admit(0.6, 0.3, True, 0.5, False, True, CAP_MIN, PREV) is PREV


def test_a_proposal_clamped_to_the_last_setpoints_keeps_them() -> None:
    b = device_bounds().tighten(valve_max=0.6)
    assert b.admit(0.9, 0.3, True, 0.5, False, True, CAP_MIN, PREV) is PREV


@pytest.mark.parametrize(("change", "field", "value"), [
    ({"valve": 0.7}, "valve", 0.7),
    ({"fan": 0.4}, "fan", 0.4),
    ({"hp_enable": False}, "hp_enable", False),
    ({"hp_capacity": 0.6}, "hp_capacity", 0.6),
    ({"hp_reset": True}, "hp_reset", True),
])
def test_any_changed_output_makes_new_setpoints(change: dict[str, object], field: str,
                                                value: object) -> None:
    proposal: dict[str, object] = {"valve": 0.6, "fan": 0.3, "hp_enable": True,
                                   "hp_capacity": 0.5, "hp_reset": False}
    proposal.update(change)
    sp = device_bounds().admit(*proposal.values(), True, CAP_MIN, PREV)
    assert sp is not PREV and getattr(sp, field) == value
    assert sp == device_bounds().admit(*proposal.values(), True, CAP_MIN)


@pytest.mark.parametrize(("last", "now"), [(0.0, -0.0), (-0.0, 0.0)])
def test_a_zero_of_the_other_sign_makes_new_setpoints(last: float, now: float) -> None:
    """Setpoints kept from the last cycle hold exactly what fresh ones would: 0.0 equals
    -0.0, but a zero of the other sign makes new ones."""
    prev = device_bounds().admit(last, last, False, 0.0, False, False, 0.2)
    kept = device_bounds().admit(now, now, False, 0.0, False, False, 0.2, prev=prev)
    assert (repr(kept.valve), repr(kept.fan)) == (repr(now), repr(now))
