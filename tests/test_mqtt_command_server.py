"""The command server without a broker: messages come from an in-memory async iterator,
answers and audit records land in lists, and the rate limiter and reload merging run on a
clock the test moves. What the live tests (test_mqtt_link.py, test_mqtt_commands_hostile.py)
show through mosquitto is shown here message by message and to the tick."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from test_mqtt_link import BASE, SITE, Runtime

from heatd.mqtt.command_payloads import Command, CommandLimits, CommandResult, ReloadCommand
from heatd.mqtt.command_server import COMMAND_BACKLOG, STOPPING, CommandServer
from heatd.mqtt.guard import MAX_PAYLOAD_BYTES
from heatd.mqtt.settings import MqttSettings
from heatd.mqtt.topics import Topics
from heatd.mqtt.wire import Incoming, LinkStats

WALL = 1_700_000_000.0
"""The wall clock of every answer (epoch seconds): answers carry ``ts`` in ms."""


@dataclass(frozen=True, slots=True)
class Reply:
    topic: str
    body: dict[str, Any]
    correlation: bytes | None


class Answers:
    """The server's ``Answers``: keeps every reply and audit record, lets a test wait for
    a number of them."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.audits: list[dict[str, Any]] = []
        self.room = True
        """False: the queue is full, as the link's is under a command flood."""
        self._grew = asyncio.Event()

    def reply(self, topic: str, payload: bytes, correlation: bytes | None) -> None:
        self.replies.append(Reply(topic, json.loads(payload), correlation))
        self._grew.set()

    def audit(self, record: bytes) -> None:
        self.audits.append(json.loads(record))
        self._grew.set()

    def full(self) -> bool:
        return not self.room

    async def replied(self, count: int) -> list[Reply]:
        """Once ``count`` replies arrived (at most 5 s): all of them."""
        async with asyncio.timeout(5):
            while len(self.replies) < count:
                self._grew.clear()
                await self._grew.wait()
        return self.replies

    def by_id(self) -> dict[str | None, dict[str, Any]]:
        return {r.body["id"]: r.body for r in self.replies}


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Blocked(Runtime):
    """A runtime whose handler waits until released, and says when it was called."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.called = asyncio.Event()

    async def __call__(self, command: Command) -> CommandResult:
        self.calls.append(command)
        self.called.set()
        await self.release.wait()
        return CommandResult(True, "done", {"n": len(self.calls)})


class Rig:
    """A started server with its runtime, answers, counters and clock."""

    def __init__(self, runtime: Runtime | None = None, *, answers: Answers | None = None,
                 audit_store: Any = None, handler_timeout: float = 5.0, **settings: Any
                 ) -> None:
        self.runtime = runtime or Runtime()
        self.answers = answers or Answers()
        self.stats = LinkStats()
        self.clock = Clock()
        self.republished = 0
        mqtt = MqttSettings.model_validate_json(json.dumps(settings), strict=True)
        self.server = CommandServer(
            Topics(BASE), mqtt, self.runtime, self.answers, self.stats,
            limits=CommandLimits.from_site(SITE, mqtt.override_max_ttl),
            reply_prefix=mqtt.replies("t1"), republish=self._republish,
            handler_timeout=handler_timeout, clock=lambda: WALL, monotonic=self.clock,
            audit_store=audit_store)
        self.server.start()

    def _republish(self) -> int:
        self.republished += 1
        return 7

    async def feed(self, messages: Iterable[Incoming]) -> None:
        """Run the server's reader over ``messages`` until they end."""
        await self.server.consume(_aiter(messages))


async def _aiter(messages: Iterable[Incoming]) -> AsyncIterator[Incoming]:
    for message in messages:
        yield message


def cmd(name: str, payload: bytes | dict[str, Any], props: Properties | None = None, *,
        retain: bool = False) -> Incoming:
    """A message on ``<base>/cmd/<name>``."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Incoming(f"{BASE}/cmd/{name}", data, props, retain)


def v5(response_topic: str | None, correlation: bytes) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    if response_topic is not None:
        props.ResponseTopic = response_topic
    props.CorrelationData = correlation
    return props


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    made = Rig()
    yield made
    await made.server.close(1.0)


# ------------------------------------------------------------------ answering


async def test_an_accepted_command_is_carried_out_answered_and_audited(rig: Rig) -> None:
    await rig.feed([cmd("mode", {"id": "m1", "mode": "manual", "ttl": 600, "by": "ops"})])
    (reply,) = await rig.answers.replied(1)
    assert reply.topic == f"{BASE}/cmd/mode/response" and reply.correlation is None
    assert reply.body == {"ts": 1_700_000_000_000, "id": "m1", "command": "mode",
                          "accepted": True, "reason": "ok", "detail": {"name": "mode"}}
    assert rig.answers.audits == [{
        "ts": 1_700_000_000_000, "kind": "command", "command": "mode", "id": "m1",
        "accepted": True, "reason": "ok", "args": {"by": "ops", "mode": "manual", "ttl": 600.0}}]
    assert [c.id for c in rig.runtime.calls] == ["m1"]
    assert (rig.stats.commands, rig.stats.refused) == (1, 0)


async def test_v5_replies_go_to_the_response_topic_below_the_prefix_only(rig: Rig) -> None:
    await rig.feed([
        cmd("mode", {"id": "in", "mode": "auto"}, v5(f"{BASE}/reply/ops/1", b"\x00c1")),
        cmd("mode", {"id": "out", "mode": "auto"}, v5("elsewhere/1", b"c2")),
        cmd("mode", {"id": "near", "mode": "auto"}, v5(f"{BASE}/replyx/1", b"c3")),
        cmd("mode", {"id": "wild", "mode": "auto"}, v5(f"{BASE}/reply/#", b"c4")),
        cmd("mode", {"id": "corr", "mode": "auto"}, v5(None, b"c5")),
    ])
    replies = {r.body["id"]: r for r in await rig.answers.replied(5)}
    assert (replies["in"].topic, replies["in"].correlation) == (f"{BASE}/reply/ops/1", b"\x00c1")
    assert replies["in"].body["accepted"] is True
    for id_, corr in (("out", b"c2"), ("near", b"c3"), ("wild", b"c4")):
        refused = replies[id_]
        assert (refused.topic, refused.correlation) == (f"{BASE}/cmd/mode/response", corr)
        assert refused.body["accepted"] is False
        assert "refused: replies go only below heatd/t1/reply/" in refused.body["reason"]
    assert (replies["corr"].topic, replies["corr"].correlation) == (
        f"{BASE}/cmd/mode/response", b"c5")
    assert [c.id for c in rig.runtime.calls] == ["in", "corr"]


async def test_republish_is_answered_by_the_link_itself(rig: Rig) -> None:
    await rig.feed([cmd("republish", {"id": "r"})])
    (reply,) = await rig.answers.replied(1)
    assert reply.body["accepted"] is True and reply.body["detail"] == {"topics": 7}
    assert rig.republished == 1 and rig.runtime.calls == []


async def test_reader_skips_other_topics_and_ends_with_its_messages(rig: Rig) -> None:
    await rig.feed([
        Incoming(f"{BASE}/cmd/mode/response", b'{"id": "echo", "mode": "auto"}'),
        Incoming(f"{BASE}/status", b"online"),
        Incoming("other/cmd/mode", b'{"id": "foreign", "mode": "auto"}'),
        cmd("mode", {"id": "mine", "mode": "auto"}),
    ])
    await rig.answers.replied(1)  # the others would have been refused as they were read
    assert [r.body["id"] for r in rig.answers.replies] == ["mine"]
    assert rig.stats.commands == 1


# ------------------------------------------------------------------ hostile input

HOSTILE: list[tuple[str, bytes, str]] = [
    ("mode", b'{"id": "big", "by": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}',
     f"exceeds the limit of {MAX_PAYLOAD_BYTES} bytes"),
    ("mode", b'{"mode": ' + b"[" * 1100 + b"1" + b"]" * 1100 + b"}",
     "payload nested deeper than 8 levels"),
    ("mode", b'{"mode": ' + b'{"a":' * 9 + b"1" + b"}" * 9 + b"}",
     "payload nested deeper than 8 levels"),
    ("mode", b"{not json", "Invalid JSON"),
    ("mode", b"\xff\xfe\x00{", "Invalid JSON"),
    ("mode", b"null", "Input should be an object"),
    ("mode", b'{"id": "turbo", "mode": "turbo"}', "mode: 'turbo' is not one of"),
    ("mode", b'{"id": "\\ud800", "mode": "auto"}', "Invalid JSON"),  # a lone surrogate
    ("override", b'{"id": "nan", "role": "valve.recovery", "value": NaN, "ttl": 5}',
     "value: must be a finite number (not NaN or Infinity)"),
    ("override", b'{"id": "far", "role": "valve.recovery", "value": 0.5, "ttl": 99999}',
     "exceeds the longest allowed lease"),
    ("reload", b'{"id": "force", "force": true}', "force: Extra inputs are not permitted"),
    ("launch", b'{"id": "launch"}', "unknown command 'launch'"),
    ("", b"{}", "unknown command ''"),
]


async def test_hostile_payloads_are_refused_and_later_commands_still_served(rig: Rig) -> None:
    messages = [cmd(name, payload, v5(f"{BASE}/reply/fuzz", str(n).encode()))
                for n, (name, payload, _) in enumerate(HOSTILE)]
    after = [f"after{n}" for n in range(3)]
    messages += [cmd("mode", {"id": id_, "mode": "auto"}) for id_ in after]
    await rig.feed(messages)
    replies = await rig.answers.replied(len(messages))
    refusals = {int(r.correlation or b"-1"): r.body for r in replies[:len(HOSTILE)]}
    assert sorted(refusals) == list(range(len(HOSTILE)))  # each answered once, in order
    for n, (_, _, reason) in enumerate(HOSTILE):
        assert refusals[n]["accepted"] is False, HOSTILE[n]
        assert reason in refusals[n]["reason"], (HOSTILE[n][1][:40], refusals[n]["reason"])
    assert refusals[0]["id"] is None and refusals[1]["id"] is None  # never parsed
    assert refusals[6]["id"] == "turbo" and refusals[7]["id"] is None  # lone surrogate
    assert [r.body["id"] for r in replies[len(HOSTILE):]] == after
    assert all(r.body["accepted"] for r in replies[len(HOSTILE):])
    assert [c.id for c in rig.runtime.calls] == after
    assert len(rig.answers.audits) == len(messages)
    assert len(rig.answers.audits[0]["payload"]) == 256  # an audit quotes at most that
    assert (rig.stats.refused, rig.stats.internal_errors) == (len(HOSTILE), 0)


async def test_only_commands_that_passed_the_shape_check_reach_the_audit_store() -> None:
    stored: list[dict[str, Any]] = []

    def store(record: bytes) -> bool:
        stored.append(json.loads(record))
        return len(stored) < 3  # then the disk is full: the in-memory path takes over

    rig = Rig(audit_store=store)
    try:
        await rig.feed([
            cmd("mode", b"[" * 20), cmd("mode", {"id": "a", "mode": "auto"}),
            cmd("mode", {"id": "b", "mode": "turbo"}), cmd("mode", {"id": "c", "mode": "auto"}),
            cmd("mode", {"id": "d", "mode": "auto"}, retain=True)])
        await rig.answers.replied(4)
    finally:
        await rig.server.close(1.0)
    assert [a["id"] for a in stored] == ["b", "d", "a", "c"]  # refusals at once
    assert [a["id"] for a in rig.answers.audits] == [None, "a", "c"]


async def test_a_retained_command_is_audited_as_ignored_never_answered_or_run(
    rig: Rig,
) -> None:
    await rig.feed([cmd("mode", {"id": "old", "mode": "safe"}, retain=True),
                    cmd("mode", {"id": "new", "mode": "auto"})])
    await rig.answers.replied(1)
    assert [r.body["id"] for r in rig.answers.replies] == ["new"]
    old = rig.answers.audits[0]
    assert (old["id"], old["accepted"], old["reason"]) == ("old", False,
                                                           "retained command ignored")
    assert [c.id for c in rig.runtime.calls] == ["new"]


class Faulty(Runtime):
    """Bugs in the runtime: it raises, answers a detail that is not JSON, or no result."""

    async def __call__(self, command: Command) -> CommandResult:
        self.calls.append(command)
        if command.id == "raise":
            raise KeyError("oops")
        if command.id == "detail":
            return CommandResult(True, "ok", {"when": object()})
        if command.id == "none":
            return None  # type: ignore[return-value]
        return CommandResult(True, "fine")


async def test_handler_bugs_are_answered_once_and_the_worker_carries_on() -> None:
    rig = Rig(Faulty())
    ids = ["raise", "detail", "none", "after"]
    try:
        await rig.feed([cmd("mode", {"id": i, "mode": "auto"}) for i in ids])
        replies = await rig.answers.replied(4)
    finally:
        await rig.server.close(1.0)
    assert [r.body["id"] for r in replies] == ids
    reasons = [r.body["reason"] for r in replies]
    assert reasons[0].startswith("internal error: KeyError")
    assert reasons[1:] == ["internal error: TypeError",
                           "internal error: handler returned no CommandResult", "fine"]
    assert [a["id"] for a in rig.answers.audits] == ids
    assert rig.stats.internal_errors == 3


class Unsendable(Answers):
    """Answers whose first reply fails, as a publish to a topic no broker takes would."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = 0

    def reply(self, topic: str, payload: bytes, correlation: bytes | None) -> None:
        if not self.failed:
            self.failed += 1
            raise ValueError("cannot publish")
        super().reply(topic, payload, correlation)


async def test_an_answer_that_cannot_be_sent_is_replaced_and_the_server_goes_on() -> None:
    rig = Rig(answers=Unsendable())
    try:
        await rig.feed([cmd("mode", {"id": "x", "mode": "turbo"}),
                        cmd("mode", {"id": "ok", "mode": "auto"})])
        replies = await rig.answers.replied(2)
    finally:
        await rig.server.close(1.0)
    assert [(r.body["id"], r.body["reason"]) for r in replies] == [
        ("x", "internal error: ValueError"), ("ok", "ok")]
    assert [a["id"] for a in rig.answers.audits] == ["x", "ok"]  # audited once each
    assert rig.stats.internal_errors == 1


async def test_a_slow_handler_is_answered_at_the_timeout_and_never_cancelled() -> None:
    runtime = Blocked()
    rig = Rig(runtime, handler_timeout=0.05)
    try:
        await rig.feed([cmd("reload", {"id": "slow"}), cmd("mode", {"id": "m", "mode": "auto"})])
        replies = await rig.answers.replied(1)
        assert replies[0].body["reason"].startswith("no answer within 0.05 s")
        await runtime.called.wait()
        runtime.release.set()
        await rig.answers.replied(2)
        await asyncio.sleep(0)  # the late reload finishes and is logged
    finally:
        await rig.server.close(1.0)
    assert [c.id for c in runtime.calls] == ["slow", "m"]
    assert rig.answers.replies[1].body["reason"] == "done"


# ------------------------------------------------------------------ limits


async def test_rate_limit_per_name_refuses_beyond_the_burst_until_tokens_return() -> None:
    rig = Rig(command_rate=1.0, command_burst=2)
    try:
        await rig.feed([cmd("mode", {"id": f"m{n}", "mode": "auto"}) for n in range(3)]
                       + [cmd("override", {"id": "o", "role": "valve.recovery", "value": 0.2,
                                           "ttl": 9})]
                       + [cmd(name, {"id": name}) for name in ("x1", "x2", "x3")])
        await rig.answers.replied(7)
        rig.clock.now += 1.0  # one token back for each name
        await rig.feed([cmd("mode", {"id": "m3", "mode": "auto"}),
                        cmd("mode", {"id": "m4", "mode": "auto"})])
        await rig.answers.replied(9)
    finally:
        await rig.server.close(1.0)
    answers = rig.answers.by_id()
    accepted = {i for i, body in answers.items() if body["accepted"]}
    assert accepted == {"m0", "m1", "o", "m3"}
    for limited in ("m2", "x3", "m4"):  # unknown names share one bucket
        assert answers[limited]["reason"].startswith(
            "rate limited: at most 1 commands a second on cmd/")
    assert "unknown command 'x1'" in answers["x1"]["reason"]
    assert rig.stats.rate_limited == 3
    assert [c.id for c in rig.runtime.calls] == ["m0", "m1", "o", "m3"]


async def test_a_flood_beyond_the_rate_limit_is_shed_unbuilt_while_answers_are_full() -> None:
    """While the answers queue is full, a rate-limited command's reply and audit would
    only push out older answers: they are counted as dropped without being built, so a
    flood costs little more than reading it. Commands within the limit are answered."""
    rig = Rig(command_rate=1.0, command_burst=1)
    rig.answers.room = False
    try:
        await rig.feed([cmd("mode", {"id": f"m{n}", "mode": "auto"}) for n in range(50)]
                       + [cmd("x1", b"{}")] * 50)
        await rig.answers.replied(2)
    finally:
        await rig.server.close(1.0)
    assert {r.body["id"] for r in rig.answers.replies} == {"m0", None}
    assert len(rig.answers.audits) == 2
    assert rig.stats.rate_limited == 98
    assert (rig.stats.commands, rig.stats.refused) == (100, 99)
    assert rig.stats.dropped_by_kind == {"reply": 98, "audit": 98, "event": 0, "other": 0}
    assert [c.id for c in rig.runtime.calls] == ["m0"]


async def test_commands_beyond_the_backlog_are_refused_as_busy() -> None:
    runtime = Blocked()
    rig = Rig(runtime, command_rate=1000.0, command_burst=1000)
    total = 1 + COMMAND_BACKLOG + 3
    try:
        await rig.feed([cmd("mode", {"id": "0", "mode": "auto"})])
        await runtime.called.wait()  # the first is being carried out
        await rig.feed([cmd("mode", {"id": str(n), "mode": "auto"}) for n in range(1, total)])
        busy = await rig.answers.replied(3)
        assert rig.server.waiting == COMMAND_BACKLOG
        assert [b.body["id"] for b in busy] == [str(n) for n in range(total - 3, total)]
        assert all(b.body["reason"] == "busy: too many commands queued" for b in busy)
        runtime.release.set()
        await rig.answers.replied(total)
    finally:
        await rig.server.close(1.0)
    assert [c.id for c in runtime.calls] == [str(n) for n in range(total - 3)]
    assert rig.stats.busy == 3


# ------------------------------------------------------------------ reloads


async def test_reloads_arriving_together_are_merged_into_the_one_that_runs() -> None:
    runtime = Blocked()
    rig = Rig(runtime, reload_min_interval=10.0)
    try:
        await rig.feed([cmd("reload", {"id": "lead"})])
        await runtime.called.wait()
        await rig.feed([cmd("reload", {"id": f"f{n}"}) for n in range(3)]
                       + [cmd("mode", {"id": "m", "mode": "auto"})])
        runtime.release.set()
        await rig.answers.replied(5)
        rig.clock.now += 9.5  # within the interval: answered with the last result
        await rig.feed([cmd("reload", {"id": "soon"})])
        await rig.answers.replied(6)
        rig.clock.now += 1.0  # beyond it: a reload runs again
        await rig.feed([cmd("reload", {"id": "later"})])
        await rig.answers.replied(7)
    finally:
        await rig.server.close(1.0)
    answers = rig.answers.by_id()
    assert answers["lead"]["reason"] == "done" and "merged" not in answers["lead"]["detail"]
    for n in range(3):
        assert answers[f"f{n}"]["reason"] == "merged into reload lead: done"
        assert answers[f"f{n}"]["detail"] == {"n": 1, "merged": True}
    soon = answers["soon"]
    assert soon["reason"].startswith("merged with the reload 9.5 s ago: ")
    assert soon["reason"].endswith(": done") and soon["detail"] == {"n": 1, "merged": True}
    assert answers["later"]["reason"] == "done"
    assert [c.id for c in runtime.calls] == ["lead", "m", "later"]
    assert rig.stats.merged == 4


class Refusing(Runtime):
    async def __call__(self, command: Command) -> CommandResult:
        self.calls.append(command)
        if isinstance(command, ReloadCommand):
            return CommandResult(False, "invalid configuration, still running the old one")
        return CommandResult(True)


async def test_a_refused_reload_is_not_merged_into_the_next_one() -> None:
    rig = Rig(Refusing(), reload_min_interval=60.0)
    try:
        for n in range(2):
            await rig.feed([cmd("reload", {"id": f"r{n}"})])
            await rig.answers.replied(n + 1)
    finally:
        await rig.server.close(1.0)
    assert [c.id for c in rig.runtime.calls] == ["r0", "r1"]
    assert rig.stats.merged == 0


# ------------------------------------------------------------------ closing


async def test_close_lets_the_running_command_finish_and_refuses_the_rest() -> None:
    runtime = Blocked()
    rig = Rig(runtime)
    await rig.feed([cmd("mode", {"id": f"q{n}", "mode": "auto"}) for n in range(3)])
    await runtime.called.wait()
    closing = asyncio.create_task(rig.server.close(5.0))
    await asyncio.sleep(0.05)
    assert not closing.done()  # waits for q0
    rig.server.take("mode", b'{"id": "late", "mode": "auto"}')
    runtime.release.set()
    await asyncio.wait_for(closing, 5)
    answers = rig.answers.by_id()
    assert answers["q0"]["reason"] == "done"
    for id_ in ("late", "q1", "q2"):
        assert answers[id_]["accepted"] is False and answers[id_]["reason"] == STOPPING
    assert [r.body["id"] for r in rig.answers.replies] == ["late", "q0", "q1", "q2"]
    assert [c.id for c in runtime.calls] == ["q0"]


async def test_close_answers_a_command_that_outlasts_the_grace() -> None:
    runtime = Blocked()
    rig = Rig(runtime)
    await rig.feed([cmd("mode", {"id": "stuck", "mode": "auto"})])
    await runtime.called.wait()
    await rig.server.close(0.05)
    (reply,) = rig.answers.replies
    assert reply.body["reason"] == "heatd stopped before this command finished"
    assert reply.body["accepted"] is False
    runtime.release.set()  # the handler itself was never cancelled: let it end
    await asyncio.sleep(0)
