"""Role names: the one list the controller, the config loader and the simulator share.

The controller never names a register; it names roles. Keeping every role name, its
direction and how redundant sensors combine in one table means a typo in a site file is
caught when the site is loaded, not as a silently missing input at run time.
"""

from __future__ import annotations

from enum import Enum


class Worst(Enum):
    """How several points bound to one role combine: the side that is worse for cooling."""

    HIGH = "high"  # the highest value counts (temperatures, power, fault bits)
    LOW = "low"  # the lowest value counts (coolant flow, demand we may sell into)


# Input roles -> how redundant points combine.
COOLANT_SUPPLY_TEMP = "coolant.supply_temp"
COOLANT_RETURN_TEMP = "coolant.return_temp"
COOLANT_FLOW = "coolant.flow"
IT_POWER = "it.power"
IT_ENERGY = "it.energy"
RACK_INLET_TEMP = "rack.inlet_temp"
HP_RUNNING = "hp.running"
HP_FAULT = "hp.fault"
HP_TRIP_CODE = "hp.trip_code"
HP_LOCKOUT = "hp.lockout"
HP_MIN_OFF_ACTIVE = "hp.min_off_active"
"""The heat pump's own anti-short-cycle timer is running: it will not start yet. Not a
lockout: it clears by itself and needs no reset."""
HP_POWER = "hp.power"
HP_HEAT = "hp.heat"
HP_HEAT_ENERGY = "hp.heat_energy"
DH_SUPPLY_TEMP = "dh.supply_temp"
DH_RETURN_TEMP = "dh.return_temp"
DH_DEMAND = "dh.demand"
STORAGE_TOP_TEMP = "storage.top_temp"
STORAGE_BOTTOM_TEMP = "storage.bottom_temp"
OUTDOOR_TEMP = "outdoor.temp"
PLC_FALLBACK = "plc.fallback"

# Feedback roles: what the actuators report back, so writes can be verified.
VALVE_RECOVERY_ACTUAL = "valve.recovery.actual"
DRYCOOLER_FAN_ACTUAL = "drycooler.fan.actual"
HP_CAPACITY_ACTUAL = "hp.capacity.actual"

# Output roles.
VALVE_RECOVERY = "valve.recovery"
HP_ENABLE = "hp.enable"
HP_CAPACITY = "hp.capacity"
HP_RESET = "hp.reset"
DRYCOOLER_FAN = "drycooler.fan"
PLC_HEARTBEAT = "plc.heartbeat"
DH_SUPPLY_SETPOINT = "dh.supply_setpoint"
"""The district-heating network's supply temperature setpoint, degC."""

INPUT_ROLES: dict[str, Worst] = {
    COOLANT_SUPPLY_TEMP: Worst.HIGH,
    COOLANT_RETURN_TEMP: Worst.HIGH,
    COOLANT_FLOW: Worst.LOW,
    IT_POWER: Worst.HIGH,
    IT_ENERGY: Worst.HIGH,
    RACK_INLET_TEMP: Worst.HIGH,
    HP_RUNNING: Worst.HIGH,
    HP_FAULT: Worst.HIGH,
    HP_TRIP_CODE: Worst.HIGH,
    HP_LOCKOUT: Worst.HIGH,
    HP_MIN_OFF_ACTIVE: Worst.HIGH,
    HP_POWER: Worst.HIGH,
    HP_HEAT: Worst.LOW,
    HP_HEAT_ENERGY: Worst.LOW,
    DH_SUPPLY_TEMP: Worst.HIGH,
    DH_RETURN_TEMP: Worst.HIGH,
    DH_DEMAND: Worst.LOW,
    STORAGE_TOP_TEMP: Worst.HIGH,
    STORAGE_BOTTOM_TEMP: Worst.HIGH,
    OUTDOOR_TEMP: Worst.HIGH,
    PLC_FALLBACK: Worst.HIGH,
}

FEEDBACK_ROLES: dict[str, str] = {
    VALVE_RECOVERY_ACTUAL: VALVE_RECOVERY,
    DRYCOOLER_FAN_ACTUAL: DRYCOOLER_FAN,
    HP_CAPACITY_ACTUAL: HP_CAPACITY,
}
"""Feedback role -> the output role whose write it verifies."""

ENGINEERING_OUTPUTS: frozenset[str] = frozenset({DH_SUPPLY_SETPOINT})
"""Outputs in engineering units that the control core does not decide: the site file
gives each a value and bounds (``setpoints:``), an operator may lease another value within
them, and heatd writes it like any setpoint."""

OUTPUT_ROLES: frozenset[str] = frozenset(
    {VALVE_RECOVERY, HP_ENABLE, HP_CAPACITY, HP_RESET, DRYCOOLER_FAN, PLC_HEARTBEAT}
) | ENGINEERING_OUTPUTS

MULTI_POINT_ROLES: frozenset[str] = frozenset({RACK_INLET_TEMP, IT_POWER})
"""Roles that normally bind several distinct points (one per rack), not redundant copies."""

SUMMED_ROLES: frozenset[str] = frozenset({IT_POWER})
"""Roles whose points are parts of one quantity (one power meter per rack): the role's
value is their sum, known only while every part is."""

REQUIRED_INPUTS: frozenset[str] = frozenset({COOLANT_SUPPLY_TEMP, HP_RUNNING, HP_FAULT})
"""Without these the controller can only hold the safe state."""

REQUIRED_OUTPUTS: frozenset[str] = frozenset(
    {VALVE_RECOVERY, HP_ENABLE, HP_CAPACITY, DRYCOOLER_FAN, PLC_HEARTBEAT}
)

ALL_ROLES: frozenset[str] = frozenset(INPUT_ROLES) | frozenset(FEEDBACK_ROLES) | OUTPUT_ROLES

BOOL_ROLES: frozenset[str] = frozenset(
    {HP_RUNNING, HP_FAULT, HP_LOCKOUT, HP_MIN_OFF_ACTIVE, PLC_FALLBACK})

DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    COOLANT_SUPPLY_TEMP: (-10.0, 100.0),
    COOLANT_RETURN_TEMP: (-10.0, 100.0),
    COOLANT_FLOW: (0.0, 10_000.0),
    IT_POWER: (0.0, 100_000.0),
    IT_ENERGY: (0.0, 1e15),
    RACK_INLET_TEMP: (-10.0, 70.0),
    HP_RUNNING: (0.0, 1.0),
    HP_FAULT: (0.0, 1.0),
    HP_TRIP_CODE: (0.0, 65_535.0),
    HP_LOCKOUT: (0.0, 1.0),
    HP_MIN_OFF_ACTIVE: (0.0, 1.0),
    HP_POWER: (0.0, 100_000.0),
    HP_HEAT: (0.0, 200_000.0),
    HP_HEAT_ENERGY: (0.0, 1e15),
    DH_SUPPLY_TEMP: (-10.0, 150.0),
    DH_RETURN_TEMP: (-10.0, 150.0),
    DH_DEMAND: (0.0, 1_000_000.0),
    STORAGE_TOP_TEMP: (-10.0, 150.0),
    STORAGE_BOTTOM_TEMP: (-10.0, 150.0),
    OUTDOOR_TEMP: (-60.0, 60.0),
    PLC_FALLBACK: (0.0, 1.0),
    VALVE_RECOVERY_ACTUAL: (-0.05, 1.05),
    DRYCOOLER_FAN_ACTUAL: (-0.05, 1.05),
    HP_CAPACITY_ACTUAL: (-0.05, 1.05),
}
"""Physical plausibility ranges in engineering units (degC, kW, kWh, m3/h, 0..1)."""

DEFAULT_FROZEN_ROLES: tuple[str, ...] = (
    COOLANT_SUPPLY_TEMP,
    COOLANT_RETURN_TEMP,
    RACK_INLET_TEMP,
)
"""Analogue cooling inputs that always carry some noise; an exactly constant value there
means a hung transmitter or a gateway replaying its last register."""

FROZEN_WITNESSES: dict[str, tuple[str, ...]] = {
    COOLANT_SUPPLY_TEMP: (COOLANT_RETURN_TEMP, IT_POWER),
    COOLANT_RETURN_TEMP: (COOLANT_SUPPLY_TEMP, IT_POWER),
    RACK_INLET_TEMP: (COOLANT_SUPPLY_TEMP, IT_POWER),
}
"""What each frozen-checked role measures moves with: the supply and the return differ by
the IT heat over the flow, and a rack's inlet air is the supply (which feeds every rack's
coil) plus its share of the IT heat. A value that has not changed while one of these moved
well past what its resolution hides is stuck; one on a loop where none of them moved is
just quiet. A role without witnesses is judged by time alone."""


def is_input_role(name: str) -> bool:
    """True for roles the controller reads (measurements and feedback)."""
    return name in INPUT_ROLES or name in FEEDBACK_ROLES
