"""Control parameters: the ``control:`` section of a site file.

Validated once, when the site loads (strict types, unknown keys are errors), then read
as plain attributes on every cycle. Every duration ends in ``_s`` and every rate in
``_per_s`` so :meth:`ControlParams.time_scaled` can speed a whole controller up for an
accelerated simulator without a clock hack in the daemon.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from heatd.control import roles

RoleSpec = tuple[float, float, bool, bool]

# built when first validated, with the site (see heatd.config.Strict)
_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True, defer_build=True)

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class Range(BaseModel):
    """Physically plausible range of a role, in its engineering unit."""

    model_config = _STRICT
    lo: float
    hi: float

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.lo < self.hi:
            raise ValueError(f"lo ({self.lo}) must be below hi ({self.hi})")
        return self


class ValidationParams(BaseModel):
    """When a signal stops counting as a measurement."""

    model_config = _STRICT
    stale_after_s: Positive = 10.0
    future_tolerance_s: NonNegative = 5.0
    frozen_after_s: Positive | None = 1800.0
    """A value unchanged this long is declared frozen, if what it measures has moved
    meanwhile (``frozen_witness_k``). A 0.1 K sensor on a loop held inside its deadband
    can read the same for hours (a rack inlet, seen on the plant family), and a frozen
    verdict on a cooling input is the worst case."""
    frozen_witness_k: NonNegative = 0.5
    """An unchanged temperature is frozen only once a witness temperature
    (``roles.FROZEN_WITNESSES``: the return for the supply, the supply for the return and
    the rack inlets) has moved more than this since the value last changed, or the IT load
    more than ``frozen_witness_load_share``: a healthy transmitter would have followed.
    Several times a transmitter's resolution and above the loop's control band, so a quiet
    reading on a steady loop stays trusted while a stuck one is caught as the loop moves.
    Where no witness is measured, time alone judges."""
    frozen_witness_load_share: Fraction = 0.2
    """The IT load's share of change, from its value when the reading last changed, that
    counts as the process moving: on the simulator's plant a fifth of a 200 kW load moves
    a rack inlet some 0.3 K through the room air, and the return more."""
    frozen_roles: Annotated[tuple[str, ...], Field(strict=False)] = roles.DEFAULT_FROZEN_ROLES
    ranges: dict[str, Range] = Field(default_factory=dict)
    rack_inlet_min_good: Annotated[int, Field(ge=1)] | None = None
    """Good rack inlet points needed to know the rack temperature; None = all but one (of
    two or more). Each rack point watches a different rack, so a dead one is an unwatched
    rack: its coil is still fed by the measured supply and the others are watched, so the
    envelope counts racks known from fewer than all their points only while the supply
    is measured."""

    @model_validator(mode="after")
    def _known_roles(self) -> Self:
        unknown = sorted(
            r for r in (*self.frozen_roles, *self.ranges) if not roles.is_input_role(r)
        )
        if unknown:
            raise ValueError(f"unknown input roles: {', '.join(unknown)}")
        return self


SUPPLY_LIMIT_SPAN = (17.0, 90.0, "ASHRAE's W17 to a hot-water W+ loop's 90 degC; 45 degC "
                     "is 113 in degF")
"""Where a coolant supply limit can lie: from ASHRAE's coldest liquid-cooling class (W17)
to the hottest water loop built for heat reuse (W+ is open-ended above 45 degC; hot-water
direct-to-chip loops run up to about 90 degC). Outside it the number is a typo (450 for 45)
or another unit (113, W45 in degF: any usual limit of 33 degC or more is above 90 in degF).
The role's plausible range (``validation.ranges``) bounds it further, in the site checks."""
RACK_INLET_LIMIT_SPAN = (18.0, 45.0, "ASHRAE's recommended low end to class A4's high end")
"""Where a rack inlet limit can lie: from the low end of ASHRAE's recommended air envelope
(18 degC) to the top of its widest allowable class (A4, 45 degC). Below, every rack would
be over its limit for good; above, no server takes air that warm."""
SUPPLY_LOW_SPAN = (-20.0, 30.0, "a glycol loop's freezing side to above a warm room's dew point")
"""Where the coolant's low limit can lie."""


def _within(span: tuple[float, float, str]) -> Any:
    """A temperature limit bounded to ``span`` (low, high, why), refused with the reason."""
    low, high, why = span

    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(f"{value:g} degC lies outside {low:g} to {high:g} degC ({why}): "
                             "a typo, or a unit other than degC?")
        return value

    return AfterValidator(check)


class EnvelopeParams(BaseModel):
    """Cooling guarantee: the limits no later layer may cross."""

    model_config = _STRICT
    supply_limit_c: Annotated[float, _within(SUPPLY_LIMIT_SPAN)] = 45.0
    supply_margin_k: Positive = 3.0
    max_rise_k_per_s: Positive = 0.01
    rise_window_s: Positive = 60.0
    rise_horizon_s: Positive = 300.0
    """A fast rise counts only if, kept up this long, it would reach the margin band: a
    warm-up 20 K below the limit is no reason to stop recovering heat."""
    rack_inlet_limit_c: Annotated[float, _within(RACK_INLET_LIMIT_SPAN)] = 27.0
    rack_inlet_margin_k: Positive = 2.0
    flow_min: NonNegative | None = None
    valve_mismatch_tol: Fraction = 0.15
    valve_mismatch_s: Positive = 360.0
    """How long a valve off its command may go without moving ``valve_mismatch_tol`` toward
    it: a valve on its way, however slow (up to a 2400 s stroke at the defaults), follows;
    a seized one is declared after this. The supply rules guard cooling meanwhile."""
    valve_clear_s: Positive = 3600.0
    """A valve declared not following stays declared until it has followed this long, so
    a valve that sticks now and then does not cycle the heat pump with its alarm."""
    fan_mismatch_tol: Fraction = 0.15
    fan_mismatch_s: Positive = 60.0
    capacity_mismatch_tol: Fraction = 0.25
    capacity_mismatch_s: Positive = 300.0
    """A compressor ramps and unloads on its own: it is judged over minutes, not seconds."""
    blind_rise_k_per_s: Positive | None = None
    """The fastest the supply can rise while its reading is lost, heatd holds the cooling
    as it was and the IT load does not grow (loads shift and the weather turns even
    then). Commissioning sets it from the loop's heat capacity, e.g. a fifth of the IT
    peak over the loop's kJ/K; unset, a lost supply reading is the worst case at once."""
    blind_hold_max_s: Positive = 900.0
    """The longest ride-through on a lost supply reading."""
    blind_it_growth: NonNegative = 0.1
    """IT load growth (share of the load at the last reading) that ends a ride-through."""
    supply_estimate: bool = True
    """While the supply reading is lost, run on its estimate from the good return, IT
    power and flow (``heatd.control.estimate``) instead of a ride-through or the worst
    case, once the loop has taught the estimate ``estimate_tau_s`` of readings."""
    estimate_margin_k: NonNegative = 1.0
    """Added to the supply estimate, which is never taken warmer than the return."""
    estimate_tau_s: Positive = 300.0
    """How long the estimate learns the loop's spread, and over which it smooths the load."""
    cooling_recovery_share: Fraction = 0.3
    """Share of the coolant flow the recovery branch keeps while the heat pump is a cooling
    path beside a saturated dry cooler: enough for the whole machine's extraction (it
    cools its branch down to its source limit), while a diverting valve leaves the dry
    cooler most of the flow."""
    supply_low_c: Annotated[float, _within(SUPPLY_LOW_SPAN)] = 10.0
    """The coolant's low limit (condensation on the racks' coils, a water loop's freezing).
    While the supply is unknown the return bounds it from above, so a return at or below
    this lets the worst case's fans off; they are floored up to full as the return nears
    the supply's margin band."""

    @model_validator(mode="after")
    def _low_below_band(self) -> Self:
        if not self.supply_low_c < self.supply_limit_c - self.supply_margin_k:
            _refuse(type(self).__name__, [(
                ("supply_margin_k",), self.supply_margin_k,
                f"{self.supply_margin_k:g} K below the supply limit {self.supply_limit_c:g} "
                f"degC reaches the coolant's low limit (supply_low_c {self.supply_low_c:g} "
                "degC): the margin band must lie above it")])
        return self


class SequencerParams(BaseModel):
    """Heat-pump protection: the compressor decides how often it may be cycled."""

    model_config = _STRICT
    min_on_s: NonNegative = 600.0
    min_off_s: NonNegative = 300.0
    max_starts_per_hour: Annotated[int, Field(ge=1)] = 3
    starts_window_s: Positive = 3600.0
    capacity_min: Fraction = 0.2
    capacity_max: Fraction = 1.0
    start_timeout_s: Positive = 120.0
    stop_timeout_s: Positive = 120.0
    reset_cooldown_s: NonNegative = 600.0
    """Wait before an automatic reset: two resets 10 min apart outlast a typical 15-min
    internal fault; at 5 min both would land inside it and lock the heat pump out."""
    max_resets_per_hour: Annotated[int, Field(ge=0)] = 2
    resets_window_s: Positive = 3600.0
    reset_pulse_s: Positive = 2.0

    @model_validator(mode="after")
    def _range(self) -> Self:
        if not 0 < self.capacity_min < self.capacity_max:
            raise ValueError("need 0 < capacity_min < capacity_max")
        return self


class OptimiserParams(BaseModel):
    """Heat recovery: how hard to chase demand, and how gently."""

    model_config = _STRICT
    supply_setpoint_c: float = 40.0
    """The loop is held this warm: as warm as the margin allows, for the heat pump's COP."""
    cool_kp: NonNegative = 0.15
    """Cooling demand (fan and dry-cooler share) per K of supply above its setpoint."""
    cool_ti_s: Positive = 120.0
    cool_deadband_k: NonNegative = 0.2
    evaporator_inlet_max_c: float = 50.0
    """The heat pump's own trip limit on its evaporator inlet (the coolant return)."""
    evaporator_margin_k: NonNegative = 2.0
    """The cooling loop keeps the coolant return this far below that trip limit."""
    source_min_c: float = 7.0
    """Below this supply temperature a running heat pump unloads: heat left in a loop
    this cold is worth less than the electricity a deeper lift costs."""
    cold_band_k: Positive = 4.0
    """Below ``source_min_c`` the heat target fades to nothing over this band."""
    cap_kp: NonNegative = 0.5
    cap_ti_s: Positive = 60.0
    heat_deadband: Fraction = 0.02
    hp_nominal_heat_kw: Positive = 100.0
    hp_cop: Annotated[float, Field(gt=1)] = 3.5
    """COP assumed until the heat pump's own heat and power meters say better."""
    valve_up_per_s: Positive = 0.01
    valve_down_per_s: Positive = 0.05
    fan_up_per_s: Positive = 0.05
    fan_down_per_s: Positive = 0.01
    cap_up_per_s: Positive = 0.005
    cap_down_per_s: Positive = 0.01
    start_above: Fraction = 0.2
    stop_below: Fraction = 0.1
    start_delay_s: NonNegative = 60.0
    stop_delay_s: NonNegative = 120.0
    storage_full_c: float = 75.0
    storage_band_k: Positive = 10.0
    storage_charge_kw: NonNegative = 50.0
    dt_max_s: Positive = 10.0

    @model_validator(mode="after")
    def _hysteresis(self) -> Self:
        if not self.stop_below < self.start_above:
            raise ValueError("stop_below must be below start_above (hysteresis)")
        return self


class ControlParams(BaseModel):
    """Everything the control core needs, with safe defaults for a typical site."""

    model_config = _STRICT
    validation: ValidationParams = Field(default_factory=ValidationParams)
    envelope: EnvelopeParams = Field(default_factory=EnvelopeParams)
    sequencer: SequencerParams = Field(default_factory=SequencerParams)
    optimiser: OptimiserParams = Field(default_factory=OptimiserParams)
    @model_validator(mode="after")
    def _consistent(self) -> Self:
        env = self.envelope
        if not self.optimiser.supply_setpoint_c < env.supply_limit_c - env.supply_margin_k:
            raise ValueError(
                "optimiser.supply_setpoint_c must be below "
                "envelope.supply_limit_c - envelope.supply_margin_k"
            )
        _refuse(type(self).__name__, list(self._limits_unreachable()))
        return self

    def _limits_unreachable(self) -> Iterator[tuple[tuple[str, ...], float, str]]:
        """Envelope limits no plausible reading of their role can reach, or whose margin
        band starts below every plausible reading: a limit a valid reading never meets
        never acts, and one every reading meets holds the site in alarm for good."""
        env, specs = self.envelope, self.role_specs
        for field, margin, role in (
                ("supply_limit_c", env.supply_margin_k, roles.COOLANT_SUPPLY_TEMP),
                ("rack_inlet_limit_c", env.rack_inlet_margin_k, roles.RACK_INLET_TEMP)):
            limit = getattr(env, field)
            lo, hi = specs[role][:2]
            plausible = (f"the plausible range of {role} ({lo:g} to {hi:g} degC, "
                         "validation.ranges)")
            if limit >= hi:
                yield (("envelope", field), limit,
                       f"{limit:g} degC is not below the top of {plausible}: no valid reading "
                       "can reach it, so the limit would never act")
            elif limit - margin <= lo:
                yield (("envelope", field), limit,
                       f"{limit:g} degC less its margin ({margin:g} K) reaches the bottom of "
                       f"{plausible}: every reading would be near or over the limit")
        flow_hi = specs[roles.COOLANT_FLOW][1]
        if env.flow_min is not None and env.flow_min >= flow_hi:
            yield (("envelope", "flow_min"), env.flow_min,
                   f"{env.flow_min:g} is not below the top of the plausible range of "
                   f"{roles.COOLANT_FLOW} ({flow_hi:g}, validation.ranges): every reading "
                   "would be too low")

    @cached_property
    def role_specs(self) -> dict[str, RoleSpec]:
        """Role -> (lo, hi, worst is high, frozen-checked), read once per point per cycle."""
        ranges = dict(roles.DEFAULT_RANGES)
        ranges.update({k: (r.lo, r.hi) for k, r in self.validation.ranges.items()})
        frozen = set(self.validation.frozen_roles) if self.validation.frozen_after_s else set()
        high = {r for r, w in roles.INPUT_ROLES.items() if w is roles.Worst.HIGH}
        high |= set(roles.FEEDBACK_ROLES)
        return {r: (lo, hi, r in high, r in frozen) for r, (lo, hi) in ranges.items()}

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy whose derived tables are rebuilt, not inherited from the original."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("role_specs", None)
        return copy

    def time_scaled(self, speed: float) -> ControlParams:
        """The same controller running ``speed`` times faster (durations / speed, rates * speed).

        ``validation.stale_after_s`` keeps its value: it judges heatd's own polling, which
        does not speed up with the plant."""
        if speed <= 0:
            raise ValueError("speed must be positive")
        data = _scale(self.model_dump(), speed)
        data["validation"]["stale_after_s"] = self.validation.stale_after_s
        return ControlParams.model_validate(data)


def _refuse(model: str, problems: list[tuple[tuple[str, ...], float, str]]) -> None:
    """Raise every problem (field path in ``model``, value, reason) at once, each at its
    own field, so the site file names the line of the limit itself."""
    if problems:
        raise ValidationError.from_exception_data(model, [
            {"type": "value_error", "loc": loc, "input": value,
             "ctx": {"error": ValueError(reason)}}
            for loc, value, reason in problems])


def _scale(data: Any, speed: float) -> Any:
    if not isinstance(data, dict):
        return data
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = _scale(value, speed)
        elif value is not None and key.endswith("_per_s"):
            out[key] = value * speed
        elif value is not None and key.endswith("_s"):
            out[key] = value / speed
        else:
            out[key] = value
    return out
