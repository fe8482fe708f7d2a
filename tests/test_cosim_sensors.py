"""The sensor noise a co-simulated controller reads: seeded, Gaussian with the site's spread,
on temperatures only, and the same stream however the readings are handed over."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from heatd.hil.plant import initial_state
from heatd.hil.plant_params import PlantParams
from heatd.hil.sensors import SensorLayer, SensorNoise, true_value_names, true_values


def _params(std: float = 0.05, quantum: float = 0.0) -> PlantParams:
    return PlantParams.model_validate({"sensors": {"noise_std_k": std, "quantum_k": quantum}})


def test_noise_is_the_gauss_stream_of_its_seed_on_temperatures_only() -> None:
    params = _params()
    names = true_value_names(params)
    temps = [i for i, n in enumerate(names) if "_temp" in n]
    noise = SensorNoise(params, 5, names)
    rng = random.Random("5/sensor-noise")
    clean = true_values(initial_state(params), params)
    for _ in range(100):  # 100 x 13 draws: past the end of the first batch
        values = list(clean)
        noise.apply(values)
        expect = list(clean)
        for i in temps:
            expect[i] += rng.gauss(0.0, 0.05)
        assert values == expect
    assert [v for i, v in enumerate(values) if i not in temps] == [
        v for i, v in enumerate(clean) if i not in temps
    ]


def test_noise_has_the_site_spread() -> None:
    params = _params(std=0.2)
    names = ("a_temp",)
    noise = SensorNoise(params, 1, names)
    draws = []
    for _ in range(20_000):
        values = [10.0]
        noise.apply(values)
        draws.append(values[0] - 10.0)
    assert abs(statistics.fmean(draws)) < 0.01
    assert statistics.stdev(draws) == pytest.approx(0.2, rel=0.03)


def test_a_nan_reading_stays_nan_and_takes_no_draw() -> None:
    params = _params()
    names = ("a_temp", "b_temp")
    with_nan, without = SensorNoise(params, 3, names), SensorNoise(params, 3, names)
    values = [math.nan, 20.0]
    with_nan.apply(values)
    alone = [20.0, 0.0]
    without.apply(alone)
    assert math.isnan(values[0])
    assert values[1] == alone[0]


def test_resolution_rounds_after_the_noise() -> None:
    params = _params(quantum=0.1)
    noise = SensorNoise(params, 2, ("a_temp",))
    for _ in range(200):
        values = [21.234]
        noise.apply(values)
        assert values[0] == round(values[0] / 0.1) * 0.1
        assert abs(values[0] - 21.234) < 0.05 * 6 + 0.05


def test_the_sensor_layer_reads_the_same_stream_as_the_co_simulation() -> None:
    params = _params()
    state = initial_state(params)
    layer = SensorLayer(params, 9)
    names = true_value_names(params)
    noise = SensorNoise(params, 9, names)
    for k in range(60):
        values = true_values(state, params)
        noise.apply(values)
        assert layer.read(state, [], float(k)) == dict(zip(names, values, strict=True))
