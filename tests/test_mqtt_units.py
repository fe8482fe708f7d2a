"""The MQTT layer's pure parts: settings, report-by-exception, command validation, topics
and payload encoding. No broker needed."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from heatd.control.state import Mode
from heatd.drivers.reading import Quality, Reading
from heatd.mqtt.command_payloads import (
    CommandLimits,
    CommandRefused,
    ModeCommand,
    OverrideCommand,
    ReloadCommand,
    WritablePoint,
    parse,
    peek_id,
)
from heatd.mqtt.gate import CommandGate, TokenBucket
from heatd.mqtt.guard import MAX_DEPTH, MAX_PAYLOAD_BYTES, shape_problem
from heatd.mqtt.payload import dumps, epoch_ms
from heatd.mqtt.report_by_exception import DeviceReporter, body
from heatd.mqtt.settings import MqttSettings, reply_prefix_problem
from heatd.mqtt.topics import Topics, check_device, publishable

# ------------------------------------------------------------------ settings


def settings(**data: object) -> MqttSettings:
    return MqttSettings.model_validate_json(json.dumps(data), strict=True)


def test_settings_defaults_follow_the_contract() -> None:
    s = settings()
    assert s.base("site-1") == "heatd/site-1" and s.identifier("site-1") == "heatd-site-1"
    assert (s.qos, s.effective_port, s.deadband) == (1, 1883, 0.0)
    assert settings(tls={}).effective_port == 8883
    assert settings(base_topic="plant/dc-3").base("x") == "plant/dc-3"


@pytest.mark.parametrize("data, needle", [
    ({"hots": "broker"}, "Extra inputs are not permitted"),
    ({"port": "1883"}, "valid integer"),
    ({"base_topic": "heatd/#"}, "[a-z0-9_-]"),
    ({"base_topic": "Heatd/Site"}, "[a-z0-9_-]"),
    ({"reconnect_min": 5, "reconnect_max": 1}, "reconnect_min must not exceed"),
    ({"password_file": "/x"}, "password_file needs username"),
    ({"deadbands": {"no-dot": 1.0}}, "pattern"),
    ({"deadband": -1}, "greater than or equal to 0"),
    ({"tls": {"cert": "c.pem"}}, "cert and key go together"),
    ({"homeassistant": {"override_ttl": 7200}}, "override_ttl exceeds override_max_ttl"),
    ({"response_prefix": "replies/#"}, "[a-z0-9_-]"),
    ({"base_topic": "plant/dc", "response_prefix": "plant/dc"}, "overlaps the site's topics"),
    ({"base_topic": "plant/dc", "response_prefix": "plant/dc/loop"}, "overlaps"),
    ({"base_topic": "plant/dc", "response_prefix": "plant"}, "overlaps"),
    ({"response_prefix": "heatd"}, "may overlap the site's topics"),
    ({"response_prefix": "heatd/s1/cmd"}, "may overlap"),
    ({"response_prefix": "heatd/s1"}, "may overlap"),
    ({"command_rate": 0}, "greater than 0"),
    ({"command_burst": 0}, "greater than or equal to 1"),
    ({"reload_min_interval": -1}, "greater than or equal to 0"),
])
def test_settings_refuse_bad_input_with_a_reason(data: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError) as err:
        settings(**data)
    assert needle in str(err.value)


def test_reply_prefix_lies_below_reply_or_outside_the_site() -> None:
    assert settings().replies("s1") == "heatd/s1/reply"
    assert settings(base_topic="plant/dc").replies("x") == "plant/dc/reply"
    assert settings(response_prefix="ops/replies").replies("s1") == "ops/replies"
    assert settings(response_prefix="heatd/s1/reply/ops").replies("s1") == "heatd/s1/reply/ops"
    for inside in ("heatd/s1", "heatd/s1/cmd", "heatd/s1/replyx", "heatd"):
        assert reply_prefix_problem("heatd/s1", inside) is not None, inside
    assert reply_prefix_problem("heatd/s1", "heatd/s10/reply") is None
    assert settings(response_prefix="heatd/s2/reply").replies("s1") == "heatd/s2/reply"


def test_password_file_read_with_environment_expansion(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mqtt-password").write_text("pa ss\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    s = settings(username="u", password_file="${CREDENTIALS_DIRECTORY}/mqtt-password")
    assert s.read_password() == "pa ss"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ValueError, match="environment variable not set"):
        s.read_password()
    with pytest.raises(ValueError, match="missing"):
        settings(username="u", password_file=str(tmp_path / "missing")).read_password()
    assert settings().read_password() is None


def test_per_point_deadband_overrides_the_default() -> None:
    s = settings(deadband=0.2, deadbands={"loop.flow": 3.0})
    assert s.deadband_for("loop", "flow") == 3.0
    assert s.deadband_for("loop", "supply") == 0.2


# ------------------------------------------------------------------ report by exception


def reporter(deadband: float = 0.5, refresh: float = 60.0) -> DeviceReporter:
    return DeviceReporter(lambda point: 2.0 if point == "flow" else deadband, refresh)


def test_body_keeps_numbers_and_marks_bad_and_stale() -> None:
    out = body({
        "t": Reading.good(21.5, 0), "n": Reading.good(7, 0), "b": Reading.good(False, 0),
        "bad": Reading(12.0, Quality.BAD, 0, "range"),  # a bad value is never published
        "old": Reading(3.0, Quality.STALE, 0, "older than 5 s"),
        "nan": Reading.good(math.nan, 0),
    })
    assert out == {"t": 21.5, "n": 7, "b": False, "bad": None, "old": 3.0, "nan": None,
                   "quality": {"bad": "bad:range", "old": "stale:older than 5 s",
                               "nan": "bad:not a number"}}
    assert json.loads(dumps(out))["n"] == 7


def test_first_report_always_sent_then_only_beyond_deadband() -> None:
    r = reporter()
    assert r.update({"t": Reading.good(20.0, 0)}, 0.0) is not None
    assert r.update({"t": Reading.good(20.5, 0)}, 1.0) is None  # not *beyond* 0.5
    assert r.update({"t": Reading.good(19.6, 0)}, 2.0) is None
    assert r.update({"t": Reading.good(20.51, 0)}, 3.0) == {"t": 20.51, "quality": {}}
    # the reference is what was sent last, so slow creep is reported once it adds up
    assert r.update({"t": Reading.good(20.9, 0)}, 4.0) is None
    assert r.update({"t": Reading.good(21.1, 0)}, 5.0) is not None


def test_per_point_deadband_and_any_change_of_bool_quality_or_points() -> None:
    r = reporter()
    first = {"flow": Reading.good(100.0, 0), "run": Reading.good(False, 0)}
    assert r.update(first, 0.0) is not None
    assert r.update({**first, "flow": Reading.good(101.9, 0)}, 1.0) is None
    assert r.update({**first, "run": Reading.good(True, 0)}, 2.0) is not None
    assert r.update({**first, "run": Reading.good(True, 0),
                     "flow": Reading.bad("timeout", 0)}, 3.0) == {
        "flow": None, "run": True, "quality": {"flow": "bad:timeout"}}
    assert r.update({**first, "run": Reading.good(True, 0),
                     "flow": Reading.bad("crc", 0)}, 4.0) is not None  # new reason
    assert r.update({"run": Reading.good(True, 0)}, 5.0) is not None  # a point went away


def test_full_refresh_and_force_resend_unchanged_state() -> None:
    r = reporter(refresh=10.0)
    same = {"t": Reading.good(20.0, 0)}
    assert r.update(same, 100.0) is not None
    assert r.update(same, 109.9) is None
    assert r.update(same, 110.0) is not None
    assert r.update(same, 111.0) is None
    r.force()
    assert r.update(same, 112.0) is not None


# ------------------------------------------------------------------ commands

LIMITS = CommandLimits(
    max_ttl=3600.0,
    roles=frozenset({"valve.recovery", "hp.enable"}),
    points={"loop.valve": WritablePoint("valve.recovery", False, 0.0, 100.0),
            "hp.enable": WritablePoint("hp.enable", True, None, None)},
)


def refused(name: str, payload: object) -> CommandRefused:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with pytest.raises(CommandRefused) as err:
        parse(name, raw, LIMITS)
    return err.value


def test_valid_commands_parse_into_their_models() -> None:
    assert parse("mode", b'{"mode": "safe", "id": "x", "by": "ops"}', LIMITS) == ModeCommand(
        mode=Mode.SAFE, id="x", by="ops")
    o = parse("override", b'{"point": "loop.valve", "value": 40, "ttl": 60}', LIMITS)
    assert isinstance(o, OverrideCommand) and (o.role, o.point, o.value) == (
        "valve.recovery", "loop.valve", 40.0)
    o = parse("override", b'{"role": "hp.enable", "value": false, "ttl": 5}', LIMITS)
    assert isinstance(o, OverrideCommand) and o.value is False
    o = parse("override", b'{"role": "valve.recovery", "value": null}', LIMITS)
    assert isinstance(o, OverrideCommand) and o.value is None  # ends the lease
    assert parse("reload", b"", LIMITS) == ReloadCommand()


@pytest.mark.parametrize("name, payload, reason", [
    ("mode", {"mode": "Auto"}, "mode: 'Auto' is not one of auto, recovery_off, manual, safe"),
    ("mode", {"mode": "manual", "ttl": 0}, "ttl: Input should be greater than 0"),
    ("mode", {"mode": "manual", "ttl": 4000}, "exceeds the longest allowed lease of 3600 s"),
    ("mode", {"mode": "auto", "id": [7]}, "id: must be text of at most 128 characters or an "
     "integer"),
    ("override", {"role": "valve.recovery", "value": 0.5}, "an override needs a ttl"),
    ("override", {"role": "valve.recovery", "point": "loop.valve", "value": 0.5, "ttl": 1},
     "give exactly one of role or point"),
    ("override", {"role": "drycooler.fan", "value": 0.5, "ttl": 1},
     "role 'drycooler.fan' cannot be overridden here"),
    ("override", {"role": "valve.recovery", "value": 1.5, "ttl": 1}, "takes a fraction 0..1"),
    ("override", {"role": "valve.recovery", "value": True, "ttl": 1}, "takes a fraction 0..1"),
    ("override", {"role": "hp.enable", "value": 1, "ttl": 1}, "hp.enable takes true or false"),
    ("override", {"point": "loop.valve", "value": -1, "ttl": 1}, "below write_min 0"),
    ("override", {"point": "loop.heartbeat", "value": 1, "ttl": 1}, "cannot be overridden"),
    ("override", {"role": "valve.recovery", "value": None, "ttl": 5}, "makes no sense"),
    ("override", {"role": "valve.recovery", "value": "0.5", "ttl": 1}, "value"),
    ("republish", {"all": True}, "all: Extra inputs are not permitted"),
    ("reboot", {}, "unknown command 'reboot'"),
])
def test_invalid_commands_are_refused_with_reason(name: str, payload: object,
                                                  reason: str) -> None:
    assert reason in refused(name, payload).reason


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_numbers_are_refused_with_one_clear_reason(literal: bytes) -> None:
    value = refused("override", b'{"id": "n", "role": "valve.recovery", "value": ' + literal
                    + b', "ttl": 60}')
    assert value.reason == "value: must be a finite number (not NaN or Infinity)"
    assert value.id == "n"
    ttl = refused("mode", b'{"mode": "manual", "ttl": ' + literal + b"}")
    assert ttl.reason == "ttl: must be a finite number (not NaN or Infinity)"


def test_oversized_and_deep_payloads_are_refused_before_parsing() -> None:
    deep = b'{"mode": ' + b"[" * 1100 + b"]" * 1100 + b"}"
    assert refused("mode", deep).reason == f"payload nested deeper than {MAX_DEPTH} levels"
    big = json.dumps({"mode": "auto", "by": "x" * MAX_PAYLOAD_BYTES}).encode()
    assert "exceeds the limit of 4096 bytes" in refused("mode", big).reason
    assert peek_id(deep) is None and peek_id(big) is None


def test_shape_guard_ignores_brackets_in_strings_and_stays_linear() -> None:
    assert shape_problem(b'{"by": "' + b"[" * 3000 + b'"}') is None
    assert shape_problem(rb'{"by": "\\"}' + b"[" * 9) is not None  # escaped backslash
    assert shape_problem(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is None
    assert shape_problem(b"[" * (MAX_DEPTH + 1)) is not None
    assert shape_problem(b'[[[[[[[[[ "abc') is not None  # counted before the open string
    hostile = b'"' + rb'\"' * 2047  # a string that never ends, full of escaped quotes
    started = time.perf_counter()
    for _ in range(20):
        assert shape_problem(hostile) is None
    # Linear: ~0.03 ms each; the quadratic scan this replaces took ~60 ms each, so the
    # bound has room for a loaded machine and still tells the two apart.
    assert time.perf_counter() - started < 0.4


def test_an_id_that_is_not_valid_unicode_is_not_echoed() -> None:
    assert peek_id(rb'{"id": "\ud800", "mode": 1}') is None
    assert peek_id(rb'{"id": "ok\u00e9"}') == "ok\u00e9"
    assert peek_id(b'{"id": "' + b"x" * 300 + b'"}') == "x" * 128
    assert peek_id(b'{"id": 4}') == 4 and peek_id(b'{"id": 4.5}') == 4.5
    assert peek_id(b'{"id": {"a": 1}}') is None and peek_id(b'{"id": true}') is None
    assert peek_id(b'{"id": ' + b"9" * 400 + b'}') is None


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket.full(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.4)  # 0.8 of a token
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped
    assert bucket.take(99.0) is False  # a clock step back adds nothing


def test_gate_keeps_a_bucket_per_command_and_one_for_unknown_names() -> None:
    gate = CommandGate(("mode", "reload"), rate=1.0, burst=2, now=0.0)
    assert [gate.admit("mode", 0.0) for _ in range(3)] == [True, True, False]
    assert gate.admit("reload", 0.0)  # its own bucket
    assert [gate.admit(f"x{n}", 0.0) for n in range(3)] == [True, True, False]  # shared


def test_refusal_keeps_the_id_when_it_can_be_read() -> None:
    assert refused("mode", {"mode": "turbo", "id": "q7"}).id == "q7"
    assert refused("mode", b"{oops").id is None
    assert refused("mode", [1, 2]).reason == "Input should be an object"


def test_limits_from_site_list_only_bound_writable_overridable_points() -> None:
    from heatd.config_loader import load_site

    site = load_site(Path(__file__).parent.parent / "config" / "example-site.yaml")
    limits = CommandLimits.from_site(site, 60.0)
    assert limits.roles <= {"valve.recovery", "drycooler.fan", "hp.enable", "hp.capacity"}
    for ref, point in limits.points.items():
        assert site.point(ref).writable and point.role in limits.roles
        assert ref in site.role_points(point.role)
    assert limits.points  # the example binds overridable outputs to writable points
    assert not set(site.role_points("plc.heartbeat")) & set(limits.points)


# ------------------------------------------------------------------ topics and payloads


def test_topics_and_reserved_device_names() -> None:
    t = Topics("heatd/s1")
    assert t.state("loop") == "heatd/s1/loop/state"
    assert t.command_name("heatd/s1/cmd/mode") == "mode"
    assert t.command_name("heatd/s1/cmd/mode/response") is None
    assert t.command_name("heatd/s2/cmd/mode") is None
    assert publishable("a/b") and publishable("x/é")
    assert not any(publishable(t) for t in ("", "a/+", "a/#", "a\0b", "x" * 65536))
    for bad in ("cmd", "control", "Loop", "a/b", "#"):
        with pytest.raises(ValueError):
            check_device(bad)


def test_payload_encoding() -> None:
    assert epoch_ms(1_700_000_000.123) == 1_700_000_000_123
    assert epoch_ms(1.5) == 1500
    assert dumps({"a": math.inf, "b": (1, 2.5), "c": Quality.GOOD}) == \
        b'{"a":null,"b":[1,2.5],"c":"good"}'
    with pytest.raises(TypeError, match="object"):
        dumps({"x": object()})


# ------------------------------------------------------------------ Home Assistant


def test_discovery_offers_a_control_for_every_overridable_point_and_a_release() -> None:
    from heatd.config_loader import load_site
    from heatd.mqtt.discovery import discovery_payload
    from heatd.mqtt.settings import HomeAssistantSettings

    site = load_site(Path(__file__).parent.parent / "config" / "demo-site.yaml")
    limits = CommandLimits.from_site(site, 3600.0)
    ha = HomeAssistantSettings(discovery=True, override_ttl=300)
    cmps = discovery_payload(site, Topics("heatd/demo"), ha, limits, "1.0")["cmps"]
    platforms = set()
    for ref, bounds in limits.points.items():
        key = ref.replace(".", "_")
        control = cmps[f"{key}_override"]
        platforms.add(control["p"])
        if bounds.boolean:
            assert control["p"] == "switch"
            sent = [parse("override", control[k].encode(), limits)
                    for k in ("payload_on", "payload_off")]
            assert [(c.point, c.role, c.value, c.ttl) for c in sent] == [
                (ref, bounds.role, True, 300.0), (ref, bounds.role, False, 300.0)]
            device, name = ref.split(".", 1)
            assert control["state_topic"] == f"heatd/demo/{device}/state"
            assert f"value_json[{name!r}]" in control["value_template"]
        else:
            assert control["p"] == "number"  # the demo's fractions (0..1) shown in percent
            assert bounds.low is not None and bounds.high is not None
            assert (control["min"], control["max"], control["unit_of_measurement"]) == (
                bounds.low * 100, bounds.high * 100, "%")
        release = cmps[f"{key}_release"]
        assert release["p"] == "button"
        cleared = parse("override", release["payload_press"].encode(), limits)
        assert isinstance(cleared, OverrideCommand)
        assert (cleared.point, cleared.role, cleared.value) == (ref, bounds.role, None)
    assert platforms == {"switch", "number"}  # the demo site has both kinds


def test_the_same_readings_again_are_not_sent_until_the_refresh() -> None:
    """A cycle that saw no new poll offers the very readings of the last one: nothing is
    sent, and the full refresh still comes on time; a force sends them at once."""
    r = reporter(deadband=0.0, refresh=10.0)
    held = {"t": Reading.good(20.0, 0), "q": Reading(1.0, Quality.BAD, 0, "timeout")}
    assert r.update(held, 0.0) is not None
    assert r.update(held, 5.0) is None
    assert r.update(dict(held), 9.9) is None
    assert r.update(held, 10.0) == {"t": 20.0, "q": None, "quality": {"q": "bad:timeout"}}
    r.force()
    assert r.update(held, 10.1) is not None
    assert r.update({**held, "t": Reading.good(20.1, 0)}, 10.2) is not None
