"""Bounds and setpoints: the structure that keeps cooling first.

Only the safety envelope can make a :class:`Bounds` (it holds ``_ENVELOPE_KEY``); every
other layer can only narrow one with :meth:`Bounds.tighten`. :class:`Setpoints` exist only
as the result of :meth:`Bounds.admit`, so no output can reach a device without passing the
envelope's clamp, whatever the optimiser or an operator proposes.
"""

from __future__ import annotations

from heatd.control import roles

_set = object.__setattr__
_ENVELOPE_KEY = object()
_ADMIT_KEY = object()


class Bounds:
    """Hard limits for one cycle: dry-cooler floor, valve ceiling, heat-pump permissions.

    ``hp_start``: a stopped heat pump may be started. ``hp_run``: a running one may keep
    running. ``cap_max`` caps capacity (and so heat extraction) while it runs.
    """

    __slots__ = ("cap_max", "fan_min", "hp_run", "hp_start", "valve_max")

    def __init__(
        self,
        key: object,
        fan_min: float,
        valve_max: float,
        cap_max: float,
        hp_start: bool,
        hp_run: bool,
    ) -> None:
        if key is not _ENVELOPE_KEY:
            raise TypeError("Bounds are made by the safety envelope only")
        _set(self, "fan_min", fan_min)
        _set(self, "valve_max", valve_max)
        _set(self, "cap_max", cap_max)
        _set(self, "hp_start", hp_start and hp_run)
        _set(self, "hp_run", hp_run)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Bounds are read-only; use tighten()")

    def __repr__(self) -> str:
        return (
            f"Bounds(fan_min={self.fan_min:.3f}, valve_max={self.valve_max:.3f}, "
            f"cap_max={self.cap_max:.3f}, hp_start={self.hp_start}, hp_run={self.hp_run})"
        )

    def tighten(
        self,
        fan_min: float = 0.0,
        valve_max: float = 1.0,
        cap_max: float = 1.0,
        hp_start: bool = True,
        hp_run: bool = True,
    ) -> Bounds:
        """Narrower bounds; anything looser than the current ones is ignored, never applied."""
        return Bounds(
            _ENVELOPE_KEY,
            max(self.fan_min, fan_min),
            min(self.valve_max, valve_max),
            min(self.cap_max, cap_max),
            self.hp_start and hp_start,
            self.hp_run and hp_run,
        )

    def admit(
        self,
        valve: float,
        fan: float,
        hp_enable: bool,
        hp_capacity: float,
        hp_reset: bool,
        was_enabled: bool,
        cap_min: float,
    ) -> Setpoints:
        """Clamp a proposal into these bounds and the device ranges; NaN falls to the safe side."""
        valve = valve if valve >= 0.0 else 0.0  # NaN -> 0: all coolant to the dry cooler
        if valve > self.valve_max:
            valve = self.valve_max
        fan = fan if fan <= 1.0 else 1.0  # NaN -> full dry cooler
        if fan < self.fan_min:
            fan = self.fan_min
        enable = hp_enable and self.hp_run and (was_enabled or self.hp_start)
        if enable:
            cap = hp_capacity if hp_capacity == hp_capacity else cap_min  # NaN -> least
            if cap > self.cap_max:
                cap = self.cap_max
            if cap < cap_min:
                cap = cap_min if cap_min <= self.cap_max else self.cap_max
        else:
            cap = 0.0
        sp = _new(Setpoints)  # Setpoints(_ADMIT_KEY, ...) without the per-field setattr
        _set_valve(sp, valve)
        _set_fan(sp, fan)
        _set_enable(sp, enable)
        _set_capacity(sp, cap)
        _set_reset(sp, hp_reset)
        return sp


class Setpoints:
    """Outputs of one cycle, already inside the envelope's bounds."""

    __slots__ = ("fan", "hp_capacity", "hp_enable", "hp_reset", "valve")

    def __init__(
        self,
        key: object,
        valve: float,
        fan: float,
        hp_enable: bool,
        hp_capacity: float,
        hp_reset: bool,
    ) -> None:
        if key is not _ADMIT_KEY:
            raise TypeError("Setpoints come only from Bounds.admit()")
        _set(self, "valve", valve)
        _set(self, "fan", fan)
        _set(self, "hp_enable", hp_enable)
        _set(self, "hp_capacity", hp_capacity)
        _set(self, "hp_reset", hp_reset)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Setpoints are read-only")

    @property
    def extraction(self) -> float:
        """Heat-pump capacity actually asked for: 0 while disabled."""
        return self.hp_capacity if self.hp_enable else 0.0

    def as_roles(self) -> dict[str, float | bool]:
        """Output role -> value, as the daemon writes them."""
        return {
            roles.VALVE_RECOVERY: self.valve,
            roles.DRYCOOLER_FAN: self.fan,
            roles.HP_ENABLE: self.hp_enable,
            roles.HP_CAPACITY: self.hp_capacity,
            roles.HP_RESET: self.hp_reset,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Setpoints):
            return NotImplemented
        return self.as_roles() == other.as_roles()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Setpoints(valve={self.valve:.3f}, fan={self.fan:.3f}, enable={self.hp_enable}, "
            f"capacity={self.hp_capacity:.3f}, reset={self.hp_reset})"
        )


_new = object.__new__
_set_valve, _set_fan, _set_enable, _set_capacity, _set_reset = (
    Setpoints.__dict__[name].__set__  # type: ignore[attr-defined]
    for name in ("valve", "fan", "hp_enable", "hp_capacity", "hp_reset")
)


def device_bounds() -> Bounds:
    """The devices' own ranges and nothing else: what a controller without an envelope gets."""
    return Bounds(_ENVELOPE_KEY, 0.0, 1.0, 1.0, True, True)


SAFE_BOUNDS = Bounds(_ENVELOPE_KEY, 1.0, 0.0, 0.0, False, False)
"""Worst case: full dry cooler, valve to the dry-cooler side, heat pump off."""

SAFE_SETPOINTS = SAFE_BOUNDS.admit(0.0, 1.0, False, 0.0, False, False, 0.0)
"""Where every controller starts and where it falls back to."""
