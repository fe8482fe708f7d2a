"""The tests' Modbus peers live in ``heatd.hil.rig.modbus``, shared with the benchmarks."""

from heatd.hil.rig.modbus import FUNCTION_CODE, Faults, SimServer, free_port, pty_pair, unit

__all__ = ["FUNCTION_CODE", "Faults", "SimServer", "free_port", "pty_pair", "unit"]
