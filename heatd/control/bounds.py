"""Bounds and setpoints: the structure that keeps cooling first.

Only the safety envelope can make a :class:`Bounds`: its constructor takes a key,
``_ENVELOPE_KEY``, that only this module and ``envelope.py`` name (a test checks it), and
refuses any other. Every other layer can only narrow one with :meth:`Bounds.tighten`.
:class:`Setpoints` likewise take ``_ADMIT_KEY``, named only here, so they exist only as the
result of :meth:`Bounds.admit`: no output can reach a device without passing the
envelope's clamp, whatever the optimiser or an operator proposes. The keys are init-only
(``InitVar``), so ``dataclasses.replace`` cannot copy one into a forged, wider instance.
"""

from __future__ import annotations

import math
from dataclasses import InitVar, dataclass

from heatd.control import roles
from heatd.control.minmax import max2, min2

_ENVELOPE_KEY = object()
_ADMIT_KEY = object()


@dataclass(frozen=True, slots=True)
class Bounds:
    """Hard limits for one cycle: dry-cooler floor, valve ceiling, heat-pump permissions.

    ``hp_start``: a stopped heat pump may be started. ``hp_run``: a running one may keep
    running (a heat pump that may not run may not start either). ``cap_max`` caps capacity
    (and so heat extraction) while it runs.
    """

    key: InitVar[object]
    fan_min: float
    valve_max: float
    cap_max: float
    hp_start: bool
    hp_run: bool

    def __post_init__(self, key: object) -> None:
        if key is not _ENVELOPE_KEY:
            raise TypeError("Bounds are made by the safety envelope only")
        if self.hp_start and not self.hp_run:
            raise ValueError("a heat pump that may not run may not start")

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
        run = self.hp_run and hp_run
        return Bounds(
            _ENVELOPE_KEY,
            max2(self.fan_min, fan_min),
            min2(self.valve_max, valve_max),
            min2(self.cap_max, cap_max),
            self.hp_start and hp_start and run,
            run,
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
        prev: Setpoints | None = None,
    ) -> Setpoints:
        """Clamp a proposal into these bounds and the device ranges; NaN falls to the safe side.

        ``prev``, the last cycle's setpoints, is returned as it is when the clamped proposal
        equals it: most cycles change no output, and Setpoints cost some 10,000 machine
        instructions to make."""
        valve = min2(valve if valve >= 0.0 else 0.0, self.valve_max)  # NaN -> 0: to the dry cooler
        fan = max2(fan if fan <= 1.0 else 1.0, self.fan_min)  # NaN -> full dry cooler
        enable = hp_enable and self.hp_run and (was_enabled or self.hp_start)
        cap = 0.0
        if enable:
            cap = min2(cap_min if math.isnan(hp_capacity) else hp_capacity, self.cap_max)
            if cap < cap_min:
                cap = min2(cap_min, self.cap_max)
        if (prev is not None and _same(valve, prev.valve) and _same(fan, prev.fan)
                and enable == prev.hp_enable and _same(cap, prev.hp_capacity)
                and hp_reset == prev.hp_reset):
            return prev
        return Setpoints(_ADMIT_KEY, valve, fan, enable, cap, hp_reset)


def _same(a: float, b: float) -> bool:
    """The same float: equal and, for zeros, of the same sign (``0.0 == -0.0``, but a
    Setpoints kept from last cycle must hold exactly what a fresh one would)."""
    return a == b and (a != 0.0 or math.copysign(1.0, a) == math.copysign(1.0, b))


@dataclass(frozen=True, slots=True)
class Setpoints:
    """Outputs of one cycle, already inside the envelope's bounds."""

    key: InitVar[object]
    valve: float
    fan: float
    hp_enable: bool
    hp_capacity: float
    hp_reset: bool

    def __post_init__(self, key: object) -> None:
        if key is not _ADMIT_KEY:
            raise TypeError("Setpoints come only from Bounds.admit()")

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

    def __repr__(self) -> str:
        return (
            f"Setpoints(valve={self.valve:.3f}, fan={self.fan:.3f}, enable={self.hp_enable}, "
            f"capacity={self.hp_capacity:.3f}, reset={self.hp_reset})"
        )


def device_bounds() -> Bounds:
    """The devices' own ranges and nothing else: what a controller without an envelope gets."""
    return Bounds(_ENVELOPE_KEY, 0.0, 1.0, 1.0, True, True)


SAFE_BOUNDS = Bounds(_ENVELOPE_KEY, 1.0, 0.0, 0.0, False, False)
"""Worst case: full dry cooler, valve to the dry-cooler side, heat pump off."""

SAFE_SETPOINTS = SAFE_BOUNDS.admit(0.0, 1.0, False, 0.0, False, False, 0.0)
"""Where every controller starts and where it falls back to."""
