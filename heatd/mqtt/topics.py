"""Topic names of the MQTT contract (DESIGN.md), built in one place so they cannot drift."""

from __future__ import annotations

import re
from dataclasses import dataclass

ID = re.compile(r"^[a-z0-9_-]+$")

RESERVED_DEVICES: frozenset[str] = frozenset(
    {"cmd", "control", "events", "info", "meter", "reply", "stats", "status"}
)
"""Names a device may not have: ``<base>/cmd/state`` would arrive as a command, and
``<base>/control/state`` is the controller's own topic. The whole-site checks refuse them
in a site file with an ``mqtt:`` section; ``check_device`` guards the topics built."""

RESERVED_POINTS: frozenset[str] = frozenset({"ts", "quality"})
"""Names a point may not have: ``<device>/state`` carries the points beside these keys of
its own (``{"ts": ..., "<point>": value, "quality": {...}}``), which a point of that name
would overwrite. Refused like the reserved device names."""


def check_id(value: str) -> str:
    """A topic level we build from a name must be ``[a-z0-9_-]+``: no wildcards, no '/'."""
    if not ID.match(value):
        raise ValueError(f"{value!r} is not a valid id: use [a-z0-9_-]")
    return value


def publishable(topic: str) -> bool:
    """Whether a broker would take ``topic`` for a PUBLISH: not empty, no wildcard or NUL,
    at most 65535 bytes of UTF-8."""
    if not topic or any(c in topic for c in "+#\0"):
        return False
    try:
        return len(topic.encode("utf-8")) <= 65535
    except UnicodeEncodeError:
        return False


def check_device(name: str) -> str:
    """A device name that can be a topic level without colliding with the site's own."""
    if check_id(name) in RESERVED_DEVICES:
        raise ValueError(f"device name {name!r} is reserved on MQTT; rename the device")
    return name


@dataclass(frozen=True, slots=True)
class Topics:
    """``heatd/<site>/...`` topics for one base."""

    base: str

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def info(self) -> str:
        return f"{self.base}/info"

    @property
    def control_state(self) -> str:
        return f"{self.base}/control/state"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def stats(self) -> str:
        """Retained counters of the link: commands, refusals, drops (see DESIGN.md)."""
        return f"{self.base}/stats"

    @property
    def meter(self) -> str:
        """Energy records, one per metering interval (store-and-forward, not retained)."""
        return f"{self.base}/meter/energy"

    @property
    def records(self) -> str:
        """Hourly contract records, hash-chained (store-and-forward, not retained)."""
        return f"{self.base}/meter/records"

    @property
    def meter_totals(self) -> str:
        """Retained running energy totals per contract, since its first record."""
        return f"{self.base}/meter/totals"

    @property
    def commands(self) -> str:
        """Filter for every command topic (one level: replies one level below don't match)."""
        return f"{self.base}/cmd/+"

    def availability(self, device: str) -> str:
        return f"{self.base}/{check_device(device)}/availability"

    def last_error(self, device: str) -> str:
        """Retained: why the device is not answering; empty (deleted) while healthy."""
        return f"{self.base}/{check_device(device)}/last_error"

    def state(self, device: str) -> str:
        return f"{self.base}/{check_device(device)}/state"

    def command(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    def response(self, name: str) -> str:
        """Reply topic for MQTT 3.1.1 clients, which have no response-topic property."""
        return f"{self.base}/cmd/{name}/response"

    def command_name(self, topic: str) -> str | None:
        """The ``<name>`` of ``<base>/cmd/<name>``, or None for any other topic."""
        prefix = f"{self.base}/cmd/"
        if topic.startswith(prefix) and "/" not in topic[len(prefix):]:
            return topic[len(prefix):]
        return None
