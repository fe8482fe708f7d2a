"""The end-to-end rig lives in ``heatd.hil.rig.daemon``, shared with the benchmarks."""

from heatd.hil.rig.daemon import DEMO_SITE, Observer, Stack, running_stack, write_site

__all__ = ["DEMO_SITE", "Observer", "Stack", "running_stack", "write_site"]
