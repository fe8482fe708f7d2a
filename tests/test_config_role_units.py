"""A role bound to a point whose declared unit is not the role's: the control core takes
every quantity in one unit (degC, kW, kWh, shares), so the site file is refused at the
binding's line, with how the point's scale and offset convert it."""

from __future__ import annotations

import pytest

from heatd.config_loader import ConfigError, parse_site
from heatd.control import roles as R


def site(supply: str = "degC", inlet: str = "degC", power: str = "kW", fan: str = "'%'",
         supply_role: str = "cdu.supply", energy: str = "kWh") -> str:
    def unit(name: str) -> str:
        return f", unit: {name}" if name else ""
    return f"""\
site: {{id: north}}
devices:
  cdu:
    protocol: modbus_tcp
    host: 127.0.0.1
    address_base: 0
    points:
      supply: {{table: input, address: 0, data_type: int16, scale: 0.1{unit(supply)}}}
      inlet: {{table: input, address: 1, data_type: int16, scale: 0.1{unit(inlet)}}}
      it_power: {{table: input, address: 2, data_type: float32{unit(power)}}}
      it_energy: {{table: input, address: 4, data_type: uint32{unit(energy)}}}
      fan: {{table: holding, address: 11, data_type: uint16, writable: true{unit(fan)}}}
roles:
  coolant.supply_temp: {supply_role}
  rack.inlet_temp: [cdu.inlet]
  it.power: cdu.it_power
  it.energy: cdu.it_energy
  drycooler.fan: cdu.fan
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_site(text, "site.yaml")
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(("bound", "problem"), [
    ({"supply": "degF"}, "site.yaml:14: roles.coolant.supply_temp: 'cdu.supply' is in degF; the "
     "role takes degC: multiply the point's scale by 5/9, set its offset to (offset - 32) x "
     "5/9, and write unit: degC"),
    ({"inlet": "K"}, "site.yaml:15: roles.rack.inlet_temp[0]: 'cdu.inlet' is in K; the role "
     "takes degC: add -273.15 to the point's offset, and write unit: degC"),
    ({"power": "W"}, "site.yaml:16: roles.it.power: 'cdu.it_power' is in W; the role takes kW: "
     "multiply the point's scale by 0.001, and write unit: kW"),
    ({"energy": "Wh"}, "site.yaml:17: roles.it.energy: 'cdu.it_energy' is in Wh; the role "
     "takes kWh: multiply the point's scale by 0.001, and write unit: kWh"),
    ({"supply_role": "cdu.it_power"}, "site.yaml:14: roles.coolant.supply_temp: 'cdu.it_power' "
     "is in kW; the role takes degC"),
    ({"fan": "degC"}, "site.yaml:18: roles.drycooler.fan: 'cdu.fan' is in degC; the role takes "
     "a share 0..1 (no unit) or percent (unit: %)"),
])
def test_a_point_in_another_unit_is_refused_at_the_binding(bound: dict[str, str],
                                                           problem: str) -> None:
    assert problems_of(site(**bound)) == [problem]


def test_points_in_the_roles_units_or_without_a_unit_are_accepted() -> None:
    parse_site(site(), "site.yaml")
    loaded = parse_site(site(supply="", inlet="", power="", fan="", energy=""), "site.yaml")
    assert loaded.point("cdu.supply").unit is None


def test_degrees_celsius_may_be_spelt_with_the_degree_sign() -> None:
    assert parse_site(site(supply="°C"), "site.yaml").point("cdu.supply").unit == "°C"


@pytest.mark.parametrize("bound", [
    {"supply": "'℃'"}, {"supply": "'ºC'"}, {"supply": "Cel"}, {"supply": "deg C"},
    {"supply": "Celsius"}, {"supply": "degc"}, {"inlet": "DEGC"}, {"inlet": "'° C'"},
    {"power": "kw"}, {"power": "KW"}, {"power": "Kw"}, {"energy": "kwh"}, {"energy": "KWH"},
    {"energy": "kW.h"},
])
def test_the_roles_unit_as_manuals_and_opc_ua_servers_spell_it_is_accepted(
        bound: dict[str, str]) -> None:
    """UCUM's ``Cel`` (OPC UA's EUInformation), the degree sign in its forms, and kW in any
    case are the role's own unit: kept as written, never refused for the spelling."""
    [(name, unit)] = bound.items()
    point = {"energy": "it_energy", "power": "it_power"}.get(name, name)
    assert parse_site(site(**bound), "site.yaml").point(f"cdu.{point}").unit == unit.strip("'")


@pytest.mark.parametrize(("bound", "problem"), [
    ({"supply": "'°F'"}, "'cdu.supply' is in °F; the role takes degC: multiply the point's "
     "scale by 5/9, set its offset to (offset - 32) x 5/9, and write unit: degC"),
    ({"inlet": "kelvin"}, "'cdu.inlet' is in kelvin; the role takes degC: add -273.15 to the "
     "point's offset, and write unit: degC"),
    ({"power": "MW"}, "'cdu.it_power' is in MW; the role takes kW: multiply the point's scale "
     "by 1000, and write unit: kW"),
    ({"power": "mW"}, "'cdu.it_power' is in mW; the role takes kW"),  # milli, not mega
    ({"power": "w"}, "'cdu.it_power' is in w; the role takes kW: multiply the point's scale by "
     "0.001, and write unit: kW"),
    ({"energy": "WH"}, "'cdu.it_energy' is in WH; the role takes kWh: multiply the point's "
     "scale by 0.001, and write unit: kWh"),
    ({"supply_role": "cdu.it_power", "power": "KW"}, "'cdu.it_power' is in KW; the role takes "
     "degC"),
])
def test_another_unit_however_spelt_is_refused_with_its_conversion(
        bound: dict[str, str], problem: str) -> None:
    [found] = problems_of(site(**bound))
    assert found.endswith(f": {problem}")


def test_a_point_converted_by_its_scale_is_accepted() -> None:
    text = site().replace("data_type: float32, unit: kW", "data_type: float32, scale: 0.001, "
                          "unit: kW")
    assert parse_site(text, "site.yaml").point("cdu.it_power").scale == 0.001


def test_every_quantity_role_has_a_unit_and_flags_have_none() -> None:
    from heatd.role_units import ROLE_UNITS  # here: the other tests run on a site alone

    assert ROLE_UNITS[R.COOLANT_SUPPLY_TEMP] == "degC"
    assert ROLE_UNITS[R.DH_SUPPLY_SETPOINT] == "degC"
    assert ROLE_UNITS[R.HP_HEAT] == "kW" and ROLE_UNITS[R.HP_HEAT_ENERGY] == "kWh"
    assert not set(ROLE_UNITS) & (R.BOOL_ROLES | {R.COOLANT_FLOW, R.HP_TRIP_CODE})


def test_every_unit_heatd_names_is_in_the_one_table_of_spellings() -> None:
    """The role units, the contract meters' units and Home Assistant's table are keyed by
    heatd's names of units; a name missing from the spellings would match no spelling."""
    from heatd.billing.points import ENERGY_UNITS, POWER_UNITS, TEMPERATURE_UNITS
    from heatd.mqtt.discovery import UNITS
    from heatd.role_units import ROLE_UNITS
    from heatd.units import SPELLINGS, canonical_unit

    named = {*ROLE_UNITS.values(), *ENERGY_UNITS, *POWER_UNITS, *TEMPERATURE_UNITS, *UNITS}
    assert named <= set(SPELLINGS)
    assert all(canonical_unit(s) == unit for unit, spelt in SPELLINGS.items() for s in spelt)
