"""Property test: the control core's two-argument min, max and clamp pick the very argument
the builtins pick, so replacing a builtin call by one of them changes no decision: equal
values of either sign, NaN in any position and infinities included."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from heatd.control.minmax import clamp, max2, min2

number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, float("nan"), float("inf"), float("-inf")]),
    st.integers(min_value=-3, max_value=3),
)


@given(number, number)
def test_min2_and_max2_pick_what_the_builtins_pick(a: float, b: float) -> None:
    assert min2(a, b) is min(a, b)
    assert max2(a, b) is max(a, b)


@given(number, number, number)
def test_clamp_picks_what_nested_builtins_pick(x: float, lo: float, hi: float) -> None:
    assert clamp(x, lo, hi) is min(max(x, lo), hi)


def test_the_first_argument_wins_a_tie_and_a_nan_comparison() -> None:
    nan = float("nan")
    assert str(min2(0.0, -0.0)) == "0.0" and str(max2(-0.0, 0.0)) == "-0.0"
    assert min2(nan, 1.0) is nan and min2(1.0, nan) == 1.0
    assert clamp(nan, 0.0, 1.0) is nan
