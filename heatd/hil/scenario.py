"""Scenarios: a window of the real year, site parameters and a fault schedule.

A scenario YAML (heatd/hil/scenarios/<name>.yaml) names a weather file, a start hour and a
duration; IT load comes from the Google cluster CPU trace scaled to the site
(idle + (peak - idle) * cpu) with seeded sub-hourly noise and training bursts, and the
district-heating demand from the weather through the BDEW profile. Scenario time t runs
from 0 s at `start_hour`. Everything random is drawn from the seed at load time, so the
same seed gives the same scenario, bit for bit.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from heatd.hil import series
from heatd.hil.faults import (
    ALL_KINDS,
    COMMS_KINDS,
    KIND_PARAMS,
    PHYSICAL_KINDS,
    SENSOR_KINDS,
    Fault,
)
from heatd.hil.plant import Disturbances, PlantState, initial_state
from heatd.hil.plant_params import PlantParams, load_params
from heatd.hil.sensors import DEVICES, Readings, SensorLayer, measure, sensor_names

SCENARIOS_DIR = Path(__file__).parent / "scenarios"


class ScenarioError(ValueError):
    """A scenario that cannot be read or validated; the message names the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ITVariation(_Strict):
    """Sub-hourly IT load variation: AR(1) noise plus training bursts."""

    noise_std: float = Field(default=0.03, ge=0)
    noise_step_s: float = Field(default=60.0, gt=0)
    noise_corr_s: float = Field(default=600.0, gt=0)
    bursts_per_day: float = Field(default=2.0, ge=0)
    burst_min_s: float = Field(default=600.0, gt=0)
    burst_max_s: float = Field(default=3600.0, gt=0)
    burst_kw_min: float = Field(default=20.0, ge=0)
    burst_kw_max: float = Field(default=80.0, ge=0)


class FaultSpec(_Strict):
    kind: Literal[tuple(sorted(ALL_KINDS))]  # type: ignore[valid-type]
    target: str = ""
    start_s: float = Field(ge=0)
    duration_s: float | None = Field(default=None, gt=0)  # None: until the end of the scenario
    start_jitter_s: float = Field(default=0.0, ge=0)  # seeded, uniform in [0, jitter)
    params: dict[str, float] = {}

    @model_validator(mode="after")
    def _check(self) -> FaultSpec:
        allowed = set(KIND_PARAMS[self.kind])
        if self.kind == "sensor_stuck":
            allowed.add("value")
        unknown = set(self.params) - allowed
        if unknown:
            raise ValueError(f"{self.kind}: unknown params {sorted(unknown)}")
        if self.kind in PHYSICAL_KINDS and self.target:
            raise ValueError(f"{self.kind} takes no target")
        if self.kind not in PHYSICAL_KINDS and not self.target:
            raise ValueError(f"{self.kind} needs a target")
        return self


class ScenarioSpec(_Strict):
    name: str
    description: str = ""
    site: str | None = None  # site name (heatd/hil/sites) or path; None: built-in defaults
    site_overrides: dict[str, Any] = {}
    weather: Literal["copenhagen", "chicago"] = "copenhagen"
    start_hour: int = Field(ge=0, lt=series.HOURS_PER_YEAR)
    duration_h: float = Field(gt=0, le=series.HOURS_PER_YEAR)
    seed: int = 0
    it: ITVariation = ITVariation()
    faults: list[FaultSpec] = []


@dataclass(frozen=True, slots=True)
class YearSeries:
    """Hourly series of a whole year (8760 values) that replace the bundled ones: IT power
    (kW), outdoor temperature (degC), network heat demand (kW). None keeps the bundled."""

    it_kw: tuple[float, ...] | None = None
    outdoor_c: tuple[float, ...] | None = None
    demand_kw: tuple[float, ...] | None = None


class Scenario:
    """A loaded scenario: disturbances and faults as functions of scenario time t (s)."""

    def __init__(self, spec: ScenarioSpec, params: PlantParams, seed: int,
                 year: YearSeries | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.description = spec.description
        self.params = params
        self.seed = seed
        self.start_hour = spec.start_hour
        self.duration_s = spec.duration_h * 3600.0
        hours = math.ceil(spec.duration_h) + 2
        window = [(spec.start_hour + h) % series.HOURS_PER_YEAR for h in range(hours)]
        year = year or YearSeries()
        temps = year.outdoor_c or series.outdoor_temp(spec.weather)
        dh = params.dh
        demand = year.demand_kw or series.dh_demand(spec.weather, dh.annual_demand_mwh,
                                                    dh.building_type)
        it = params.it
        if year.it_kw is not None:
            self._it_base = [year.it_kw[h] for h in window]
        else:
            cpu = series.cpu_load()
            self._it_base = [it.idle_kw + (it.peak_kw - it.idle_kw) * cpu[h] for h in window]
        self._temp = [temps[h] for h in window]
        self._demand = [demand[h] for h in window]
        self._peak = it.peak_kw
        self._return = params.dh.return_temp_c
        self._var_step = spec.it.noise_step_s
        noise, self._burst = self._variation(spec.it, seed)
        # What disturbances(t) takes from these, worked out once rather than every step:
        self._it_slope = _slopes(self._it_base)
        self._temp_slope = _slopes(self._temp)
        self._noise_factor = [1.0 + x for x in noise]
        self.faults = self._schedule(spec, seed)
        self._physical = tuple(f for f in self.faults if f.kind in PHYSICAL_KINDS)

    def _variation(self, v: ITVariation, seed: int) -> tuple[list[float], list[float]]:
        steps = math.ceil(self.duration_s / v.noise_step_s) + 2
        rng = random.Random(f"{seed}/it-noise")
        a = math.exp(-v.noise_step_s / v.noise_corr_s)
        b = math.sqrt(1.0 - a * a) * v.noise_std
        x = rng.gauss(0.0, v.noise_std)
        noise = []
        for _ in range(steps):
            noise.append(x)
            x = a * x + b * rng.gauss(0.0, 1.0)
        burst = [0.0] * steps
        rng = random.Random(f"{seed}/it-bursts")
        if v.bursts_per_day > 0:
            t = rng.expovariate(v.bursts_per_day / 86400.0)
            while t < self.duration_s:
                length = rng.uniform(v.burst_min_s, max(v.burst_min_s, v.burst_max_s))
                kw = rng.uniform(v.burst_kw_min, max(v.burst_kw_min, v.burst_kw_max))
                first = int(t / v.noise_step_s)
                for k in range(first, min(steps, int((t + length) / v.noise_step_s) + 1)):
                    burst[k] += kw
                t += length + rng.expovariate(v.bursts_per_day / 86400.0)
        return noise, burst

    def _schedule(self, spec: ScenarioSpec, seed: int) -> tuple[Fault, ...]:
        rng = random.Random(f"{seed}/faults")
        out = []
        for i, f in enumerate(spec.faults):
            start = f.start_s + (rng.uniform(0.0, f.start_jitter_s) if f.start_jitter_s else 0.0)
            end = start + f.duration_s if f.duration_s is not None else math.inf
            out.append(Fault(i, f.kind, f.target, start, end, dict(f.params)))
        return tuple(out)

    def hour_of_year(self, t: float) -> float:
        return (self.start_hour + t / 3600.0) % series.HOURS_PER_YEAR

    def disturbances(self, t: float) -> Disturbances:
        """Plant inputs at scenario time t: interpolated hourly data, noise, bursts, faults.

        A co-simulation asks every step, so each ``min`` and ``max`` is a comparison that
        gives the same value, and the slopes and noise factors are made at load."""
        end = self.duration_s
        t_in = 0.0 if t < 0.0 else t  # min(max(t, 0.0), end)
        t_in = end if end < t_in else t_in
        x = t_in / 3600.0
        i = int(x)
        w = x - i
        k = int(t_in / self._var_step)
        it_kw = (self._it_base[i] + w * self._it_slope[i]) * self._noise_factor[k] + self._burst[k]
        peak = self._peak
        it_kw = peak if peak < it_kw else it_kw
        temp = self._temp[i] + w * self._temp_slope[i]
        demand = self._demand[i]
        ret = self._return
        hp_fault = stuck = False
        for f in self._physical:
            if not f.start_s <= t < f.end_s:
                continue
            if f.kind == "hp_trip":
                hp_fault = True
            elif f.kind == "valve_stuck":
                stuck = True
            elif f.kind == "it_load_step":
                it_kw += f.param("step_kw")
            elif f.kind == "dh_demand_collapse":
                demand *= f.param("factor")
            elif f.kind == "storage_full":
                demand *= f.param("demand_factor")
                ret = f.param("return_temp_c")
        return _new_tuple(Disturbances, (it_kw, temp, demand, ret, hp_fault, stuck))

    def active_faults(self, t: float) -> list[Fault]:
        return [f for f in self.faults if f.active(t)]

    def initial_state(self, heartbeat: int = 0) -> PlantState:
        d = self.disturbances(0.0)
        return initial_state(
            self.params, it_power_kw=d.it_power_kw, outdoor_temp_c=d.outdoor_temp_c,
            heartbeat=heartbeat,
        )  # fmt: skip

    def measure(
        self, state: PlantState, t: float, held: Mapping[int, float] | None = None
    ) -> Readings:
        """Pure `heatd.hil.sensors.measure` with this scenario's active faults and params."""
        return measure(state, self.active_faults(t), t, self.params, held)

    def sensor_layer(self) -> SensorLayer:
        """A fresh stateful reader that remembers stuck values from the fault start."""
        return SensorLayer(self.params, self.seed)


_new_tuple = tuple.__new__
"""A NamedTuple made as its ``_make`` does, without its Python-level constructor."""


def _slopes(hourly: list[float]) -> list[float]:
    """Each hour's change to the next: the interpolation's slope."""
    return [b - a for a, b in pairwise(hourly)]


def _check_targets(spec: ScenarioSpec, params: PlantParams) -> None:
    sensors = set(sensor_names(params))
    for i, f in enumerate(spec.faults):
        if f.kind in SENSOR_KINDS and f.target not in sensors:
            raise ValueError(f"faults[{i}]: unknown sensor {f.target!r} (known: {sorted(sensors)})")
        if f.kind in COMMS_KINDS and f.target not in DEVICES:
            raise ValueError(f"faults[{i}]: unknown device {f.target!r} (known: {sorted(DEVICES)})")


def scenario_from_dict(
    data: Mapping[str, Any],
    seed: int | None = None,
    source: str = "<dict>",
    base: Path | None = None,
) -> Scenario:
    """Build a scenario from already-parsed YAML; `base` resolves a relative site path."""
    try:
        spec = ScenarioSpec.model_validate(dict(data))
        site: str | Path | None = spec.site
        if spec.site is not None and base is not None and (
                "/" in spec.site or spec.site.endswith(".yaml")):
            site = base / spec.site
        params = load_params(site, spec.site_overrides)
        _check_targets(spec, params)
    except (ValidationError, ValueError) as exc:
        raise ScenarioError(f"{source}: {exc}") from exc
    return Scenario(spec, params, spec.seed if seed is None else seed)


def scenario_path(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if "/" not in text and not text.endswith((".yaml", ".yml")):
        return SCENARIOS_DIR / f"{text}.yaml"
    return Path(text)


def load_scenario(name_or_path: str | Path, seed: int | None = None) -> Scenario:
    """Load a library scenario by name (heatd/hil/scenarios/<name>.yaml) or a YAML path.

    `seed` overrides the file's seed; the same seed always gives the same scenario.
    """
    path = scenario_path(name_or_path)
    try:
        data = YAML(typ="safe", pure=True).load(path)
    except (OSError, YAMLError) as exc:
        raise ScenarioError(f"{path}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{path}: top level must be a mapping")
    return scenario_from_dict(data, seed, str(path), path.parent)


def list_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIOS_DIR.glob("*.yaml"))
