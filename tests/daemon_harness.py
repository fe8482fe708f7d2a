"""The end-to-end rig lives in ``hil.rig.daemon``, shared with the benchmarks."""

from hil.rig.daemon import DEMO_SITE, Observer, Stack, running_stack, write_site

__all__ = ["DEMO_SITE", "Observer", "Stack", "running_stack", "write_site"]
