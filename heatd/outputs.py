"""Outputs in engineering units that the control core does not decide (a district-heating
network's supply setpoint in degC): the site file gives each its value and bounds, an
operator may lease another value within them, and the cycle hands the result to the
setpoint writer like any other output.

They stay out of the control core on purpose: nothing in the cooling guarantee depends
on them, and the core's outputs are fractions of a device's range, not degrees.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from heatd.config import EngineeringSetpoint


@dataclass(frozen=True, slots=True)
class OutputLease:
    value: float
    expires: float
    by: str


class EngineeringOutputs:
    """The configured value of each output, or the operator's lease on it, clamped."""

    def __init__(self, setpoints: Mapping[str, EngineeringSetpoint]) -> None:
        self._setpoints = dict(setpoints)
        self._leases: dict[str, OutputLease] = {}

    def configure(self, setpoints: Mapping[str, EngineeringSetpoint]) -> None:
        """A reloaded site: new values and bounds; leases on outputs it still has stay."""
        self._setpoints = dict(setpoints)
        self._leases = {role: lease for role, lease in self._leases.items()
                        if role in self._setpoints}

    def lease(self, role: str, value: float, ttl_s: float, now: float, by: str) -> None:
        """Hold ``value`` on ``role`` for ``ttl_s`` seconds; ValueError outside its bounds."""
        setpoint = self._setpoints.get(role)
        if setpoint is None:
            raise ValueError(f"{role!r} is not configured in setpoints")
        if not setpoint.min <= value <= setpoint.max:
            raise ValueError(f"{role} {value:g} outside [{setpoint.min:g}, {setpoint.max:g}]")
        if not ttl_s > 0:
            raise ValueError("a lease needs a positive ttl")
        self._leases[role] = OutputLease(value, now + ttl_s, by)

    def clear(self, role: str) -> OutputLease | None:
        """End the lease on ``role``; the lease ended, None when there was none."""
        return self._leases.pop(role, None)

    def expire(self, now: float) -> list[tuple[str, OutputLease]]:
        """Drop the leases that ran out, and say which."""
        gone = [(role, lease) for role, lease in self._leases.items() if lease.expires <= now]
        for role, _ in gone:
            del self._leases[role]
        return gone

    def values(self) -> dict[str, float]:
        """What to write now: the lease or the configured value, within the bounds."""
        out = {}
        for role, setpoint in self._setpoints.items():
            lease = self._leases.get(role)
            value = setpoint.value if lease is None else lease.value
            out[role] = min(max(value, setpoint.min), setpoint.max)
        return out

    def leases(self, now: float) -> list[dict[str, object]]:
        """For the control state: each lease with the seconds it has left."""
        return [{"role": role, "value": lease.value, "by": lease.by,
                 "expires_in_s": round(lease.expires - now, 1)}
                for role, lease in self._leases.items()]
