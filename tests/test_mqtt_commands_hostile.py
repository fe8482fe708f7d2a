"""Commands as hostile input, against a real mosquitto: payloads nested too deep, a fuzz
corpus through the parser and a live sample through the broker, a burst of 2,000 commands
of which every one is answered or counted, and a flood of reloads merged into few.

Each test prints its figures (``pytest -s`` shows them)."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.client import MQTTMessage
from pydantic import ValidationError
from test_mqtt_link import BASE, SITE, Runtime, started, v5_request

from heatd.hil.rig.broker import Mosquitto, Recorder, retained
from heatd.hil.rig.waiting import until
from heatd.mqtt.command_payloads import (
    MODELS,
    Command,
    CommandLimits,
    CommandRefused,
    CommandResult,
    ReloadCommand,
    explain,
    parse,
)
from heatd.mqtt.guard import shape_problem
from heatd.mqtt.listener import COMMAND_INBOX
from heatd.mqtt.payload import dumps
from heatd.mqtt.session import MAX_INCOMING_PACKET

LIMITS = CommandLimits.from_site(SITE, max_ttl=3600)


class RoomyMosquitto(Mosquitto):
    """The test broker with no cap on the messages it queues for a slow subscriber: the
    observer must see all that heatd delivered, or the counts would measure the broker."""

    def _config(self) -> Path:
        conf = super()._config()
        with conf.open("a") as out:
            out.write("max_queued_messages 0\nmax_queued_bytes 0\n")
        return conf


@pytest_asyncio.fixture
async def broker() -> AsyncIterator[Mosquitto]:
    async with RoomyMosquitto() as b:
        yield b


def rss_kib() -> int:
    """Resident set size of this process now (``VmRSS``), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


# ------------------------------------------------------------------ hostile corpus

NAMES = st.sampled_from([*MODELS, "launch", "MODE", "", "ünïcode", "x" * 200])
"""Command names: the real ones and some that are not."""

SCALARS = (st.none() | st.booleans() | st.integers()
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40))
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=5),
    max_leaves=25,
)
FIELDS = st.sampled_from(["mode", "role", "point", "value", "ttl", "id", "by", "force"])
FIELD_VALUES = st.one_of(
    st.sampled_from(["auto", "safe", "manual", "recovery_off", "valve.recovery", "hp.enable",
                     "loop.valve", "racks.enable", "Auto", ""]),
    SCALARS, JSON_VALUES)
COMMAND_SHAPED = st.dictionaries(FIELDS, FIELD_VALUES, max_size=6)
"""Objects with the real field names and wrong, right or hostile values."""


def nested(depth: int, opener: str) -> bytes:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return f'{{"mode": {opener * depth}1{closer * depth}}}'.encode()


HAND_MADE = [
    nested(1100, "["), nested(1100, '{"a":'), nested(9, "["), b"[" * 5000, b"{" * 4000,
    b'{"mode": "auto", "ttl": ' + b"9" * 4000 + b"}",
    b'{"role": "valve.recovery", "value": 1e999999, "ttl": 5}',
    b'{"role": "valve.recovery", "value": NaN, "ttl": 5}',
    b'{"role": "valve.recovery", "value": -Infinity, "ttl": 5}',
    b'{"role": "valve.recovery", "value": 0.5, "ttl": Infinity}',
    b'{"mode": "auto", "id": "\\ud800"}', b'{"mode": "auto", "id": "\\u0000"}',
    b'{"mode": "auto", "mode": "safe"}', b'{"id": ' + b'"x' * 3000 + b"}",
    b'"' + b'\\"' * 2047, b"\xff\xfe\x00{", b"\x00" * 100, b"", b"null", b"[]", b"1e5",
    "{\"mode\": \"auto\", \"by\": \"\u202e\U0001f525\"}".encode(),
]
HOSTILE = st.one_of(
    st.sampled_from(HAND_MADE),
    st.binary(max_size=600),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),  # NaN/Infinity literals included
    COMMAND_SHAPED.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.tuples(st.integers(1, 3000), st.sampled_from(["[", "{\"a\":"])).map(
        lambda t: nested(*t)),
)


def check_parse(name: str, payload: bytes) -> bool:
    """``parse`` returns a command or raises CommandRefused, and either can be answered
    and audited as JSON; True for a command."""
    try:
        command = parse(name, payload, LIMITS)
    except CommandRefused as exc:
        assert isinstance(exc.reason, str) and exc.reason
        dumps({"id": exc.id, "reason": exc.reason})
        return False
    dumps(command.model_dump(mode="json"))
    return True


def hostile_corpus(batches: int, size: int, check: bool) -> list[tuple[str, bytes]]:
    """``batches * size`` (name, payload) pairs drawn by hypothesis, checked with
    ``check_parse`` as they are drawn when ``check`` (so a failure is shrunk). Drawn in
    batches: hypothesis spends most of its time per example, not per payload."""
    corpus: list[tuple[str, bytes]] = []

    @settings(max_examples=batches, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(NAMES, HOSTILE), min_size=size, max_size=size))
    def draw(batch: list[tuple[str, bytes]]) -> None:
        if check:
            for name, payload in batch:
                check_parse(name, payload)
        corpus.extend(batch)

    draw()
    return corpus


def test_fuzz_corpus_through_parse_raises_only_command_refused() -> None:
    began, started_at = rss_kib(), time.perf_counter()
    corpus = hostile_corpus(300, 40, check=True)
    corpus += [(name, payload) for name in MODELS for payload in HAND_MADE]
    drawn_s = time.perf_counter() - started_at
    # Once more, alone: what parsing 10,000+ hostile payloads does to memory.
    before = rss_kib()
    valid = sum(check_parse(name, payload) for name, payload in corpus)
    after = rss_kib()
    print(f"\nfuzz: {len(corpus)} payloads ({sum(len(p) for _, p in corpus) // 1024} KiB) "
          f"drawn and parsed in {drawn_s:.1f} s, {valid} valid commands; RSS {began} KiB at "
          f"the start, {before} KiB before the second pass, {after} KiB after it")
    assert len(corpus) >= 10_000
    assert after - before < 32 * 1024  # parsing holds on to nothing


# ------------------------------------------------------------------ keys named twice


def refusal(name: str, payload: bytes) -> CommandRefused:
    try:
        parse(name, payload, LIMITS)
    except CommandRefused as exc:
        return exc
    raise AssertionError(f"{payload!r} was accepted")


def test_a_key_named_twice_is_refused_whatever_the_values() -> None:
    """A reader of the audit record (or a bridge rule, a dashboard) may take the first of
    two values where a parser keeping the last carried out the other: refused, not
    resolved."""
    mode = refusal("mode", b'{"mode":"safe","mode":"auto","id":"dup1"}')
    assert (mode.reason, mode.id) == (
        "duplicate key 'mode': a command names each field once", "dup1")
    lease = refusal("override", b'{"role":"valve.recovery","value":1.0,"value":0.0,'
                    b'"ttl":60,"ttl":3600,"id":"dup2"}')
    assert lease.reason.startswith("duplicate keys 'value', 'ttl':") and lease.id == "dup2"
    same = refusal("mode", b'{"mode":"auto","id":"s","mode":"auto"}')  # even one value
    assert same.reason.startswith("duplicate key 'mode'")
    escaped = refusal("mode", b'{"mode":"auto","mo\\u0064e":"safe"}')  # the same key
    assert escaped.reason.startswith("duplicate key 'mode'")
    nested = refusal("mode", b'{"mode":{"a":1,"a":2}}')
    assert nested.reason.startswith("duplicate key 'a'")
    two_ids = refusal("reload", b'{"id":"a","id":"b"}')
    assert two_ids.reason.startswith("duplicate key 'id'") and two_ids.id is None
    assert refusal("launch", b'{"id":"x","id":"y"}').reason.startswith("unknown command")
    assert parse("mode", b'{"mode":"auto","by":"ops","id":"ok"}', LIMITS).mode == "auto"


EDGES = [b'{"mode":"auto"' + tail for tail in (
    b',"ttl":' + b"9" * 350 + b"}", b',"ttl":' + b"9" * 299 + b"}", b',"ttl":-0}',
    b',"ttl":1E2}', b',"ttl":1.}', b',"ttl":01}', b',"ttl":1e-400}', b',"ttl":true}',
    b',"ttl":"5"}', b',"ttl":1.7976931348623159e308}', b',"id":"a\x01b"}', b"}\x00",
    b"}{}", b',"id":"\\ud83d\\ude00"}', b',"id":"\\udc00\\ud800"}', b',"id":"\xed\xa0\x80"}',
    b',"by":"\xe9"}', b',"by":["\\ud800"]}', b",}", b"} ")] + [
    b"\xef\xbb\xbf{}", b'{"\\ud800":1}', b'{"mode":"AUTO"}', b'{"mode":["auto"]}', b"true",
    b'{"role":"hp.enable","value":0,"ttl":5}',
    b'{"point":"loop.valve","value":-' + b"9" * 400 + b',"ttl":5}']
"""Corners of JSON where two parsers could part: numbers beyond a float, surrogates,
encodings, control characters, trailing bytes."""


def test_reading_each_key_once_changes_nothing_else_the_models_judge() -> None:
    """``parse`` reads the payload once (``json.loads``, then the model validates the
    object) instead of the models' own JSON parser: for every payload that names no key
    twice it accepts exactly what that parser and the strict models accept, as the same
    command, and refuses the rest with the same reason (but for the wording of a JSON
    syntax error)."""
    def repeats(payload: bytes) -> bool:
        found: list[bool] = []

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            found.append(len(dict(items)) < len(items))
            return dict(items)
        try:
            json.loads(payload, object_pairs_hook=pairs)
        except ValueError:
            return False
        return any(found)

    corpus = [(name, payload) for name, payload in hostile_corpus(60, 40, check=False)
              if name in MODELS]
    corpus += [(name, payload) for name in MODELS for payload in [*HAND_MADE, *EDGES]]
    compared = valid = 0
    for name, payload in corpus:
        if shape_problem(payload) is not None or repeats(payload):
            continue
        try:
            expected: Command | str = MODELS[name].model_validate_json(
                payload or b"{}", strict=True, context=LIMITS)
        except ValidationError as exc:
            expected = explain(exc)
        try:
            got: Command | str = parse(name, payload, LIMITS)
        except CommandRefused as exc:
            got = exc.reason
        if isinstance(expected, str) and expected.startswith("Invalid JSON"):
            assert isinstance(got, str) and got.startswith("Invalid JSON"), (payload, got)
        else:
            assert got == expected, (name, payload)
        compared += 1
        valid += not isinstance(expected, str)
    print(f"\nsame verdicts: {compared} payloads compared, {valid} of them valid commands")
    assert compared > 500 and valid > 10


async def test_a_command_with_a_key_twice_is_answered_refused_and_never_carried_out(
    broker: Mosquitto,
) -> None:
    runtime = Runtime()
    link = await started(broker, runtime)
    sent = [("mode", b'{"mode":"safe","mode":"auto","id":"dup1"}'),
            ("override", b'{"role":"valve.recovery","value":1.0,"value":0.0,"ttl":60,'
                         b'"ttl":3600,"id":"dup2"}'),
            ("mode", b'{"mode":"auto","id":"after"}')]
    try:
        async with Recorder(broker, f"{BASE}/cmd/+/response", f"{BASE}/events") as rec:
            for name, payload in sent:
                await rec.client.publish(f"{BASE}/cmd/{name}", payload, qos=1)
            await until(lambda: len(rec.on(f"{BASE}/events")) == 3)
            await until(lambda: len([m for m in rec.seen if m.topic.endswith("/response")])
                        == 3)
    finally:
        await link.stop()
    replies = {r["id"]: r for r in (json.loads(m.payload) for m in rec.seen
                                    if m.topic.endswith("/response"))}
    assert replies["dup1"]["accepted"] is False
    assert replies["dup1"]["reason"].startswith("duplicate key 'mode'")
    assert replies["dup2"]["accepted"] is False
    assert replies["dup2"]["reason"].startswith("duplicate keys 'value', 'ttl'")
    assert replies["after"]["accepted"] is True
    assert [c.id for c in runtime.calls] == ["after"]
    audits = [json.loads(m.payload) for m in rec.on(f"{BASE}/events")]
    assert [a["id"] for a in audits] == ["dup1", "dup2", "after"]


async def test_nested_payloads_are_refused_and_later_commands_answered(
    broker: Mosquitto,
) -> None:
    """Without the guard, ``json.loads`` raises RecursionError on 1,100 levels."""
    runtime = Runtime()
    link = await started(broker, runtime)
    deep_big = b'{"id": "deep", "mode": ' + b'{"a":' * 1100 + b"1" + b"}" * 1100 + b"}"
    deep_small = nested(1100, "[")
    assert 6_000 < len(deep_big) < 8_000 and len(deep_small) < 4096
    after = [f"after{n}" for n in range(5)]
    try:
        async with Recorder(broker, f"{BASE}/cmd/mode/response", f"{BASE}/events") as rec:
            for payload in (deep_big, deep_small):
                await rec.client.publish(f"{BASE}/cmd/mode", payload, qos=1)
            for id_ in after:
                await rec.client.publish(f"{BASE}/cmd/mode", json.dumps(
                    {"mode": "auto", "id": id_}), qos=1)
            await until(lambda: len(rec.on(f"{BASE}/events")) == 7)
            await until(lambda: len(rec.on(f"{BASE}/cmd/mode/response")) == 7)
    finally:
        stop_started = time.perf_counter()
        await link.stop()
        stop_s = time.perf_counter() - stop_started
    replies = [json.loads(m.payload) for m in rec.on(f"{BASE}/cmd/mode/response")]
    refusals = [r for r in replies if r["id"] is None]
    assert [r["reason"] for r in refusals] == [
        f"payload of {len(deep_big)} bytes exceeds the limit of 4096 bytes",
        "payload nested deeper than 8 levels"]
    answered = [r["id"] for r in replies if r["id"] in after and r["accepted"]]
    audited = [a["id"] for a in map(json.loads, (m.payload for m in rec.on(f"{BASE}/events")))
               if a["id"] in after]
    print(f"\nnested: {len(deep_big)} B and {len(deep_small)} B payloads 1,100 deep refused; "
          f"after them {len(answered)}/{len(after)} answered, {len(audited)} audited; "
          f"stop took {stop_s:.2f} s")
    assert answered == after and audited == after
    assert [c.id for c in runtime.calls] == after
    assert link.stats.internal_errors == 0
    assert stop_s < 3.0  # nothing to wait for: no command in progress, broker up
    assert await retained(broker, f"{BASE}/status") == b"offline"


async def test_live_hostile_sample_is_answered_message_by_message(broker: Mosquitto) -> None:
    sample = hostile_corpus(20, 20, check=False) + [("mode", p) for p in HAND_MADE]
    link = await started(broker, Runtime(), command_rate=10_000.0, command_burst=100_000)
    reply_to = f"{BASE}/reply/fuzz"
    before = rss_kib()
    try:
        async with Recorder(broker, reply_to, f"{BASE}/events") as rec:
            for n, (name, payload) in enumerate(sample):
                await rec.client.publish(f"{BASE}/cmd/{name}", payload, qos=1,
                                         properties=v5_request(reply_to, str(n).encode()))

            def correlations() -> set[int]:
                return {int(m.properties.CorrelationData) for m in rec.on(reply_to)}

            await until(lambda: len(correlations()) == len(sample), timeout=20)
            await until(lambda: len(rec.on(f"{BASE}/events")) == len(sample), timeout=20)
    finally:
        await link.stop()
    after = rss_kib()
    replies = [json.loads(m.payload) for m in rec.on(reply_to)]
    print(f"\nlive sample: {len(sample)} hostile messages, {len(replies)} replies "
          f"({sum(r['accepted'] for r in replies)} accepted), "
          f"{len(rec.on(f'{BASE}/events'))} audit events; RSS {before} KiB before, "
          f"{after} KiB after")
    assert correlations() == set(range(len(sample)))
    assert len(replies) == len(sample)  # once each
    assert link.stats.internal_errors == 0 and link.stats.dropped == 0


async def test_a_full_inbox_discards_and_counts_and_big_packets_never_arrive(
    broker: Mosquitto,
) -> None:
    """Messages read faster than the link takes them wait in a bounded inbox; the broker
    sends nothing above the packet size heatd announced."""
    runtime = Runtime()
    link = await started(broker, runtime, command_rate=10_000.0, command_burst=100_000)
    try:
        client = link.listener.client  # as paho hands messages over, all at once
        assert client is not None
        for n in range(COMMAND_INBOX + 10):
            message = MQTTMessage(topic=f"{BASE}/cmd/republish".encode())
            message.payload = json.dumps({"id": f"i{n}"}).encode()
            client._client.on_message(client._client, None, message)
        assert link.stats.inbox_dropped == 10
        await until(lambda: link.stats.commands == COMMAND_INBOX)
        async with Recorder(broker, f"{BASE}/cmd/mode/response") as rec:
            await rec.client.publish(f"{BASE}/cmd/mode", b'{"id": "big", "by": "'
                                     + b"x" * MAX_INCOMING_PACKET + b'"}', qos=1)
            await rec.client.publish(f"{BASE}/cmd/mode", b'{"id": "small", "mode": "auto"}',
                                     qos=1)
            await rec.wait(f"{BASE}/cmd/mode/response", lambda m: b'"small"' in m.payload)
    finally:
        await link.stop()
    assert [json.loads(m.payload)["id"] for m in rec.seen] == ["small"]
    assert link.stats.commands == COMMAND_INBOX + 1 and link.stats.inbox_dropped == 10


# ------------------------------------------------------------------ floods


class Slow(Runtime):
    """A runtime that takes its time over each command, so a backlog builds up."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.reloads: list[tuple[float, float]] = []

    async def __call__(self, command: Command) -> CommandResult:
        began = time.monotonic()
        await asyncio.sleep(self.seconds)
        if isinstance(command, ReloadCommand):
            self.reloads.append((began, time.monotonic()))
        return await super().__call__(command)


def burst_payload(n: int) -> tuple[str, bytes]:
    """Command ``n`` of the burst: valid and invalid, on four names."""
    id_ = f"b{n}"
    match n % 5:
        case 0:
            return "mode", json.dumps({"mode": "auto", "id": id_}).encode()
        case 1:
            return "override", json.dumps({"id": id_, "role": "valve.recovery",
                                           "value": 0.5, "ttl": 30}).encode()
        case 2:
            return "reload", json.dumps({"id": id_}).encode()
        case 3:
            return "mode", json.dumps({"mode": "turbo", "id": id_}).encode()
        case _:
            return "launch", json.dumps({"id": id_}).encode()


async def test_burst_of_2000_commands_each_answered_and_audited_or_counted(
    broker: Mosquitto,
) -> None:
    total = 2000
    link = await started(broker, Slow(0.005), command_rate=100.0, command_burst=50,
                         queue_size=200, reload_min_interval=0.5)
    stats_topic = f"{BASE}/stats"
    try:
        async with Recorder(broker, f"{BASE}/cmd/+/response", f"{BASE}/events",
                            stats_topic) as rec:
            # from a client of its own: the recorder's PUBACKs queue behind the answers
            async with broker.client() as sender:
                began = time.perf_counter()
                for n in range(total):
                    name, payload = burst_payload(n)
                    await sender.publish(f"{BASE}/cmd/{name}", payload, qos=1)
                sent_s = time.perf_counter() - began

            def latest_stats() -> dict[str, Any]:
                on = rec.on(stats_topic)
                return json.loads(on[-1].payload) if on else {}

            # Every command concluded or discarded unread, then every reply and audit
            # event seen or counted.
            await until(lambda: latest_stats().get("commands", 0)
                        + latest_stats().get("inbox_dropped", 0) == total, timeout=30)
            stats = latest_stats()
            unread = stats["inbox_dropped"]
            lost_replies = stats["dropped_by_kind"]["reply"] + unread
            lost_events = stats["dropped_by_kind"]["audit"] + unread

            def replies() -> list[str]:
                return [json.loads(m.payload)["id"] for m in rec.seen
                        if m.topic.endswith("/response")]

            def events() -> list[str]:
                return [json.loads(m.payload)["id"] for m in rec.on(f"{BASE}/events")]

            await until(lambda: len(replies()) + lost_replies == total, timeout=30)
            await until(lambda: len(events()) + lost_events == total, timeout=30)
    finally:
        await link.stop()
    print(f"\nburst: {total} commands sent in {sent_s:.2f} s; replies received "
          f"{len(replies())} + lost and counted {lost_replies}; audit events received "
          f"{len(events())} + lost and counted {lost_events}; rate_limited "
          f"{stats['rate_limited']}, busy {stats['busy']}, merged {stats['merged']}, "
          f"refused {stats['refused']}, dropped {stats['dropped']}, inbox_dropped {unread}, "
          f"broker_refused {stats['broker_refused']}")
    assert len(replies()) + lost_replies == total
    assert len(events()) + lost_events == total
    assert len(set(replies())) == len(replies()) and len(set(events())) == len(events())
    assert stats["dropped"] + 2 * unread == lost_replies + lost_events
    assert stats["rate_limited"] > 0  # the burst went beyond what the gate lets through
    assert stats["internal_errors"] == 0 and stats["broker_refused"] == 0
    assert link.stats.commands + link.stats.inbox_dropped == total  # nothing arrived after


async def test_reload_flood_runs_at_most_one_reload_per_interval(broker: Mosquitto) -> None:
    interval = 1.0
    runtime = Slow(0.1)
    link = await started(broker, runtime, command_rate=100.0, command_burst=100,
                         reload_min_interval=interval)
    flood_s, every = 3.0, 0.05
    count = 0
    try:
        async with Recorder(broker, f"{BASE}/cmd/reload/response") as rec:
            loop = asyncio.get_running_loop()
            end = loop.time() + flood_s
            while loop.time() < end:
                await rec.client.publish(f"{BASE}/cmd/reload", b"{}", qos=1)
                count += 1
                await asyncio.sleep(every)
            await until(lambda: len(rec.seen) == count, timeout=10)
    finally:
        await link.stop()
    replies = [json.loads(m.payload) for m in rec.seen]
    merged = [r for r in replies if r["detail"].get("merged")]
    starts = [began for began, _ in runtime.reloads]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    print(f"\nreload flood: {count} reloads in {flood_s:g} s, {len(runtime.reloads)} run, "
          f"{len(merged)} answered merged; gaps between runs "
          f"{', '.join(f'{g:.2f}' for g in gaps)} s")
    assert all(r["accepted"] for r in replies)
    assert len(runtime.reloads) <= math.ceil(flood_s / interval) + 1
    assert all(g >= interval for g in gaps)
    assert len(runtime.reloads) + len(merged) == count
    assert all("merged" in r["reason"] for r in merged)
    assert link.stats.merged == len(merged) and link.stats.rate_limited == 0


class Refusing(Slow):
    """A runtime whose site file is broken: every reload is refused."""

    async def __call__(self, command: Command) -> CommandResult:
        result = await super().__call__(command)
        if isinstance(command, ReloadCommand):
            return CommandResult(False, "invalid configuration, still running the old one")
        return result


async def test_a_refused_reload_is_not_merged_into_the_next_one(broker: Mosquitto) -> None:
    runtime = Refusing(0.0)
    link = await started(broker, runtime, reload_min_interval=60.0)
    try:
        async with Recorder(broker, f"{BASE}/cmd/reload/response") as rec:
            for n in range(2):
                await rec.client.publish(f"{BASE}/cmd/reload", b"{}", qos=1)
                await until(lambda n=n: len(rec.seen) == n + 1, timeout=10)
    finally:
        await link.stop()
    replies = [json.loads(m.payload) for m in rec.seen]
    assert len(runtime.reloads) == 2  # the fixed file is read at once, not in 60 s
    assert [r["accepted"] for r in replies] == [False, False]
    assert not any(r["detail"].get("merged") for r in replies)
