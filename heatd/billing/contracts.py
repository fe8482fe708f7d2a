"""What the site sells and guarantees, as the ``contracts:`` section of the site file.

A heat-purchase agreement names a customer, the points of its heat meter (or, where a
point is not given, the site's roles: ``hp.heat_energy``, ``hp.heat``, ``dh.supply_temp``,
``dh.return_temp``), the supply temperature it was promised, an optional capacity
committed per season and hour of day, and prices. The cooling guarantee is the data
centre's side: the rack-inlet class and the coolant supply limit the servers were promised,
and the meters of the data centre's own energy (the ERF's denominator).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Name = Annotated[str, Field(pattern=r"^[a-z0-9_-]+$", min_length=1, max_length=64)]
PointRef = Annotated[str, Field(pattern=r"^[a-z0-9_-]+\.[a-z0-9_-]+$")]
Month = Annotated[int, Field(ge=1, le=12)]
Hour = Annotated[int, Field(ge=0, le=24)]

RACK_INLET_CLASSES: dict[str, float] = {"recommended": 27.0, "A1": 32.0, "A2": 35.0}
"""ASHRAE rack inlet air limits (degC): recommended envelope, allowable A1 and A2."""


class _Strict(BaseModel):
    # built when first validated, with the site (see heatd.config.Strict)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False,
                              defer_build=True)


class HeatMeterPoints(_Strict):
    """The customer's heat meter. A point left out is taken from the site's role."""

    energy: PointRef | None = Field(
        default=None,
        description="Heat energy counter (kWh, Wh or MWh); default: role hp.heat_energy.")
    power: PointRef | None = Field(
        default=None,
        description="Heat power (kW); default: role hp.heat. Integrated when there is "
        "no counter, and compared with the counter otherwise.")
    supply_temp: PointRef | None = Field(
        default=None, description="Supply temperature at the meter; default: role dh.supply_temp.")
    return_temp: PointRef | None = Field(
        default=None, description="Return temperature at the meter; default: role dh.return_temp.")


class Commitment(_Strict):
    """Capacity the site promised for some months and hours of the day (site time)."""

    months: list[Month] = Field(default_factory=lambda: list(range(1, 13)),
                                description="Months the commitment holds in (1-12).")
    hours: tuple[Hour, Hour] = Field(default=(0, 24), description="[from, to) hours of the day.")
    kw: Annotated[float, Field(ge=0)] = Field(description="Committed heat power (kW).")

    @model_validator(mode="after")
    def _ordered(self) -> Commitment:
        if self.hours[0] >= self.hours[1]:
            raise ValueError("hours: [from, to) with from before to")
        return self

    def covers(self, month: int, hour: int) -> bool:
        return month in self.months and self.hours[0] <= hour < self.hours[1]


class HeatPrices(_Strict):
    heat_per_mwh: Annotated[float, Field(ge=0)] = Field(
        default=45.0,
        description="Price of a MWh delivered at or above the contracted temperature.")
    shortfall_per_mwh: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="Penalty per MWh of committed energy not delivered.")
    currency: str = "EUR"


class HeatPurchase(_Strict):
    """A heat-purchase agreement with one customer."""

    name: Name
    customer: str
    meter: HeatMeterPoints = Field(default_factory=lambda: HeatMeterPoints())
    min_supply_temp_c: float = Field(description="Contracted minimum supply temperature.")
    committed: list[Commitment] = Field(
        default_factory=list, description="Committed capacity; the first entry that covers "
        "an hour counts.")
    prices: HeatPrices = Field(default_factory=lambda: HeatPrices())
    tolerance: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.05, description="Counter and integrated power differing by more than this share "
        "(and 0.5 kWh) flag the hour 'meter_disagreement'.")

    def committed_kw(self, month: int, hour: int) -> float:
        return next((c.kw for c in self.committed if c.covers(month, hour)), 0.0)


class CoolingMeterPoints(_Strict):
    """The data centre's own meters. A point left out is taken from the site's role."""

    it_energy: PointRef | None = Field(default=None, description="default: role it.energy")
    it_power: PointRef | None = Field(default=None, description="default: role it.power")
    hp_power: PointRef | None = Field(default=None, description="default: role hp.power")
    fan_power: PointRef | None = Field(
        default=None, description="Dry-cooler fan power (kW); no role: without it the fans are "
        "outside the metered boundary, and the report says so.")


class CoolingGuarantee(_Strict):
    """What the data centre was promised: cooling first."""

    name: Name = "cooling"
    rack_inlet_class: Literal["recommended", "A1", "A2"] = Field(
        default="A1", description="ASHRAE rack inlet class: recommended 27, A1 32, A2 35 degC.")
    supply_limit_c: float = Field(default=45.0, description="Coolant supply limit (W45: 45 degC).")
    meter: CoolingMeterPoints = Field(default_factory=lambda: CoolingMeterPoints())

    @property
    def rack_inlet_limit_c(self) -> float:
        return RACK_INLET_CLASSES[self.rack_inlet_class]


class Contracts(_Strict):
    heat_purchase: list[HeatPurchase] = Field(default_factory=list)
    cooling_guarantee: CoolingGuarantee | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> Contracts:
        names = [c.name for c in self.heat_purchase]
        if self.cooling_guarantee is not None:
            names.append(self.cooling_guarantee.name)
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"contract names must differ: {', '.join(twice)} used twice")
        return self
