"""The control core: pure decisions, no I/O. ``core.step`` is the entry point;
``baseline.step`` is the rule-based comparison with the same shape.

Nothing is re-exported here: every name has one import path, its own module, and a config
check that needs only ``params`` does not load the whole core.
"""
