"""Plant parameters: a strict pydantic model with defaults for a 250 kW edge site.

Every number the physics needs lives here, so a site is described by one YAML file
(`heatd/hil/sites/default.yaml`) or by nothing at all: the defaults are a complete, plausible
site. The model is validated once; `compile_params` then turns it into plain floats for
the hot stepping loop, where pydantic would be far too slow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

SITES_DIR = Path(__file__).parent / "sites"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ITParams(_Strict):
    """IT load and how its heat reaches the coolant."""

    idle_kw: float = Field(default=100.0, ge=0)
    peak_kw: float = Field(default=250.0, gt=0)
    liquid_share: float = Field(default=0.8, ge=0, le=1)
    air_capacity_kj_k: float = Field(default=1500.0, gt=0)
    coil_ua_kw_k: float = Field(default=25.0, gt=0)
    rack_count: int = Field(default=4, ge=0)
    rack_inlet_spread_k: float = Field(default=1.5, ge=0)
    throttle_start_c: float = 50.0
    """Coolant supply at which the servers start throttling (their own protection)."""
    shutdown_c: float = 55.0
    """Coolant supply at which the servers have throttled to nothing: the plant's ceiling."""

    @model_validator(mode="after")
    def _idle_below_peak(self) -> ITParams:
        if self.idle_kw > self.peak_kw:
            raise ValueError("idle_kw must not exceed peak_kw")
        if not self.throttle_start_c < self.shutdown_c:
            raise ValueError("throttle_start_c must be below shutdown_c")
        return self


class LoopParams(_Strict):
    """Coolant loop: two lumped masses (racks/cold plates, supply side) and a fixed flow."""

    flow_kg_s: float = Field(default=7.2, gt=0)
    cp_kj_kg_k: float = Field(default=4.18, gt=0)
    rack_capacity_kj_k: float = Field(default=2500.0, gt=0)
    supply_capacity_kj_k: float = Field(default=4200.0, gt=0)
    supply_limit_c: float = 45.0


class ValveParams(_Strict):
    """The 3-way recovery valve. Diverting: the dry cooler gets only the flow the recovery
    branch does not take. Mixing: the recovery branch and its bypass mix again before the
    dry cooler, which sees the whole flow."""

    kind: Literal["diverting", "mixing"] = "diverting"
    stroke_s: float = Field(default=90.0, gt=0)
    lag_s: float = Field(default=0.0, ge=0)
    """First-order lag of the actuator behind its command, before the stroke rate."""


class RecoveryHxParams(_Strict):
    """Recovery heat exchanger between coolant and heat-pump evaporator."""

    approach_k: float = Field(default=2.0, ge=0)
    source_min_out_c: float = 10.0


class HeatPumpParams(_Strict):
    heat_nominal_kw: float = Field(default=300.0, gt=0)
    min_capacity: float = Field(default=0.2, gt=0, le=1)
    ramp_s: float = Field(default=120.0, gt=0)
    cop_model: Literal["regression", "carnot"] = "regression"
    carnot_efficiency: float = Field(default=0.5, gt=0, le=1)
    cop_factor: float = Field(default=1.0, gt=0)
    """This machine's COP relative to the model's curve (a better or worse unit)."""
    lift_min_k: float = Field(default=10.0, gt=0)
    lift_max_k: float = Field(default=78.0, gt=0)
    max_starts_per_hour: int = Field(default=6, ge=1)
    evap_inlet_max_c: float = 50.0
    cond_outlet_max_c: float = 82.0
    cond_unload_k: float = Field(default=3.0, ge=0)
    """The machine unloads to keep its condenser outlet this far below its trip."""
    cond_flow_max_kg_s: float = Field(default=5.0, gt=0)


class DHParams(_Strict):
    """District-heating side: temperatures, network size and its demand profile."""

    supply_temp_c: float = 70.0
    return_temp_c: float = 40.0
    cp_kj_kg_k: float = Field(default=4.19, gt=0)
    max_flow_kg_s: float = Field(default=15.0, gt=0)
    annual_demand_mwh: float = Field(default=4000.0, ge=0)
    building_type: Literal["MFH", "COM"] = "MFH"
    accept_band_k: float = Field(default=2.0, gt=0)
    """The network takes heat only at its contracted supply temperature (supply_temp_c):
    its draw fades out over this band below it, so heat below contract is not delivered."""

    @model_validator(mode="after")
    def _supply_above_return(self) -> DHParams:
        if self.supply_temp_c <= self.return_temp_c:
            raise ValueError("supply_temp_c must be above return_temp_c")
        return self


class StorageParams(_Strict):
    """Stratified tank between heat pump and network; without it a small header buffers."""

    enabled: bool = True
    volume_m3: float = Field(default=20.0, gt=0)
    nodes: int = Field(default=4, ge=2)
    header_volume_m3: float = Field(default=0.5, gt=0)
    density_kg_m3: float = Field(default=1000.0, gt=0)


class DryCoolerParams(_Strict):
    ua_nominal_kw_k: float = Field(default=35.0, ge=0)
    natural_share: float = Field(default=0.1, ge=0, le=1)
    fan_exponent: float = Field(default=0.8, gt=0)
    fan_power_nominal_kw: float = Field(default=7.5, ge=0)
    fan_ramp_s: float = Field(default=10.0, gt=0)
    design_ambient_c: float = 35.0
    air_offset_k: float = 0.0
    """Air entering the coils above the outdoor temperature (recirculation, a hot roof)."""


class PLCParams(_Strict):
    heartbeat_timeout_s: float = Field(default=30.0, gt=0)
    high_limit_c: float | None = None
    """Supply temperature above which the PLC forces the valve to the dry cooler and the
    fans to full on its own; None: the loop's supply limit. Released below it by
    `high_limit_release_k`."""
    high_limit_release_k: float = Field(default=1.0, ge=0)


class SensorParams(_Strict):
    """Measurement imperfection of the temperature sensors (seeded by the scenario)."""

    noise_std_k: float = Field(default=0.05, ge=0)
    """Standard deviation of a reading, K: an RTD transmitter's noise. Never exactly zero
    on a real site, which is why heatd may call an unchanging reading frozen."""
    quantum_k: float = Field(default=0.0, ge=0)
    """Resolution of the readings; 0: exact."""


class PlantParams(_Strict):
    """All plant parameters; unknown keys anywhere are errors."""

    it: ITParams = ITParams()
    loop: LoopParams = LoopParams()
    valve: ValveParams = ValveParams()
    recovery_hx: RecoveryHxParams = RecoveryHxParams()
    heat_pump: HeatPumpParams = HeatPumpParams()
    dh: DHParams = DHParams()
    storage: StorageParams = StorageParams()
    drycooler: DryCoolerParams = DryCoolerParams()
    plc: PLCParams = PLCParams()
    sensors: SensorParams = SensorParams()


class ParamsError(ValueError):
    """A site file that cannot be read or validated; the message names the file."""


def _read_yaml(path: Path) -> Any:
    try:
        return YAML(typ="safe", pure=True).load(path)
    except (OSError, YAMLError) as exc:
        raise ParamsError(f"{path}: {exc}") from exc


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge nested mappings; the override wins key by key (used for scenario overrides)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def site_path(name_or_path: str | Path) -> Path:
    """A bare name means `heatd/hil/sites/<name>.yaml`; anything else is a path."""
    text = str(name_or_path)
    if "/" not in text and not text.endswith((".yaml", ".yml")):
        return SITES_DIR / f"{text}.yaml"
    return Path(text)


def params_from_dict(data: Mapping[str, Any] | None, source: str = "<dict>") -> PlantParams:
    try:
        return PlantParams.model_validate(dict(data or {}))
    except ValidationError as exc:
        raise ParamsError(f"{source}: {exc}") from exc


def load_params(
    name_or_path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> PlantParams:
    """Load site parameters; None gives the built-in defaults (no file needed)."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if name_or_path is not None:
        path = site_path(name_or_path)
        raw = _read_yaml(path)
        if raw is not None and not isinstance(raw, Mapping):
            raise ParamsError(f"{path}: top level must be a mapping")
        data = dict(raw or {})
        source = str(path)
    if overrides:
        data = deep_merge(data, overrides)
    return params_from_dict(data, source)


class Compiled:
    """PlantParams flattened to plain floats for `plant.step` (no pydantic per step)."""

    __slots__ = (
        "accept_band",
        "air_cap",
        "air_offset",
        "carnot",
        "carnot_eff",
        "coil_ua",
        "cond_flow_max",
        "cond_max",
        "cond_unload",
        "cop_factor",
        "cp",
        "cp_dh",
        "dc_exp",
        "dc_nat",
        "dc_ua",
        "dh_flow_max",
        "dh_set",
        "evap_max",
        "fan_p",
        "fan_rate",
        "flow",
        "hb_timeout",
        "hi_limit",
        "hi_release",
        "hp_min",
        "hp_nom",
        "hp_rate",
        "hx_approach",
        "lift_max",
        "lift_min",
        "liquid_share",
        "loop_c",
        "max_dt",
        "max_starts",
        "mixing",
        "node_cap",
        "nodes",
        "rack_cap",
        "shutdown",
        "src_min",
        "sup_cap",
        "sup_limit",
        "throttle_start",
        "valve_lag",
        "valve_rate",
    )

    def __init__(self, p: PlantParams) -> None:
        self.liquid_share = p.it.liquid_share
        self.air_cap = p.it.air_capacity_kj_k
        self.coil_ua = p.it.coil_ua_kw_k
        self.flow = p.loop.flow_kg_s
        self.cp = p.loop.cp_kj_kg_k
        self.loop_c = p.loop.flow_kg_s * p.loop.cp_kj_kg_k
        self.rack_cap = p.loop.rack_capacity_kj_k
        self.sup_cap = p.loop.supply_capacity_kj_k
        self.sup_limit = p.loop.supply_limit_c
        self.valve_rate = 1.0 / p.valve.stroke_s
        self.valve_lag = p.valve.lag_s
        self.mixing = p.valve.kind == "mixing"
        self.throttle_start = p.it.throttle_start_c
        self.shutdown = p.it.shutdown_c
        self.hx_approach = p.recovery_hx.approach_k
        self.src_min = p.recovery_hx.source_min_out_c
        hp = p.heat_pump
        self.hp_nom = hp.heat_nominal_kw
        self.hp_min = hp.min_capacity
        self.hp_rate = 1.0 / hp.ramp_s
        self.carnot = hp.cop_model == "carnot"
        self.carnot_eff = hp.carnot_efficiency
        self.cop_factor = hp.cop_factor
        self.lift_min = hp.lift_min_k
        self.lift_max = hp.lift_max_k
        self.max_starts = hp.max_starts_per_hour
        self.evap_max = hp.evap_inlet_max_c
        self.cond_max = hp.cond_outlet_max_c
        self.cond_unload = hp.cond_outlet_max_c - hp.cond_unload_k
        self.cond_flow_max = hp.cond_flow_max_kg_s
        self.dh_set = p.dh.supply_temp_c
        self.cp_dh = p.dh.cp_kj_kg_k
        self.dh_flow_max = p.dh.max_flow_kg_s
        self.accept_band = p.dh.accept_band_k
        st = p.storage
        self.nodes = st.nodes if st.enabled else 1
        volume = st.volume_m3 if st.enabled else st.header_volume_m3
        self.node_cap = volume * st.density_kg_m3 * p.dh.cp_kj_kg_k / self.nodes
        dc = p.drycooler
        self.dc_ua = dc.ua_nominal_kw_k
        self.dc_nat = dc.natural_share
        self.dc_exp = dc.fan_exponent
        self.fan_p = dc.fan_power_nominal_kw
        self.fan_rate = 1.0 / dc.fan_ramp_s
        self.air_offset = dc.air_offset_k
        self.hb_timeout = p.plc.heartbeat_timeout_s
        hi = p.plc.high_limit_c
        self.hi_limit = p.loop.supply_limit_c if hi is None else hi
        self.hi_release = self.hi_limit - p.plc.high_limit_release_k
        self.max_dt = self._stable_dt(p.dh.return_temp_c)

    def _stable_dt(self, dh_return_c: float) -> float:
        """Explicit Euler is stable and accurate while a step stays well inside the
        shortest time constant of any node, so longer steps are split into substeps."""
        taus = (
            self.air_cap / self.coil_ua,
            self.rack_cap / self.loop_c,
            self.sup_cap / (self.loop_c + self.coil_ua),
            self.node_cap / (self.cp_dh * (self.cond_flow_max + self.dh_flow_max)),
            # the network's draw fades over accept_band: a feedback on the top node
            self.node_cap * self.accept_band
            / (self.cp_dh * self.dh_flow_max * max(self.dh_set - dh_return_c, 1.0)),
        )
        return 0.5 * min(taus)

    def substeps(self, dt: float) -> int:
        return max(1, math.ceil(dt / self.max_dt - 1e-9))


_COMPILED: dict[int, tuple[PlantParams, Compiled]] = {}


def compile_params(p: PlantParams) -> Compiled:
    """Flatten once per params object (kept alive by the cache, so its id stays unique)."""
    hit = _COMPILED.get(id(p))
    if hit is None or hit[0] is not p:
        hit = (p, Compiled(p))
        _COMPILED[id(p)] = hit
    return hit[1]
