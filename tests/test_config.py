"""Site files: a valid one loads; each kind of mistake is named by file, line and field,
and all of them are reported at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from heatd.config import ModbusPointConfig, ModbusTcpDeviceConfig
from heatd.config_loader import ConfigError, check_site, json_schema, load_site, parse_site
from heatd.drivers.codec import ByteOrder, DataType
from heatd.heartbeat import HeartbeatSpan, heartbeat_span

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "example-site.yaml"

MINIMAL = """\
site:
  id: s1
devices:
  hp1:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: 5020
    address_base: 0
    points:
      flow: {table: holding, address: 0, data_type: float32}
      temp: {table: holding, address: 2, data_type: int16, scale: 0.1}
roles:
  coolant.flow: hp1.flow
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_site(text, "site.yaml")
    return [str(p) for p in caught.value.problems]


def test_example_site_loads() -> None:
    site = load_site(EXAMPLE)
    assert site.site.id == "example"
    assert set(site.devices) == {"racks", "drycooler", "heatpump", "loop"}
    point = site.point("heatpump.capacity")
    assert isinstance(point, ModbusPointConfig)
    assert point.data_type is DataType.FLOAT32 and point.order is ByteOrder.DCBA
    assert site.role_points("coolant.supply_temp") == ["loop.supply_temp_a", "loop.supply_temp_b"]


def test_minimal_site_has_defaults() -> None:
    site = parse_site(MINIMAL, "site.yaml")
    assert site.poll_groups["default"].interval == 1.0
    assert site.point("hp1.temp").scale == pytest.approx(0.1)


@pytest.mark.parametrize("zone", ["Europe/Copenhagn", "CET+1", "", "../../etc/passwd"])
def test_a_timezone_that_is_not_a_known_zone_is_named(zone: str) -> None:
    text = MINIMAL.replace("  id: s1\n", f"  id: s1\n  timezone: {zone!r}\n")
    [problem] = problems_of(text)
    assert problem == (f"site.yaml:3: site.timezone: {zone!r} is not a known time zone (an "
                       "IANA name such as Europe/Copenhagen or UTC)")


def test_a_known_timezone_is_accepted() -> None:
    text = MINIMAL.replace("  id: s1\n", "  id: s1\n  timezone: Europe/Copenhagen\n")
    assert parse_site(text, "site.yaml").site.timezone == "Europe/Copenhagen"
    assert parse_site(MINIMAL, "site.yaml").site.timezone == "UTC"


def test_comments_change_nothing_and_lines_stay_true() -> None:
    """Comments are dropped as the file is read: none of them, wherever it stands, changes
    a value or the line a problem is reported at."""
    commented = ("# site file\n" + MINIMAL
                 .replace("  id: s1\n", "  id: s1  # the site\n  # a full-line comment\n\n")
                 .replace("address: 0, data_type: float32}",
                          "address: 0,  # mid-mapping\n             data_type: float32}")
                 .replace("roles:\n", "roles:  # bound below\n"))
    assert parse_site(commented, "site.yaml") == parse_site(MINIMAL, "site.yaml")
    [problem] = problems_of(commented.replace("data_type: int16", "data_type: flaot16"))
    assert problem.startswith("site.yaml:15: devices.hp1.points.temp.data_type: 'flaot16'")


def test_misspelt_data_type_names_line_and_field() -> None:
    text = MINIMAL.replace("data_type: float32", "data_type: flaot32")
    [problem] = problems_of(text)
    assert problem.startswith("site.yaml:10: devices.hp1.points.flow.data_type: 'flaot32' is not "
                              "one of int16, uint16, int32")


def test_all_errors_reported_at_once() -> None:
    text = (MINIMAL.replace("data_type: float32", "data_type: flaot32")
            .replace("port: 5020", "port: 5020\n    colour: blue")
            .replace("data_type: int16", "data_type: int16, order: XYZW"))
    found = problems_of(text)
    assert len(found) == 3
    assert any(p.startswith("site.yaml:8: devices.hp1.colour: unknown field") for p in found)
    assert any("site.yaml:11: devices.hp1.points.flow.data_type" in p for p in found)
    assert any(p.startswith("site.yaml:12: devices.hp1.points.temp.order: 'XYZW' is not one of "
                            "ABCD, BADC, CDAB, DCBA") for p in found)


def test_missing_address_base_is_an_error() -> None:
    [problem] = problems_of(MINIMAL.replace("    address_base: 0\n", ""))
    assert problem.startswith("site.yaml:4: devices.hp1.address_base: required field is missing")


def test_string_where_a_number_belongs_is_not_coerced() -> None:
    [problem] = problems_of(MINIMAL.replace("scale: 0.1", "scale: '0.1'"))
    assert "site.yaml:11: devices.hp1.points.temp.scale" in problem


def test_unknown_protocol() -> None:
    [problem] = problems_of(MINIMAL.replace("modbus_tcp", "modbus_udp"))
    assert problem.startswith("site.yaml:5: devices.hp1.protocol: 'modbus_udp' is not one of")


def test_overlapping_points() -> None:
    text = MINIMAL.replace("address: 2, data_type: int16", "address: 1, data_type: int16")
    [problem] = problems_of(text)
    assert problem.startswith("site.yaml:11: devices.hp1.points.temp.address: registers 1-1 "
                              "overlap point 'flow' (0-1)")


def test_a_point_defined_twice_is_named_with_the_line_of_the_first() -> None:
    text = MINIMAL.replace("      temp:", "      flow:")
    assert problems_of(text) == [
        "site.yaml:11: devices.hp1.points.flow: defined twice (first at line 10)"]


def test_a_device_defined_twice_is_named_without_its_values() -> None:
    """The YAML library's message printed both devices as Python reprs, over a thousand
    characters for a device of a few points."""
    device = MINIMAL[MINIMAL.index("  hp1:"):MINIMAL.index("roles:")]
    text = MINIMAL.replace("roles:", device.replace("port: 5020", "port: 5021") + "roles:")
    [problem] = problems_of(text)
    assert problem == "site.yaml:12: devices.hp1: defined twice (first at line 4)"


def test_a_key_defined_twice_in_a_list_item_is_named_with_its_index() -> None:
    text = MINIMAL + "control:\n  validation:\n    frozen_roles:\n      - {a: 1, a: 2}\n"
    assert problems_of(text) == [
        "site.yaml:17: control.validation.frozen_roles[0].a: defined twice (first at line 17)"]


def test_malformed_yaml_names_the_line() -> None:
    [problem] = problems_of(MINIMAL.replace("port: 5020", "port: [5020"))
    assert problem.startswith("site.yaml:")
    assert "YAML" in problem


def test_role_problems() -> None:
    text = MINIMAL + "  hp.enable: hp1.temp\n  coolant.flux: hp1.flow\n  it.power: hp1.nope\n"
    found = problems_of(text)
    assert "site.yaml:14: roles.hp.enable: 'hp1.temp' is bound to output role 'hp.enable' " \
           "but is not writable" in found
    assert "site.yaml:15: roles.coolant.flux: 'coolant.flux' is not a role heatd knows" in found
    assert "site.yaml:16: roles.it.power: 'hp1.nope' is not a point of this site" in found


def test_forbidden_range_and_address_base() -> None:
    text = MINIMAL.replace("address_base: 0", "address_base: 1\n    forbidden: [[3, 4]]")
    found = problems_of(text)
    # with base 1, address 0 lies below the base; address 2..2 (protocol 1) is fine,
    # temp at file address 2 is protocol 1; forbidden [3,4] is protocol 2..3: no clash
    assert any("devices.hp1.points.flow.address: 0 is below the address base" in p
               for p in found)
    text = MINIMAL.replace("address_base: 0", "address_base: 0\n    forbidden: [[2, 2]]")
    [problem] = problems_of(text)
    assert "devices.hp1.points.temp.address: lies inside a forbidden range" in problem


def test_a_range_forbidden_in_one_table_concerns_only_that_table() -> None:
    def with_forbidden(spec: str) -> str:
        return MINIMAL.replace("address_base: 0", f"address_base: 0\n    forbidden: {spec}")

    site = parse_site(with_forbidden("[{first: 2, last: 2, table: input}]"), "site.yaml")
    [hole] = site.devices["hp1"].forbidden
    assert (hole.first, hole.last, hole.table.value) == (2, 2, "input")
    [problem] = problems_of(with_forbidden("[{first: 2, last: 2, table: holding}]"))
    assert "devices.hp1.points.temp.address: lies inside a forbidden range" in problem
    found = problems_of(with_forbidden(
        "[[1, 2, 3], {first: 9, last: 8}, {first: 1, last: 1, table: holdin}]"))
    assert any("site.yaml:9: devices.hp1.forbidden[0]: give [first, last] or" in p
               for p in found), found
    assert any("devices.hp1.forbidden[1]: forbidden range [9, 8]: first must not exceed" in p
               for p in found), found
    assert any("devices.hp1.forbidden[2].table: 'holdin' is not one of" in p
               for p in found), found


def test_address_base_one_shifts_protocol_address() -> None:
    site = parse_site(MINIMAL.replace("address_base: 0", "address_base: 1")
                      .replace("address: 0,", "address: 1,").replace("address: 2,", "address: 3,"),
                      "site.yaml")
    device = site.devices["hp1"]
    assert isinstance(device, ModbusTcpDeviceConfig)
    assert device.protocol_address(device.points["flow"]) == 0
    assert device.protocol_address(device.points["temp"]) == 2


def test_bits_share_their_status_word_but_not_a_bit() -> None:
    base = MINIMAL + ""
    text = base.replace(
        "      temp: {table: holding, address: 2, data_type: int16, scale: 0.1}\n",
        "      status: {table: holding, address: 2, data_type: uint16}\n"
        "      b0: {table: holding, address: 2, data_type: bit, bit: 0}\n"
        "      b1: {table: holding, address: 2, data_type: bit, bit: 1}\n",
    )
    parse_site(text, "site.yaml")
    [problem] = problems_of(text.replace("bit: 1}", "bit: 0}"))
    assert "devices.hp1.points.b1.address" in problem


def test_units_on_one_gateway_must_differ() -> None:
    text = MINIMAL.replace("roles:", """\
  hp2:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: 5020
    address_base: 0
    points: {}
roles:""")
    [problem] = problems_of(text)
    assert problem.startswith("site.yaml:12: devices.hp2.unit_id: unit id 1 on 127.0.0.1:5020 "
                              "is already device 'hp1'")


def test_unknown_poll_group() -> None:
    text = MINIMAL.replace("data_type: int16,", "data_type: int16, poll_group: x,")
    [problem] = problems_of(text)
    assert "devices.hp1.points.temp.poll_group: 'x' is not a poll group" in problem


def test_inputs_polled_slower_than_the_staleness_limit_are_refused() -> None:
    text = MINIMAL.replace("data_type: float32}", "data_type: float32, poll_group: slow}") + (
        "poll_groups:\n  default: {interval: 1.0}\n  slow: {interval: 12.0}\n"
        "control:\n  validation: {stale_after_s: 10.0}\n")
    [problem] = problems_of(text)
    assert "control.validation.stale_after_s: 10 s is not longer than the 12 s interval of " \
           "poll group 'slow': its inputs (hp1.flow) would go stale between polls" in problem
    assert problem.startswith("site.yaml:18:")
    parse_site(text.replace("stale_after_s: 10.0", "stale_after_s: 15.0"), "site.yaml")


def test_cross_field_rule_names_its_point() -> None:
    [problem] = problems_of(MINIMAL.replace("data_type: int16,", "data_type: int16, write_max: 3,"))
    assert problem.startswith("site.yaml:11: devices.hp1.points.temp: write_min/write_max given "
                              "but the point is not writable")


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as caught:
        load_site("/nonexistent/site.yaml")
    assert "/nonexistent/site.yaml" in str(caught.value)


def test_schema_describes_devices() -> None:
    schema = json_schema()
    assert schema["title"] == "heatd site configuration"
    text = json.dumps(schema)
    assert "modbus_rtu" in text and "address_base" in text
    # both forms of a forbidden range are valid to an editor, as they are to heatd
    entry = schema["$defs"]["ModbusTcpDeviceConfig"]["properties"]["forbidden"]["items"]["anyOf"]
    assert {"type": "array", "minItems": 2, "maxItems": 2}.items() <= entry[0].items()
    assert entry[1] == {"$ref": "#/$defs/ForbiddenRange"}
    assert set(schema["$defs"]["ForbiddenRange"]["properties"]) == {"first", "last", "table"}


def test_check_config_cli(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("float32", "flaot32").replace("int16", "int61"))
    run = subprocess.run([sys.executable, "-m", "heatd.cli", "check-config", str(bad)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert f"{bad}:10: devices.hp1.points.flow.data_type" in run.stderr
    assert f"{bad}:11: devices.hp1.points.temp.data_type" in run.stderr
    assert "2 problems" in run.stderr
    good = subprocess.run([sys.executable, "-m", "heatd.cli", "check-config", str(EXAMPLE)],
                          capture_output=True, text=True, check=False)
    assert good.returncode == 0, good.stderr
    assert "ok (site example, 4 devices" in good.stdout


def test_control_section_is_validated_with_lines() -> None:
    text = MINIMAL + "control:\n  envelope:\n    supply_limit_c: 44\n    supply_limt: 3\n"
    [problem] = problems_of(text)
    assert problem.startswith("site.yaml:17: control.envelope.supply_limt: unknown field")
    site = parse_site(MINIMAL + "control:\n  envelope:\n    supply_limit_c: 44\n", "site.yaml")
    assert site.control.envelope.supply_limit_c == 44.0


def test_version_and_schema_commands() -> None:
    from heatd import __version__

    version = subprocess.run([sys.executable, "-m", "heatd.cli", "--version"],
                             capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"heatd {__version__}"
    schema = subprocess.run([sys.executable, "-m", "heatd.cli", "config", "schema"],
                            capture_output=True, text=True, check=True)
    assert json.loads(schema.stdout)["title"] == "heatd site configuration"


# --- hostile and broken files: a clear error naming the file, never a traceback ----------

BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def check_config(path: Path, memory_limit: int | None = None,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if memory_limit is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    return subprocess.run([sys.executable, "-m", "heatd.cli", "check-config", str(path)],
                          capture_output=True, text=True, check=False, timeout=120,
                          preexec_fn=limit, env=env)


def test_a_yaml_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    assert len(BOMB.encode()) == 342
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    # expanded, the bomb is 9**9 strings: it would need gigabytes; 1 GiB is plenty for heatd
    run = check_config(bomb, memory_limit=1 << 30)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr, run.stderr
    assert f"{bomb}:6: YAML: more than 100000 nodes (keys, values and items, every alias " \
           "expanded); refused" in run.stderr
    [problem] = problems_of(BOMB)
    assert "more than 100000 nodes" in problem


def test_anchors_and_merge_keys_are_fine_below_the_limit() -> None:
    text = MINIMAL.replace(
        "temp: {table: holding, address: 2, data_type: int16, scale: 0.1}",
        "temp: &word {table: holding, address: 2, data_type: int16, scale: 0.1}\n"
        "      temp2:\n        <<: *word\n        address: 3")
    site = parse_site(text, "site.yaml")
    assert site.point("hp1.temp2").scale == pytest.approx(0.1)
    # a mistake in a merged mapping is named at the line it stands on, not a traceback
    assert problems_of(text.replace("int16", "int61")) == [
        f"site.yaml:11: devices.hp1.points.{name}.data_type: 'int61' is not one of int16, "
        "uint16, int32, uint32, int64, uint64, float32, float64, bool, bit"
        for name in ("temp", "temp2")]


def test_an_alias_inside_its_own_node_is_refused() -> None:
    [problem] = problems_of(MINIMAL + "control: &loop {envelope: *loop}\n")
    assert problem == "site.yaml:14: YAML: an alias refers to a node that contains it; refused"


def test_deep_nesting_is_refused() -> None:
    [problem] = problems_of("site: " + "[" * 5000 + "]" * 5000 + "\n")
    assert problem == "site.yaml:1: YAML: nested deeper than 40 levels; refused"


def test_a_file_over_the_size_limit_is_not_read(tmp_path: Path) -> None:
    big = tmp_path / "site.yaml"
    with big.open("wb") as stream:
        stream.truncate(3 * 1024 * 1024)  # sparse: nothing to read, only its size to judge
    with pytest.raises(ConfigError) as caught:
        load_site(big)
    assert str(caught.value) == (f"{big}: 3145728 bytes: a site file may have at most "
                                 "1048576 bytes (1 MiB)")
    with pytest.raises(ConfigError):
        parse_site("#" * (1024 * 1024 + 1), "site.yaml")


def test_binary_and_non_utf8_files_are_named(tmp_path: Path) -> None:
    cases = {
        "nul.yaml": (MINIMAL.encode().replace(b"id: s1", b"id: s1\0"),
                     ":2: not a text YAML file: NUL byte at byte offset 14"),
        "image.yaml": (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
                       ":3: not a text YAML file: NUL byte at byte offset 8"),
        "latin1.yaml": (MINIMAL.encode().replace(b"id: s1", b"id: s1\n  name: K\xf8ge"),
                        ":3: not UTF-8 text: byte 0xf8 at byte offset 24 (invalid start byte)"),
        "control.yaml": (MINIMAL.encode().replace(b"id: s1", b"id: s1\x07"),
                         ":2: not a text YAML file: character U+0007 at offset 14 is not "
                         "allowed in YAML"),
    }
    for name, (data, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ConfigError) as caught:
            load_site(path)
        assert str(caught.value) == f"{path}{expected}"
        run = check_config(path)
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
        assert f"{path}{expected}" in run.stderr
    with pytest.raises(ConfigError) as caught:
        load_site(tmp_path)
    assert str(caught.value) == f"{tmp_path}: Is a directory"
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it must not wait for a writer
    for special in (fifo, Path("/dev/zero")):
        with pytest.raises(ConfigError) as caught:
            load_site(special)
        assert str(caught.value) == f"{special}: not a regular file"


def test_a_key_that_is_not_a_name() -> None:
    found = problems_of(MINIMAL.replace("  coolant.flow: hp1.flow", "  ? [a, b]\n  : hp1.flow"))
    assert found == ["site.yaml:13: roles: key ('a', 'b') is not a name"]


# --- values that validate alone but can only fail -----------------------------------------

def test_non_finite_numbers_are_refused_wherever_numbers_go() -> None:
    text = (MINIMAL.replace("scale: 0.1}", "scale: .nan, offset: .inf, range: [0, .inf]}")
            + "control:\n  envelope: {supply_limit_c: .NaN}\npoll_groups:\n"
              "  default: {interval: -.inf}\n")
    found = problems_of(text)
    assert found == [
        "site.yaml:11: devices.hp1.points.temp.range[1]: .inf is not a finite number",
        "site.yaml:11: devices.hp1.points.temp.scale: .nan is not a finite number",
        "site.yaml:11: devices.hp1.points.temp.offset: .inf is not a finite number",
        "site.yaml:15: control.envelope.supply_limit_c: .nan is not a finite number",
        "site.yaml:17: poll_groups.default.interval: -.inf is not a finite number",
    ]


def test_writable_read_only_tables_are_refused() -> None:
    text = MINIMAL.replace("flow: {table: holding, address: 0, data_type: float32}",
                           "flow: {table: input, address: 0, data_type: float32, "
                           "writable: true}\n"
                           "      run: {table: discrete, address: 0, data_type: bool, "
                           "writable: true}\n"
                           "      st: {table: holding, address: 5, data_type: bit, bit: 1, "
                           "writable: true}")
    assert problems_of(text) == [
        "site.yaml:10: devices.hp1.points.flow.writable: the point is an input register "
        "(read-only in Modbus; writable registers are holding)",
        "site.yaml:11: devices.hp1.points.run.writable: the point is a discrete input "
        "(read-only in Modbus; writable bits are coils)",
        "site.yaml:12: devices.hp1.points.st.writable: the point is a single bit of a "
        "register, which cannot be written on its own (heatd writes whole registers; use a "
        "coil or a register of its own)",
    ]


def test_status_bits_and_read_only_points_bound_to_outputs() -> None:
    text = MINIMAL.replace(
        "temp: {table: holding, address: 2, data_type: int16, scale: 0.1}",
        "status: {table: holding, address: 2, data_type: uint16}\n"
        "      fault: {table: holding, address: 2, data_type: bit, bit: 3}\n"
        "      running: {table: discrete, address: 0, data_type: bool}",
    ) + "  hp.enable: hp1.fault\n  hp.reset: hp1.running\n  drycooler.fan: hp1.status\n"
    assert problems_of(text) == [
        "site.yaml:16: roles.hp.enable: 'hp1.fault' is bound to output role 'hp.enable' but "
        "is a single bit of a register, which cannot be written on its own (heatd writes "
        "whole registers; use a coil or a register of its own)",
        "site.yaml:17: roles.hp.reset: 'hp1.running' is bound to output role 'hp.reset' but "
        "is a discrete input (read-only in Modbus; writable bits are coils)",
        "site.yaml:18: roles.drycooler.fan: 'hp1.status' is bound to output role "
        "'drycooler.fan' but is not writable",
    ]


def test_write_bounds_outside_the_range_or_the_encoding() -> None:
    def temp(spec: str) -> str:
        return MINIMAL.replace("data_type: int16, scale: 0.1}",
                               f"data_type: int16, scale: 0.1, writable: true, {spec}}}")

    assert problems_of(temp("write_min: -5, write_max: 120, range: [0, 100]")) == [
        "site.yaml:11: devices.hp1.points.temp.write_min: -5 lies outside the point's range "
        "[0, 100]: a value written there reads back as bad",
        "site.yaml:11: devices.hp1.points.temp.write_max: 120 lies outside the point's range "
        "[0, 100]: a value written there reads back as bad",
    ]
    assert problems_of(temp("write_max: 4000, offset: 10")) == [
        "site.yaml:11: devices.hp1.points.temp.write_max: 4000 cannot be written: int16 with "
        "scale 0.1 and offset 10 carries -3266.8 to 3286.7",
    ]
    parse_site(temp("write_min: -3266.8, write_max: 3286.7, offset: 10"), "site.yaml")
    unsigned = MINIMAL.replace("data_type: int16, scale: 0.1}",
                               "data_type: uint16, writable: true, write_min: -1}")
    assert problems_of(unsigned) == [
        "site.yaml:11: devices.hp1.points.temp.write_min: -1 cannot be written: uint16 "
        "carries 0 to 65535"]


def test_opc_ua_points_cannot_be_bits_or_unscaled() -> None:
    text = MINIMAL.replace("roles:", """\
  plc:
    protocol: opcua
    endpoint: opc.tcp://127.0.0.1:4840
    points:
      alarm: {node_id: "ns=2;s=Alarm", data_type: bit}
      level: {node_id: "ns=2;s=Level", scale: 0}
roles:""")
    assert problems_of(text) == [
        "site.yaml:16: devices.plc.points.alarm: data_type bit exists only on Modbus; an "
        "OPC UA Boolean variable is data_type bool",
        "site.yaml:17: devices.plc.points.level: scale must not be 0",
    ]


# --- one run, every problem ----------------------------------------------------------------

def test_schema_and_site_problems_are_reported_together() -> None:
    text = (MINIMAL.replace("data_type: float32}", "data_type: flaot32}")
            .replace("port: 5020", "port: 5020\n    colour: blue")
            + "  it.power: hp1.nope\n  hp.enable: hp1.temp\n"
            + "  coolant.return_temp: hp1.flow\n"
            + "poll_groups:\n  slow: {interval: 0}\n  fast: {interval: 0.5}\n")
    text = text.replace("scale: 0.1}", "scale: 0.1, poll_group: slow}")
    assert problems_of(text) == [
        "site.yaml:8: devices.hp1.colour: unknown field",
        "site.yaml:11: devices.hp1.points.flow.data_type: 'flaot32' is not one of int16, "
        "uint16, int32, uint32, int64, uint64, float32, float64, bool, bit",
        # the role names a point the file has: its own mistake is reported, not the role
        "site.yaml:15: roles.it.power: 'hp1.nope' is not a point of this site",
        "site.yaml:16: roles.hp.enable: 'hp1.temp' is bound to output role 'hp.enable' but "
        "is not writable",
        # poll group 'slow' is invalid, not missing: temp is not blamed for naming it
        "site.yaml:19: poll_groups.slow.interval: 0: Input should be greater than 0",
    ]


def test_a_device_with_a_bad_protocol_is_left_out_of_the_site_checks() -> None:
    text = MINIMAL.replace("modbus_tcp", "modbus_udp") + "  it.power: hp1.missing\n"
    assert problems_of(text) == [
        "site.yaml:5: devices.hp1.protocol: 'modbus_udp' is not one of modbus_tcp, "
        "modbus_rtu, opcua"]


def test_an_invalid_control_section_does_not_judge_staleness_with_defaults() -> None:
    text = MINIMAL.replace("data_type: float32}", "data_type: float32, poll_group: slow}") + (
        "poll_groups:\n  default: {interval: 1.0}\n  slow: {interval: 12.0}\n"
        "control:\n  validation: {stale_after_s: 30.0, colour: red}\n  envelope: 3\n")
    assert problems_of(text) == [
        "site.yaml:18: control.validation.colour: unknown field",
        "site.yaml:19: control.envelope: 3: Input should be an object",
    ]


# --- check-config: the safe state and the files heatd run reads at start --------------------

SAFE = MINIMAL.replace(
    "temp: {table: holding, address: 2, data_type: int16, scale: 0.1}",
    "fan: {table: holding, address: 2, data_type: uint16, scale: 0.1, unit: '%', "
    "writable: true, write_min: 0, write_max: 100}\n"
    "      valve: {table: holding, address: 3, data_type: uint16, scale: 0.001, "
    "writable: true, write_min: 0, write_max: 1}\n"
    "      capacity: {table: holding, address: 4, data_type: uint16, unit: '%', "
    "writable: true, write_min: 20, write_max: 100}\n"
    "      enable: {table: coil, address: 0, data_type: bool, writable: true}",
) + ("  drycooler.fan: hp1.fan\n  valve.recovery: hp1.valve\n  hp.capacity: hp1.capacity\n"
     "  hp.enable: hp1.enable\n")


def checked_problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        check_site(path)
    return [str(p).removeprefix(str(tmp_path) + "/") for p in caught.value.problems]


def test_safe_state_reachable_within_the_write_bounds(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(SAFE)
    assert check_site(path).notes == []  # a minimum capacity is fine: hp.enable turns it off
    fan_capped = SAFE.replace("write_max: 100}\n      valve", "write_max: 80}\n      valve")
    valve_open = SAFE.replace("write_min: 0, write_max: 1}", "write_min: 0.1, write_max: 1}")
    assert checked_problems(tmp_path, fan_capped) == [
        "site.yaml:11: devices.hp1.points.fan.write_max: the safe state writes 100 % to "
        "drycooler.fan (dry-cooler fans at full speed), above write_max 80: the worst case "
        "would be clamped short of it"]
    assert checked_problems(tmp_path, valve_open) == [
        "site.yaml:12: devices.hp1.points.valve.write_min: the safe state writes 0 to "
        "valve.recovery (all coolant to the dry cooler), below write_min 0.1: the worst case "
        "would be clamped short of it"]
    no_enable = SAFE.replace("  hp.enable: hp1.enable\n", "")
    assert checked_problems(tmp_path, no_enable) == [
        "site.yaml:13: devices.hp1.points.capacity.write_min: the safe state writes 0 % to "
        "hp.capacity (heat pump off), below write_min 20: the worst case would be clamped "
        "short of it"]
    # heatd run accepts such a site (it clamps the safe state and says so); check-config not
    load_site(path.parent / "site.yaml")
    narrow = SAFE.replace("data_type: uint16, scale: 0.1, unit: '%', writable: true, "
                          "write_min: 0, write_max: 100}",
                          "data_type: uint16, scale: 0.001, unit: '%', writable: true}")
    assert checked_problems(tmp_path, narrow) == [
        "site.yaml:11: devices.hp1.points.fan.data_type: the safe state writes 100 % to "
        "drycooler.fan (dry-cooler fans at full speed), but uint16 with scale 0.001 carries "
        "only 0 to 65.535"]


def test_check_config_reads_the_mqtt_files_heatd_run_reads(tmp_path: Path) -> None:
    def site(mqtt: str) -> str:
        return MINIMAL + "mqtt:\n" + mqtt

    missing = tmp_path / "missing"
    found = checked_problems(tmp_path, site(
        f"  username: u\n  password_file: {missing}\n  tls:\n    ca: {tmp_path}\n"))
    assert found == [
        f"site.yaml:16: mqtt.password_file: {missing}: No such file or directory (heatd run "
        "would refuse to start)",
        f"site.yaml:18: mqtt.tls.ca: {tmp_path}: Is a directory (heatd run would refuse to "
        "start)",
    ]
    garbage = tmp_path / "cert.pem"
    garbage.write_text("not a certificate\n")
    [problem] = checked_problems(tmp_path, site(
        f"  tls:\n    cert: {garbage}\n    key: {garbage}\n"))
    assert problem.startswith(f"site.yaml:16: mqtt.tls.cert: {garbage} / {garbage}: ")
    # with the credential directory systemd would set, the same file is checked and passes
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "mqtt-password").write_text("secret\n")
    path = tmp_path / "site.yaml"
    path.write_text(site("  username: u\n"
                         "  password_file: ${CREDENTIALS_DIRECTORY}/mqtt-password\n"))
    run = check_config(path, env={"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")})
    assert run.returncode == 0, run.stderr
    assert "note" not in run.stderr
    # without it (a shell, not systemd) the path cannot be checked: said, not failed
    run = check_config(path, env={})
    assert run.returncode == 0, run.stderr
    assert f"note: {path}: mqtt.password_file: not checked: $CREDENTIALS_DIRECTORY is not " \
           "set here" in run.stderr
    run = check_config(path, env={"CREDENTIALS_DIRECTORY": str(tmp_path / "nothing")})
    assert run.returncode == 1
    assert f"{path}:16: mqtt.password_file: {tmp_path}/nothing/mqtt-password: No such file " \
           "or directory" in run.stderr


def test_one_point_bound_to_two_output_roles() -> None:
    """A copy-paste slip: the fan bound to the valve's register would make the two take
    turns at it, and the plant would get neither setpoint."""
    text = MINIMAL.replace("data_type: int16, scale: 0.1}",
                           "data_type: int16, scale: 0.1, writable: true}")
    text += "  valve.recovery: hp1.temp\n  drycooler.fan: hp1.temp\n"
    assert problems_of(text) == [
        "site.yaml:15: roles.drycooler.fan: 'hp1.temp' is already bound to output role "
        "'valve.recovery': a point takes one output role"]


@pytest.mark.parametrize(("spec", "why"), [
    ("write_min: 0, write_max: 0.05", "raw counts 0 to 0"),
    ("range: [0.2, 0.25]", "raw counts 2 to 2"),
])
def test_a_heartbeat_point_that_cannot_change_is_refused(spec: str, why: str) -> None:
    text = MINIMAL.replace("data_type: int16, scale: 0.1}",
                           f"data_type: int16, scale: 0.1, writable: true, {spec}}}")
    [problem] = problems_of(text + "  plc.heartbeat: hp1.temp\n")
    assert problem.startswith("site.yaml:14: roles.plc.heartbeat: 'hp1.temp' cannot carry "
                              "the PLC heartbeat: it carries fewer than two heartbeat values")
    assert why in problem


def test_heartbeat_spans() -> None:
    """Each point's counts: its type's top, its write bounds and scale, a toggling bit."""
    def span(spec: str) -> HeartbeatSpan | str:
        site = parse_site(MINIMAL.replace(
            "data_type: int16, scale: 0.1}", f"writable: true, {spec}}}"), "site.yaml")
        return heartbeat_span(site.devices["hp1"].points["temp"])

    assert span("data_type: int16") == HeartbeatSpan(0, 32767)
    assert span("data_type: uint32") == HeartbeatSpan(0, 32767)
    assert span("data_type: int16, scale: 0.1, offset: -40, write_max: 0") == \
        HeartbeatSpan(0, 400, 0.1, -40)
    assert span("data_type: float32, write_min: 10, write_max: 20") == HeartbeatSpan(10, 20)
    assert span("data_type: int16, scale: -1, write_max: 0") == HeartbeatSpan(0, 32767, -1.0)
    toggle = span("data_type: bool")
    assert toggle == HeartbeatSpan(0, 1) and [toggle.value(k) for k in range(4)] == [0, 1, 0, 1]
    assert [HeartbeatSpan(3, 5, 10).value(k) for k in range(4)] == [30, 40, 50, 30]


COUNTER = """\
site: {id: s1}
devices:
  meter:
    protocol: modbus_tcp
    host: 127.0.0.1
    address_base: 0
    points:
      energy:
        table: input
        address: 0
        unit: kWh
        data_type: %s
        wrap: %s
"""


@pytest.mark.parametrize(("spec", "why"), [
    ("uint16", "a counter that wraps at 2^32 counts 0 to 4294967295, which uint16 cannot carry "
     "(0 to 65535)"),
    ("int32", "a counter that wraps at 2^32 counts 0 to 4294967295, which int32 cannot carry "
     "(-2147483648 to 2147483647)"),
    ("float32", "wrap is for integer counters: a float32 value does not start again at zero "
     "after 2^bits counts"),
    ("uint32\n        offset: 100", "a wrapping counter needs offset 0: its value is raw * "
     "scale"),
    ("uint32\n        scale: -0.1", "a wrapping counter needs a positive scale: its value is "
     "raw * scale"),
])
def test_a_wrap_the_counter_cannot_have_is_named_at_its_line(spec: str, why: str) -> None:
    """A wrap the data type cannot reach (or that turns a signed type negative first) would
    never be seen as a wrap: the counter's real wrap would read as a meter reset."""
    line = 13 + spec.count("\n")
    assert problems_of(COUNTER % (spec, 32)) == [
        f"site.yaml:{line}: devices.meter.points.energy.wrap: {why}"]


def test_a_wrap_within_the_data_type_is_accepted_with_any_positive_scale() -> None:
    assert problems_of(COUNTER % ("uint32", 64))[0].endswith(
        "which uint32 cannot carry (0 to 4294967295)")
    assert problems_of(COUNTER % ("int16", 16))[0].endswith(
        "which int16 cannot carry (-32768 to 32767)")
    assert problems_of(COUNTER.replace("table: input", "table: discrete") % ("bool", 16))[
        0].startswith("site.yaml:13: devices.meter.points.energy.wrap: wrap is for integer")
    for spec, wrap in [("uint16", 16), ("uint32\n        scale: 0.001", 32), ("uint32", 16),
                       ("int64", 32), ("uint64", 64)]:
        assert parse_site(COUNTER % (spec, wrap), "site.yaml").point("meter.energy").wrap \
            == wrap
    opcua = ("site: {id: s1}\ndevices:\n  hm:\n    protocol: opcua\n    endpoint: "
             "opc.tcp://127.0.0.1:4840\n    points:\n")
    site = parse_site(opcua + '      a: {node_id: "ns=2;s=A", wrap: 32}\n'
                      '      b: {node_id: "ns=2;s=B", data_type: uint32, wrap: 32}\n',
                      "site.yaml")
    assert site.point("hm.a").wrap == site.point("hm.b").wrap == 32  # a: the server's type
    assert problems_of(opcua + '      c: {node_id: "ns=2;s=C", data_type: float64, wrap: '
                       '32}\n') == [
        "site.yaml:7: devices.hm.points.c.wrap: wrap is for integer counters: a float64 value "
        "does not start again at zero after 2^bits counts"]


@pytest.mark.parametrize(("limit", "extra", "why"), [
    (1, "", "1 is smaller than point 'flow' (float32, 2 registers)"),
    (3, "      big: {table: input, address: 4, data_type: float64}\n",
     "3 is smaller than point 'big' (float64, 4 registers)"),
])
def test_max_registers_below_a_points_width_is_named_at_its_line(
        limit: int, extra: str, why: str) -> None:
    """A point is read in one request: one wider than the device's request limit could
    never be read, and the device would not be polled at all."""
    text = MINIMAL.replace("    points:\n", f"    max_registers: {limit}\n    points:\n"
                           ).replace("roles:", extra + "roles:")
    assert problems_of(text) == [
        f"site.yaml:9: devices.hp1.max_registers: {why}: a point is read in one request"]


def test_max_registers_as_wide_as_the_widest_point_is_accepted() -> None:
    text = MINIMAL.replace("    points:\n", "    max_registers: 2\n    points:\n"
                           ).replace("hp1:\n    protocol: modbus_tcp\n    host: 127.0.0.1\n"
                                     "    port: 5020",
                                     "hp1:\n    protocol: modbus_rtu\n    serial_port: /dev/x")
    assert parse_site(text, "site.yaml").devices["hp1"].max_registers == 2  # type: ignore[union-attr]
    bits = ("site: {id: s1}\ndevices:\n  io:\n    protocol: modbus_tcp\n    host: h\n"
            "    address_base: 0\n    max_registers: 1\n    points:\n"
            "      a: {table: coil, address: 0, data_type: bool}\n"
            "      b: {table: holding, address: 0, data_type: uint16}\n")
    assert parse_site(bits, "site.yaml").devices["io"].max_registers == 1  # type: ignore[union-attr]


def test_a_continuous_setpoint_on_a_coil_is_refused() -> None:
    """An on/off output cannot carry a share: the envelope's valve ceiling of 20 % would
    be written as ON, all coolant to the heat pump."""
    text = MINIMAL.replace("temp: {table: holding, address: 2, data_type: int16, scale: 0.1}",
                           "valve: {table: coil, address: 0, data_type: bool, writable: true}")
    assert problems_of(text + "  valve.recovery: hp1.valve\n") == [
        "site.yaml:14: roles.valve.recovery: 'hp1.valve' is a bool point, but "
        "'valve.recovery' is a continuous setpoint: any share above 0 would be written as on"]
    assert parse_site(text + "  hp.enable: hp1.valve\n", "site.yaml")  # on/off: fine
