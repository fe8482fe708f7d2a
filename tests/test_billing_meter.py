"""The hourly meter: energy exact from counters (across a wrap, across heatd's downtime,
with a counter read less often than the cycle) and from integrated power (constant, ramp,
step); records of heat purchase and cooling guarantee from closed hours."""

from __future__ import annotations

import json

import pytest

from heatd.billing.contracts import CoolingGuarantee, HeatPurchase
from heatd.billing.counter import counter_delta
from heatd.billing.hourly import GRACE_S, HOUR_S, HourlyMeter, Level, Resume
from heatd.billing.records import cooling_record, heat_record

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC, an hour boundary
MODULUS_32_WH = 2**32 * 0.001  # a uint32 Wh counter read in kWh


def run(meter: HourlyMeter, seconds: float, *, counter=None, power=None, supply=None,
        every: float = 1.0, counter_every: float = 1.0, start: float = T0) -> list:
    """Feed ``seconds`` of cycles; ``counter``/``power``/``supply`` are functions of the
    time since ``start``; the counter is re-read every ``counter_every`` seconds."""
    hours = []
    steps = int(seconds / every)
    for k in range(steps + 1):
        t = start + k * every
        dt = t - start
        reading = None
        if counter is not None and (k * every) % counter_every == 0:
            reading = (t, counter(dt))
        hours += meter.observe(
            t, counters={"energy": reading} if counter is not None else {},
            counters_good={"energy": counter is not None},
            powers={"power": None if power is None else power(dt)},
            levels={"supply_temp": None if supply is None else supply(dt)})
    return hours


def plain_meter(counter: bool = True, modulus: float | None = None,
                resume: Resume | None = None) -> HourlyMeter:
    return HourlyMeter({"energy": modulus} if counter else {}, ("power",),
                       {"supply_temp": Level(below=65.0)}, resume)


@pytest.mark.parametrize(("name", "power", "exact_kwh"), [
    ("constant", lambda t: 120.0, 120.0),
    ("ramp", lambda t: 60.0 + 60.0 * t / HOUR_S, 90.0),
])
def test_integrated_power_is_exact_for_constant_and_ramp(name, power, exact_kwh) -> None:
    hours = run(plain_meter(counter=False), HOUR_S + 5, power=power)
    assert len(hours) == 1
    assert hours[0].powers["power"].total == pytest.approx(exact_kwh, rel=1e-9)
    assert hours[0].powers["power"].covered_s == pytest.approx(HOUR_S)


def test_a_step_of_power_is_off_by_at_most_half_a_sample() -> None:
    """A step between two samples is known only to lie between them: the trapezoid puts
    it in the middle, so the error is at most step x sample / 2."""
    hours = run(plain_meter(counter=False), HOUR_S + 5,
                power=lambda t: 100.0 if t < 1800 else 200.0, every=2.0)
    exact = 100.0 * 0.5 + 200.0 * 0.5
    assert abs(hours[0].powers["power"].total - exact) <= 100.0 * 2.0 / 2 / HOUR_S + 1e-9


@pytest.mark.parametrize(("profile", "exact_kwh"), [
    (lambda t: 1000.0 + 120.0 * t / HOUR_S, 120.0),                          # constant
    (lambda t: 1000.0 + 60.0 * t / HOUR_S + 30.0 * (t / HOUR_S) ** 2, 90.0),  # ramp
    (lambda t: 1000.0 + (100.0 * t if t < 1800 else 100.0 * 1800 + 200.0 * (t - 1800))
     / HOUR_S, 150.0),                                                       # step
])
def test_counter_energy_is_exact_for_any_profile(profile, exact_kwh) -> None:
    hours = run(plain_meter(), 2 * HOUR_S, counter=profile, counter_every=5.0)
    assert [h.counters["energy"].kwh for h in hours[:1]] == [pytest.approx(exact_kwh)]
    assert hours[0].counters["energy"].covered_s == pytest.approx(HOUR_S)


def test_a_counter_read_less_often_than_the_cycle_is_not_zero_energy() -> None:
    """A slow poll group (30 s) and hours cut between two readings: every hour gets its
    share, and consecutive hours add up to the counter's delta."""
    hours = run(plain_meter(), 3 * HOUR_S + 100, counter=lambda t: 36.0 * t / HOUR_S,
                counter_every=30.0, start=T0 + 17)
    assert [round(h.counters["energy"].kwh, 6) for h in hours[1:3]] == [36.0, 36.0]
    assert hours[1].counters["energy"].end_value == pytest.approx(36.0 * (2 * HOUR_S - 17)
                                                                  / HOUR_S)


def test_a_wrapping_counter_is_read_across_its_wrap() -> None:
    top = MODULUS_32_WH - 10.0  # 10 kWh below the wrap of a 32-bit Wh counter
    hours = run(plain_meter(modulus=MODULUS_32_WH), HOUR_S + 10,
                counter=lambda t: (top + 36.0 * t / HOUR_S) % MODULUS_32_WH, counter_every=10)
    assert hours[0].counters["energy"].kwh == pytest.approx(36.0)
    assert not hours[0].counters["energy"].reset


def test_without_wrap_a_step_back_is_a_reset_not_energy() -> None:
    assert counter_delta(4_294_900.0, 3.0, None) is None
    assert counter_delta(4_294_900.0, 3.0, MODULUS_32_WH) == pytest.approx(70.296, abs=1e-3)
    assert counter_delta(5000.0, 3.0, MODULUS_32_WH) is None  # not near the top: a reset
    hours = run(plain_meter(), HOUR_S + 5, counter=lambda t: 5000.0 if t < 100 else 3.0)
    assert hours[0].counters["energy"].reset


def test_heatd_downtime_is_covered_from_the_counter_delta() -> None:
    """heatd stopped at 00:40 and came back at 02:20: the first reading spreads the delta
    over the hours it missed, flagged; the total is the counter's own."""
    meter = plain_meter()
    before = run(meter, 40 * 60, counter=lambda t: 500.0 + 60.0 * t / HOUR_S, counter_every=5)
    assert before == []
    # a new heatd resumes from the last stored record (none closed yet: 00:00, 500 kWh)
    resumed = plain_meter(resume=Resume(T0, {"energy": (T0, 500.0)}))
    back = T0 + 2 * HOUR_S + 20 * 60
    hours = run(resumed, 3600, counter=lambda t: 500.0 + 60.0 * (back + t - T0) / HOUR_S,
                counter_every=5, start=back)
    assert len(hours) == 3
    parts = [h.counters["energy"] for h in hours]
    assert sum(p.kwh for p in parts) == pytest.approx(60.0 * 3)
    assert [h.downtime_s for h in hours] == [HOUR_S, HOUR_S, 20 * 60]
    records = [heat_record("s", HEAT, h, "UTC", True) for h in hours]
    assert all({"downtime", "estimated"} <= set(r["flags"]) for r in records)
    assert records[0]["heat_kwh"] == pytest.approx(60.0)


def test_a_subscribed_counter_that_does_not_change_closes_after_the_grace() -> None:
    meter = plain_meter()
    hours = meter.observe(T0 + 10, counters={"energy": (T0 + 10, 7.0)},
                          counters_good={"energy": True}, powers={}, levels={})
    t = T0 + 11
    while t < T0 + HOUR_S + GRACE_S + 2:
        hours += meter.observe(t, counters={"energy": None}, counters_good={"energy": True},
                               powers={}, levels={})
        t += 1
    assert len(hours) == 1 and hours[0].counters["energy"].kwh == 0.0
    assert hours[0].counters["energy"].end_value == 7.0


HEAT = HeatPurchase.model_validate_json(json.dumps({
    "name": "city", "customer": "City DH", "min_supply_temp_c": 65.0,
    "committed": [{"months": [1], "hours": [0, 6], "kw": 100.0}]}))


def test_heat_record_times_the_supply_below_contract_and_the_unmet_commitment() -> None:
    hours = run(plain_meter(), HOUR_S + 5, counter=lambda t: 60.0 * t / HOUR_S,
                power=lambda t: 60.0, supply=lambda t: 60.0 if t < 900 else 70.0)
    record = heat_record("s", HEAT, hours[0], "UTC", True)
    assert record["heat_kwh"] == pytest.approx(60.0) and record["heat_source"] == "counter"
    assert record["below_contract_s"] == pytest.approx(900.0, abs=1)
    assert record["availability"] == pytest.approx(0.75, abs=0.001)
    assert (record["committed_kwh"], record["unmet_kwh"]) == (100.0, pytest.approx(40.0))
    assert record["flags"] == []


def test_counter_and_power_that_disagree_are_flagged() -> None:
    hours = run(plain_meter(), HOUR_S + 5, counter=lambda t: 60.0 * t / HOUR_S,
                power=lambda t: 80.0)
    assert "meter_disagreement" in heat_record("s", HEAT, hours[0], "UTC", True)["flags"]


def test_cooling_record_counts_time_over_the_class_and_the_supply_limit() -> None:
    meter = HourlyMeter({}, ("it_power", "hp_power"),
                        {"rack_inlet": Level(above=32.0), "supply_temp": Level(above=45.0)})
    hours = []
    for k in range(3606):
        t = T0 + k
        hours += meter.observe(t, counters={}, counters_good={},
                               powers={"it_power": 200.0, "hp_power": 50.0},
                               levels={"rack_inlet": 33.0 if k < 600 else 30.0,
                                       "supply_temp": 44.0})
    record = cooling_record("s", CoolingGuarantee(), hours[0], False)
    assert record["rack_over_class_s"] == pytest.approx(600, abs=1)
    assert record["supply_over_limit_s"] == 0.0
    assert (record["it_kwh"], record["it_source"]) == (pytest.approx(200.0), "power")
    assert record["hp_electricity_kwh"] == pytest.approx(50.0)
    assert record["rack_inlet_max_c"] == 33.0


def test_cooling_coverage_counts_every_sensor_the_site_has() -> None:
    """A site without rack sensors is judged on its supply; one whose rack sensors were
    all bad for the hour has no cooling coverage."""
    without = HourlyMeter({}, (), {"supply_temp": Level(above=45.0)})
    broken = HourlyMeter({}, (), {"rack_inlet": Level(above=32.0),
                                  "supply_temp": Level(above=45.0)})
    hours: dict[str, list] = {"without": [], "broken": []}
    for k in range(3606):
        for name, meter in (("without", without), ("broken", broken)):
            hours[name] += meter.observe(T0 + k, counters={}, counters_good={}, powers={},
                                         levels={"supply_temp": 40.0, "rack_inlet": None})
    guarantee = CoolingGuarantee()
    assert cooling_record("s", guarantee, hours["without"][0], False)["cooling_coverage"] == 1.0
    assert cooling_record("s", guarantee, hours["broken"][0], False)["cooling_coverage"] == 0.0


def test_an_hour_closed_with_its_counter_silent_keeps_its_last_reading() -> None:
    """The counter answers until 1800 s, then falls silent; the hour closes after the
    hold with the energy up to that reading, and says which reading that was."""
    meter = HourlyMeter({"energy": None}, ("power",), {}, hold_s=60.0)
    hours: list = []
    for k in range(0, 3700, 5):
        t = T0 + k
        reading = (t, 1000.0 + 120.0 * k / HOUR_S) if k <= 1800 else None
        hours += meter.observe(t, counters={"energy": reading},
                               counters_good={"energy": reading is not None},
                               powers={"power": None}, levels={})
    part = hours[0].counters["energy"]
    assert part.end_value is None and part.kwh == pytest.approx(60.0)
    assert part.last == (T0 + 1800, pytest.approx(1060.0))
