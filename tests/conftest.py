"""Suite-wide settings. Hypothesis runs without per-example deadlines: this suite runs on
shared two-core machines, where a deadline measures the neighbours, not the code."""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("heatd", deadline=None, print_blob=True)
settings.load_profile("heatd")
