"""The cooling envelope's limits in a site file: each one within a physically meaningful
span, and within the plausible range of the role it limits, or the file is refused at the
limit's line (a limit no valid reading can reach never acts)."""

from __future__ import annotations

import pytest

from heatd.config_loader import ConfigError, parse_site

SITE = """\
site: {id: north}
devices:
  racks:
    protocol: modbus_tcp
    host: 127.0.0.1
    address_base: 0
    points:
      supply: {table: input, address: 2, data_type: int16, scale: 0.1, unit: degC}
      inlet: {table: input, address: 4, data_type: int16, scale: 0.1, unit: degC}
roles:
  coolant.supply_temp: racks.supply
  rack.inlet_temp: racks.inlet
control:
"""


def problems_of(control: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_site(SITE + control, "site.yaml")
    return [str(p) for p in caught.value.problems]


W_CLASSES = ("17 to 90 degC (ASHRAE's W17 to a hot-water W+ loop's 90 degC; 45 degC is 113 "
             "in degF)")
A_CLASSES = "18 to 45 degC (ASHRAE's recommended low end to class A4's high end)"


@pytest.mark.parametrize(("setting", "why"), [
    ("supply_limit_c: 450", f"450 degC lies outside {W_CLASSES}"),  # a typo for 45
    ("supply_limit_c: 113", f"113 degC lies outside {W_CLASSES}"),  # W45 written in degF
    ("supply_limit_c: 12", f"12 degC lies outside {W_CLASSES}"),
    ("supply_limit_c: 95", f"95 degC lies outside {W_CLASSES}"),  # W35 written in degF
    ("rack_inlet_limit_c: -5", f"-5 degC lies outside {A_CLASSES}"),
    ("rack_inlet_limit_c: 270", f"270 degC lies outside {A_CLASSES}"),
    ("supply_low_c: -40", "-40 degC lies outside -20 to 30 degC"),
])
def test_a_limit_outside_its_physical_span_is_named_at_its_line(setting: str, why: str) -> None:
    [problem] = problems_of(f"  envelope:\n    {setting}\n")
    field = setting.split(":", maxsplit=1)[0]
    assert problem.startswith(f"site.yaml:15: control.envelope.{field}: {why}")
    assert problem.endswith(": a typo, or a unit other than degC?")


def test_a_limit_above_the_roles_plausible_range_never_acts() -> None:
    found = problems_of("  validation:\n    ranges:\n"
                        "      coolant.supply_temp: {lo: 0, hi: 40}\n"
                        "      rack.inlet_temp: {lo: 0, hi: 30}\n"
                        "  optimiser: {supply_setpoint_c: 30}\n"
                        "  envelope:\n    supply_limit_c: 45\n    rack_inlet_limit_c: 35\n")
    assert found == [
        "site.yaml:20: control.envelope.supply_limit_c: 45 degC is not below the top of the "
        "plausible range of coolant.supply_temp (0 to 40 degC, validation.ranges): no valid "
        "reading can reach it, so the limit would never act",
        "site.yaml:21: control.envelope.rack_inlet_limit_c: 35 degC is not below the top of "
        "the plausible range of rack.inlet_temp (0 to 30 degC, validation.ranges): no valid "
        "reading can reach it, so the limit would never act",
    ]


def test_the_default_ranges_judge_too() -> None:
    """Without ``validation.ranges`` the role's default range counts: the rack inlet range
    starts at -10 degC, so a margin that takes the band below it is refused."""
    [problem] = problems_of("  envelope:\n    rack_inlet_limit_c: 27\n"
                            "    rack_inlet_margin_k: 40\n")
    assert problem.startswith("site.yaml:15: control.envelope.rack_inlet_limit_c: 27 degC less "
                              "its margin (40 K) reaches the bottom of the plausible range of "
                              "rack.inlet_temp (-10 to 70 degC")


def test_a_margin_wider_than_the_span_to_the_low_limit_is_named_at_the_margin() -> None:
    [problem] = problems_of("  envelope:\n    supply_limit_c: 45\n    supply_margin_k: 40\n")
    assert problem.startswith("site.yaml:16: control.envelope.supply_margin_k: 40 K below the "
                              "supply limit 45 degC reaches the coolant's low limit")


def test_a_minimum_flow_no_reading_reaches_is_refused() -> None:
    [problem] = problems_of("  validation:\n    ranges:\n      coolant.flow: {lo: 0, hi: 50}\n"
                            "  envelope:\n    flow_min: 60\n")
    assert problem.startswith("site.yaml:18: control.envelope.flow_min: 60 is not below the top "
                              "of the plausible range of coolant.flow (50")


@pytest.mark.parametrize("setting", [
    "supply_limit_c: 17\n    supply_low_c: 5\n    supply_margin_k: 2",
    "supply_limit_c: 70",
    "supply_limit_c: 90",
    "rack_inlet_limit_c: 18",
    "rack_inlet_limit_c: 45",
])
def test_limits_at_the_ends_of_their_spans_are_accepted(setting: str) -> None:
    control = f"  optimiser: {{supply_setpoint_c: 12}}\n  envelope:\n    {setting}\n"
    site = parse_site(SITE + control, "site.yaml")
    assert site.control.envelope.supply_limit_c in (17.0, 45.0, 70.0, 90.0)


def test_a_hot_water_limit_above_the_roles_plausible_range_is_still_refused() -> None:
    """The span reaches 90 degC for hot-water loops; a site whose supply sensor reads no
    higher than 80 still cannot set a limit of 85 that no reading reaches."""
    found = problems_of("  validation:\n    ranges:\n"
                        "      coolant.supply_temp: {lo: 0, hi: 80}\n"
                        "  optimiser: {supply_setpoint_c: 70}\n"
                        "  envelope:\n    supply_limit_c: 85\n")
    assert found == [
        "site.yaml:19: control.envelope.supply_limit_c: 85 degC is not below the top of the "
        "plausible range of coolant.supply_temp (0 to 80 degC, validation.ranges): no valid "
        "reading can reach it, so the limit would never act"]
