"""The heartbeat rig lives in ``heatd.hil.rig.heartbeat``, shared with the benchmarks."""

from heatd.hil.rig.heartbeat import (
    PLC,
    SENSORS,
    VALVE_ADDRESS,
    Rig,
    heartbeat_with_silent_unit,
    running,
)

__all__ = ["PLC", "SENSORS", "VALVE_ADDRESS", "Rig", "heartbeat_with_silent_unit", "running"]
