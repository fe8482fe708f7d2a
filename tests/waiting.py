"""The wait for a real peer lives in ``heatd.hil.rig.waiting``, shared with the rigs and the
benchmarks."""

from heatd.hil.rig.waiting import read_online, until

__all__ = ["read_online", "until"]
