"""min, max and clamp of two floats, picked exactly as the builtins pick them.

Python 3.11's builtin ``min`` and ``max`` parse their keyword arguments on every call:
about 140 ns for two floats, where a conditional expression takes 17 ns and one of these
functions about 40. The control step makes some two dozen such calls a cycle, over three
million cycles per simulated year at 10 s steps.

The results are the builtins' to the bit, NaN and signed zeros included: like them, each
keeps its first argument unless the second is strictly smaller (larger).
"""

from __future__ import annotations


def min2(a: float, b: float) -> float:
    """``min(a, b)``."""
    return b if b < a else a


def max2(a: float, b: float) -> float:
    """``max(a, b)``."""
    return b if b > a else a


def clamp(x: float, lo: float, hi: float) -> float:
    """``min(max(x, lo), hi)``: ``x`` raised to ``lo``, then lowered to ``hi``."""
    raised = lo if lo > x else x
    return hi if hi < raised else raised
