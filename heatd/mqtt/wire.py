"""What the parts of the MQTT link hand each other: a received message, the kind of a sent
one, and the counters they keep together.

A module of its own so the command server can be fed and checked without importing the
connection (aiomqtt) that carries it in production.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from paho.mqtt.properties import Properties

Kind = Literal["reply", "audit", "event", "other"]
"""What a non-retained message is, for the drop counters. Replies and audit records of
commands wait in a queue of their own, so a flood of commands cannot push the site's own
events (alarms) out of theirs."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message the broker delivered, as the command server sees it."""

    topic: str
    payload: bytes
    properties: Properties | None = None
    """MQTT v5 properties (response topic, correlation data); None from a 3.1.1 client."""
    retain: bool = False


@dataclass
class LinkStats:
    """The link's counters, published retained on ``<base>/stats``."""

    connects: int = 0
    failures: int = 0
    """Connection attempts that failed plus sessions that broke."""
    sent: int = 0
    dropped: int = 0
    """Non-retained messages lost: queue full, or unsendable. Sum of ``dropped_by_kind``."""
    dropped_by_kind: dict[str, int] = field(
        default_factory=lambda: {"reply": 0, "audit": 0, "event": 0, "other": 0})
    too_large: int = 0
    """Messages larger than the broker takes (its Maximum Packet Size, or
    ``mqtt.max_packet_size``): not sent, and counted in ``dropped`` unless retained."""
    broker_refused: int = 0
    """Publishes the broker acknowledged with an error (MQTT v5), e.g. denied by its ACL."""
    commands: int = 0
    """Command messages concluded (each answered and audited, or ignored if retained)."""
    refused: int = 0
    """Of those, answered ``accepted: false`` (the three below and ignored ones included)."""
    busy: int = 0
    """Refused because ``COMMAND_BACKLOG`` commands were already waiting."""
    rate_limited: int = 0
    """Refused by the per-name token bucket (``command_rate``, ``command_burst``)."""
    merged: int = 0
    """Reload requests answered with the result of another reload."""
    internal_errors: int = 0
    inbox_dropped: int = 0
    """Messages discarded unread: ``COMMAND_INBOX`` were already waiting (a flood)."""
    last_error: str | None = None
    """Of the publishing session (``connects``, ``failures`` count its sessions)."""
    command_connects: int = 0
    command_failures: int = 0
    command_last_error: str | None = None
    """The command session's own counts: it is a connection of its own."""

    def session(self, error: str | None) -> None:
        """A connect (``error`` None) or a failure of the publishing session."""
        if error is None:
            self.connects += 1
        else:
            self.failures, self.last_error = self.failures + 1, error

    def command_session(self, error: str | None) -> None:
        """A connect (``error`` None) or a failure of the command session."""
        if error is None:
            self.command_connects += 1
        else:
            self.command_failures, self.command_last_error = self.command_failures + 1, error

    def drop(self, kind: Kind) -> None:
        self.dropped += 1
        self.dropped_by_kind[kind] = self.dropped_by_kind.get(kind, 0) + 1

    def summary(self) -> dict[str, Any]:
        """A copy, as published on ``<base>/stats``."""
        return asdict(self)
