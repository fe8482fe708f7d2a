"""The command server: admits, carries out, answers and audits remote commands.

Commands are hostile input: each is rate-limited by name, checked for size and nesting
before it is parsed, validated, and answered and audited whatever happens, including a bug
in the handler; reloads that arrive together are merged into one. The server reads
messages from any async iterator and writes through ``Answers``, so it knows nothing of
the broker and runs the same against an in-memory feed. The audit records of commands that
got past the rate limit and the shape check go to an ``AuditStore`` when one is given
(SQLite, sent after the broker's PUBACK only): their rate is bounded by the gate, so a
flood stays in the bounded in-memory queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from heatd.drivers.cancel import cancel_all
from heatd.mqtt.command_payloads import (
    MODELS,
    CommandRefused,
    CommandResult,
    ReloadCommand,
    RepublishCommand,
    parse,
    peek_id,
)
from heatd.mqtt.gate import CommandGate
from heatd.mqtt.payload import dumps, epoch_ms
from heatd.mqtt.topics import publishable

if TYPE_CHECKING:
    from paho.mqtt.properties import Properties

    from heatd.mqtt.command_payloads import Command, CommandHandler, CommandId, CommandLimits
    from heatd.mqtt.settings import MqttSettings
    from heatd.mqtt.topics import Topics
    from heatd.mqtt.wire import Incoming, LinkStats

log = structlog.get_logger(__name__)

AUDIT_PAYLOAD_CHARS = 256
COMMAND_BACKLOG = 64
STOPPING = "heatd is stopping; send it again once it is back online"

AuditStore = Callable[[bytes], bool]
"""Keeps an audit record until the broker acknowledged it; False when it could not (the
record then takes the in-memory queue). Never raises."""


class Answers(Protocol):
    """Where the server's output goes. Neither call waits: the link queues both."""

    def reply(self, topic: str, payload: bytes, correlation: bytes | None) -> None:
        """The answer to one command; raises ValueError for a topic no broker takes."""

    def audit(self, record: bytes) -> None:
        """An audit record that no ``AuditStore`` kept."""

    def full(self) -> bool:
        """Whether the answers queue is full: an answer queued now would only push out an
        older one."""


@dataclass(slots=True)
class _Request:
    """One command message on its way through the server."""

    name: str
    payload: bytes
    reply_to: str
    correlation: bytes | None = None
    id: CommandId | float | None = None
    command: Command | None = None
    durable: bool = False
    """Its audit goes to the ``AuditStore``: it passed the rate limit and the shape check
    (or, retained, the bucket shared by unknown names)."""


class CommandServer:
    """Takes command messages, carries out the valid ones one at a time, answers all."""

    def __init__(
        self,
        topics: Topics,
        settings: MqttSettings,
        handler: CommandHandler,
        answers: Answers,
        stats: LinkStats,
        *,
        limits: CommandLimits,
        reply_prefix: str,
        republish: Callable[[], int],
        handler_timeout: float,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        audit_store: AuditStore | None = None,
    ) -> None:
        """``republish`` answers the republish command (it re-sends the retained topics
        and says how many); ``reply_prefix`` bounds v5 response topics."""
        self.topics = topics
        self.settings = settings
        self.stats = stats
        self._handler = handler
        self._answers = answers
        self._republish = republish
        self._handler_timeout = handler_timeout
        self._clock = clock
        self._monotonic = monotonic
        self._audit_store = audit_store
        self._limits = limits
        self._reply_prefix = reply_prefix
        self._gate = CommandGate(MODELS, settings.command_rate, settings.command_burst,
                                 monotonic())
        self._commands: asyncio.Queue[_Request] = asyncio.Queue(COMMAND_BACKLOG)
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        """Set by close(): commands are refused from then on, queued ones not started."""
        self._reload_followers: list[_Request] | None = None
        """Reload requests waiting on the reload queued or running; None when none is."""
        self._last_reload: tuple[float, CommandResult] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._late: set[asyncio.Task[CommandResult]] = set()

    def configure(self, limits: CommandLimits, reply_prefix: str) -> None:
        """Take the bounds of a reloaded site file."""
        self._limits = limits
        self._reply_prefix = reply_prefix

    @property
    def waiting(self) -> int:
        """Valid commands queued, not started yet."""
        return self._commands.qsize()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start carrying out the commands that are admitted."""
        self._worker = asyncio.create_task(self._serve(), name="mqtt-commands")

    async def close(self, grace: float) -> None:
        """Refuse new commands; give the one being carried out up to ``grace`` seconds to
        finish (its answer then goes out as usual); answer the queued ones as stopping."""
        self._closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        if self._worker is not None:
            await cancel_all([self._worker])
        while not self._commands.empty():
            self._answer(self._commands.get_nowait(), CommandResult(False, STOPPING))

    # ------------------------------------------------------------------ admission

    async def consume(self, messages: AsyncIterable[Incoming]) -> None:
        """Admit each command message of ``messages`` in order, until they end; messages
        on other topics are skipped."""
        async for message in messages:
            name = self.topics.command_name(message.topic)
            if name is not None:
                self.take(name, message.payload, message.properties, retain=message.retain)

    def take(self, name: str, payload: bytes, properties: Properties | None = None, *,
             retain: bool = False) -> None:
        """Admit one message from ``<base>/cmd/<name>``: ignore it (retained), refuse it
        (rate, stopping, shape, validation, reply topic, backlog) or queue it.

        Synchronous and never raises: whatever goes wrong, the command is answered and
        audited, and the server goes on with the next one."""
        request = _Request(name, payload, self.topics.response(name))
        try:
            self._admit(request, properties, retain)
        except Exception as exc:  # a bug must not cost the session its receive loop
            self._internal_error(request, exc)

    def _admit(self, request: _Request, props: Properties | None, retain: bool) -> None:
        if retain:  # a stale order must not act when it is replayed
            request.id = peek_id(request.payload)
            request.durable = self._gate.admit(CommandGate.OTHER, self._monotonic())
            self._conclude(request, CommandResult(False, "retained command ignored"),
                           reply=False)
            return
        misdirected = self._route_reply(request, props)
        if not self._gate.admit(request.name, self._monotonic()):
            self.stats.rate_limited += 1
            if self._answers.full():
                self._shed()
                return
            request.id = peek_id(request.payload)
            self._conclude(request, CommandResult(
                False, f"rate limited: at most {self._gate.rate:g} commands a second "
                       f"on cmd/{request.name[:64]}; send it again later"), quiet=True)
            return
        if self._closing:
            request.id = peek_id(request.payload)
            self._conclude(request, CommandResult(False, STOPPING))
            return
        try:
            request.command = parse(request.name, request.payload, self._limits)
        except CommandRefused as exc:
            request.id = exc.id
            request.durable = not exc.unread  # refused on its content, not its shape
            self._conclude(request, CommandResult(False, exc.reason))
            return
        request.id = request.command.id
        request.durable = True
        if misdirected is not None:
            self._conclude(request, CommandResult(False, misdirected))
        elif not (isinstance(request.command, ReloadCommand) and self._merge_reload(request)):
            self._enqueue(request)

    def _enqueue(self, request: _Request) -> None:
        try:
            self._commands.put_nowait(request)
        except asyncio.QueueFull:
            if isinstance(request.command, ReloadCommand):
                self._reload_followers = None  # it leads no reload after all
            self.stats.busy += 1
            self._conclude(request, CommandResult(False, "busy: too many commands queued"))

    def _route_reply(self, request: _Request, props: Properties | None) -> str | None:
        """Send the reply to the v5 response topic when it lies below the reply prefix;
        otherwise keep the 3.1.1 topic and say why the command is refused (an arbitrary
        topic would let any commander make heatd publish where it chooses)."""
        if props is None:
            return None
        request.correlation = getattr(props, "CorrelationData", None)
        topic = getattr(props, "ResponseTopic", None)
        if not topic:
            return None
        if publishable(topic) and topic.startswith(f"{self._reply_prefix}/"):
            request.reply_to = topic
            return None
        return (f"response topic {topic[:128]!r} refused: replies go only below "
                f"{self._reply_prefix}/ (mqtt.response_prefix)")

    # ------------------------------------------------------------------ reloads

    def _merge_reload(self, request: _Request) -> bool:
        """True when this reload is answered by another: the one queued or running, or
        the one that succeeded less than ``reload_min_interval`` ago. A flood of reloads
        thus costs at most one reload per interval; an operator who has just fixed a
        refused file does not have to wait out the interval."""
        if self._reload_followers is not None:
            self._reload_followers.append(request)
            return True
        if self._last_reload is not None:
            at, result = self._last_reload
            ago = self._monotonic() - at
            if result.accepted and ago < self.settings.reload_min_interval:
                self.stats.merged += 1
                self._conclude(request, CommandResult(
                    result.accepted, f"merged with the reload {ago:.1f} s ago: {result.reason}",
                    {**result.detail, "merged": True}))
                return True
        self._reload_followers = []
        return False

    def _settle_reload(self, leader: _Request, result: CommandResult) -> None:
        followers, self._reload_followers = self._reload_followers or [], None
        self._last_reload = (self._monotonic(), result)
        leader_id = "(no id)" if leader.id is None else leader.id
        merged = CommandResult(result.accepted,
                               f"merged into reload {leader_id}: {result.reason}",
                               {**result.detail, "merged": True})
        for request in followers:
            self.stats.merged += 1
            self._answer(request, merged)

    # ------------------------------------------------------------------ execution

    async def _serve(self) -> None:
        """Carry out commands one at a time, in arrival order. A task of its own, not part
        of a connection, so a broker drop never cancels a handler half-way (a reload).
        Supervised: an exception in one command is answered and logged, never fatal."""
        while True:
            request = await self._commands.get()
            if self._closing:  # queued before close(): not started now
                self._answer(request, CommandResult(False, STOPPING))
                continue
            self._idle.clear()
            try:
                await self._carry_out(request)
            finally:
                self._idle.set()

    async def _carry_out(self, request: _Request) -> None:
        result = CommandResult(False, "heatd stopped before this command finished")
        try:
            assert request.command is not None  # only parsed commands are queued
            result = await self._execute(request.command)
        except asyncio.CancelledError:  # close() gave up waiting: answer, then go
            self._answer(request, result)
            raise
        except Exception as exc:
            result = self._bug(request, exc)
        self._answer(request, result)

    async def _execute(self, command: Command) -> CommandResult:
        if isinstance(command, RepublishCommand):
            return CommandResult(True, "retained topics re-sent",
                                 {"topics": self._republish()})
        task = asyncio.ensure_future(self._handler(command))
        try:
            result = await asyncio.wait_for(asyncio.shield(task), self._handler_timeout)
        except TimeoutError:
            # Never cancel the runtime half-way; it finishes (and logs) on its own.
            self._late.add(task)
            task.add_done_callback(self._late_done)
            return CommandResult(False, f"no answer within {self._handler_timeout:g} s; "
                                 "it may still take effect (see events)")
        except Exception as exc:  # the runtime's bug must not take the link down
            log.exception("command handler failed", command=command.name)
            self.stats.internal_errors += 1
            return CommandResult(False, f"internal error: {type(exc).__name__}: {exc}"[:256])
        if not isinstance(result, CommandResult):
            self.stats.internal_errors += 1
            return CommandResult(False, "internal error: handler returned no CommandResult")
        return result

    def _late_done(self, task: asyncio.Task[CommandResult]) -> None:
        self._late.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        result = None if exc is not None else task.result()
        log.warning("late command result", error=str(exc) if exc else None,
                    accepted=getattr(result, "accepted", None),
                    reason=getattr(result, "reason", None))

    # ------------------------------------------------------------------ answers

    def _answer(self, request: _Request, result: CommandResult) -> None:
        """Conclude a queued command (falling back to an internal error), then the
        reloads merged into it."""
        try:
            self._conclude(request, result)
        except Exception as exc:
            result = self._internal_error(request, exc)
        if isinstance(request.command, ReloadCommand):
            self._settle_reload(request, result)

    def _shed(self) -> None:
        """A rate-limited command while the answers queue is full: its reply and audit
        record would only push out older answers, so they are counted as dropped without
        being built. A flood then costs heatd little more than reading it, and its own
        session keeps up with the broker (a flood of 25 000 a second starved it before)."""
        self.stats.commands += 1
        self.stats.refused += 1
        self.stats.drop("reply")
        self.stats.drop("audit")

    def _bug(self, request: _Request, exc: Exception) -> CommandResult:
        """Log a bug in heatd with its traceback; the answer names only its type."""
        self.stats.internal_errors += 1
        log.error("command failed inside heatd", command=request.name, id=request.id,
                  exc_info=exc)
        return CommandResult(False, f"internal error: {type(exc).__name__}")

    def _internal_error(self, request: _Request, exc: Exception) -> CommandResult:
        """Answer and audit a command whose handling hit a bug in heatd."""
        result = self._bug(request, exc)
        try:
            self._conclude(request, result)
        except Exception:
            log.exception("command could not be answered", command=request.name)
        return result

    def _conclude(self, request: _Request, result: CommandResult, *, reply: bool = True,
                  quiet: bool = False) -> None:
        """Count, reply (unless ignored) and audit: every command message ends here once.
        Whatever can fail (a detail that is not JSON) fails before the first publish, so
        a fallback answer is never a second one. ``quiet`` logs at debug level only: a
        flood is counted in ``stats``, not written to the journal line by line."""
        fields: dict[str, Any] = {"command": request.name, "id": request.id,
                                  "accepted": result.accepted, "reason": result.reason}
        if request.command is not None:
            fields["args"] = request.command.model_dump(mode="json", exclude={"id"})
        else:
            fields["payload"] = request.payload.decode("utf-8", "replace")[
                :AUDIT_PAYLOAD_CHARS]
        now = self._clock()
        audit = dumps({"ts": epoch_ms(now), "kind": "command", **fields})
        answer = dumps({"ts": epoch_ms(now), "id": request.id, "command": request.name,
                        "accepted": result.accepted, "reason": result.reason,
                        "detail": result.detail})
        self.stats.commands += 1
        if not result.accepted:
            self.stats.refused += 1
        if reply:
            self._answers.reply(request.reply_to, answer, request.correlation)
        self._audit(request, audit)
        (log.debug if quiet else log.info)("mqtt command", **fields)

    def _audit(self, request: _Request, record: bytes) -> None:
        """Durable when the command earned it and a store takes it; else the bounded
        answers queue, as for a flood (also when the store fails: disk full, say)."""
        if request.durable and self._audit_store is not None:
            try:
                if self._audit_store(record):
                    return
            except Exception:
                log.exception("audit store failed", command=request.name)
        self._answers.audit(record)
