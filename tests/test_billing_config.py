"""The contracts: section: validated with the rest of the site file, every mistake named
with file, line and field; a site without it is unchanged."""

from __future__ import annotations

import pytest

from heatd.config_loader import ConfigError, parse_site

BASE = """\
site: {id: c1}
devices:
  hm:
    protocol: modbus_tcp
    host: 127.0.0.1
    address_base: 0
    points:
      energy: {table: input, address: 0, data_type: uint32, scale: 0.001, unit: kWh,
               wrap: 32}
      temp: {table: input, address: 2, data_type: int16, scale: 0.1, unit: degC}
      flow: {table: input, address: 3, data_type: int16, unit: m3/h}
"""
METER = "mqtt: {host: localhost}\nmeter: {database: /tmp/x.sqlite}\n"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_site(text, "site.yaml")
    return [str(p) for p in caught.value.problems]


def test_a_valid_contract_and_a_site_without_one() -> None:
    assert parse_site(BASE, "site.yaml").contracts is None
    site = parse_site(BASE + METER + """\
contracts:
  heat_purchase:
    - name: city
      customer: City
      min_supply_temp_c: 65
      meter: {energy: hm.energy, supply_temp: hm.temp}
      committed: [{months: [1, 2], hours: [6, 22], kw: 100}]
  cooling_guarantee: {rack_inlet_class: A2}
""", "site.yaml")
    contract = site.contracts.heat_purchase[0]
    assert contract.committed_kw(1, 6) == 100 and contract.committed_kw(1, 22) == 0
    assert site.contracts.cooling_guarantee.rack_inlet_limit_c == 35.0
    assert site.point("hm.energy").wrap == 32


def test_mistakes_are_named_with_file_line_and_field() -> None:
    found = problems(BASE + METER + """\
contracts:
  heat_purchase:
    - name: city
      customer: City
      min_supply_temp_c: 65
      committed: [{hours: [22, 6], kw: 10}]
  cooling_guarantee: {rack_inlet_class: A4}
""")
    assert found == [
        "site.yaml:19: contracts.heat_purchase[0].committed[0]: hours: [from, to) with from "
        "before to",
        "site.yaml:20: contracts.cooling_guarantee.rack_inlet_class: 'A4' is not one of "
        "'recommended', 'A1', 'A2'"]


def test_points_that_do_not_exist_or_carry_another_unit() -> None:
    found = problems(BASE + METER + """\
contracts:
  heat_purchase:
    - name: city
      customer: City
      min_supply_temp_c: 65
      meter: {energy: hm.nothing, supply_temp: hm.flow}
""")
    assert found == [
        "site.yaml:19: contracts.heat_purchase[0].meter.energy: 'hm.nothing' is not a point "
        "of this site",
        "site.yaml:19: contracts.heat_purchase[0].meter.supply_temp: 'hm.flow' has unit "
        "'m3/h'; the meter reads degC here"]


def test_contracts_need_a_meter_and_unique_names() -> None:
    contract = "  heat_purchase: [{name: cooling, customer: A, min_supply_temp_c: 60}]\n"
    assert problems(BASE + "contracts:\n" + contract) == [
        "site.yaml:12: contracts: contracts need a meter: section (its database keeps the "
        "records)"]
    assert problems(BASE + METER + "contracts:\n" + contract + "  cooling_guarantee: {}\n"
                    ) == ["site.yaml:14: contracts: contract names must differ: cooling used "
                          "twice"]
    assert problems(BASE.replace("wrap: 32", "wrap: 24")) == [
        "site.yaml:9: devices.hm.points.energy.wrap: 24 is not one of 16, 32, 64"]


def test_contract_points_in_another_spelling_of_the_meters_unit_are_read() -> None:
    """A heat meter's register map writes kwh or KWH, its temperatures ℃ or Cel: the meter
    reads them as kWh and degC (with the factor of the unit, not of the spelling)."""
    from heatd.billing.points import heat_channels

    text = (BASE.replace("unit: kWh", "unit: KWH").replace("unit: degC", "unit: '℃'")
            + "      power: {table: input, address: 4, data_type: int16, unit: Kw}\n"
            + "      out: {table: input, address: 5, data_type: int16, unit: Cel}\n"
            + METER + """\
contracts:
  heat_purchase:
    - name: city
      customer: City
      min_supply_temp_c: 65
      meter: {energy: hm.energy, power: hm.power, supply_temp: hm.temp, return_temp: hm.out}
""")
    site = parse_site(text, "site.yaml")
    channels = heat_channels(site, site.contracts.heat_purchase[0])
    assert {name: c.factor for name, c in channels.items()} == {
        "energy": 1.0, "power": 1.0, "supply_temp": 1.0, "return_temp": 1.0}
    assert problems(text.replace("unit: Kw", "unit: mW")) == [
        "site.yaml:21: contracts.heat_purchase[0].meter.power: 'hm.power' has unit 'mW'; the "
        "meter reads kW, W, MW here"]
    in_wh = parse_site(text.replace("unit: KWH", "unit: wh"), "site.yaml")
    assert heat_channels(in_wh, in_wh.contracts.heat_purchase[0])["energy"].factor == 0.001
