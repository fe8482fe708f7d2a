"""Remote commands: strict payload models, site-aware bounds, and the handler contract.

Everything an MQTT client can send is validated here before the runtime sees it: a
payload that is not exactly a known command, within the site's bounds, is refused with a
reason that names the field. Whether a *valid* command is then carried out (an override
beyond the cooling envelope, say) is the runtime's decision, reached through the async
handler; cooling priority is never the business of this layer.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from heatd.control import roles as R
from heatd.control.commands import OVERRIDABLE
from heatd.control.state import BOOLEAN_LEASES, Mode
from heatd.drivers.codec import DataType
from heatd.mqtt.guard import shape_problem

if TYPE_CHECKING:
    from heatd.config import SiteConfig

BOOL_OUTPUTS: frozenset[str] = BOOLEAN_LEASES
"""Overridable roles that take true/false; the others take a fraction 0..1."""

Ttl = Annotated[float, Field(gt=0)]

ID_MAX_CHARS = 128
ID_MAX_INT = 2**64 - 1
"""The largest integer id in magnitude: a 64-bit counter's or an epoch-nanosecond
timestamp's, as Go, Java and C clients number commands. heatd reads and writes JSON
integers exactly, so the answer carries the id as it came, even above 2^53 where a parser
that reads numbers as doubles (JavaScript's) would round it."""
CommandId = str | int
"""A command's ``id`` as it came, text or integer (as JSON-RPC clients send it), echoed
in the answer so the sender can match it."""


@dataclass(frozen=True, slots=True)
class WritablePoint:
    """What an override of one point may ask for."""

    role: str
    boolean: bool
    low: float | None
    high: float | None


@dataclass(frozen=True, slots=True)
class CommandLimits:
    """The site facts a command is checked against: lease length, overridable targets."""

    max_ttl: float
    roles: frozenset[str]
    """Overridable roles the site binds."""
    points: dict[str, WritablePoint]
    """'device.point' -> bounds, for writable points bound to an overridable role."""
    engineering: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Outputs in engineering units the site binds and configures -> their [min, max]."""

    @classmethod
    def from_site(cls, site: SiteConfig, max_ttl: float) -> CommandLimits:
        points: dict[str, WritablePoint] = {}
        bound = frozenset(role for role in OVERRIDABLE if site.role_points(role))
        for role in sorted(bound):
            for ref in site.role_points(role):
                point = site.point(ref)
                if point.writable:
                    boolean = point.data_type in (DataType.BOOL, DataType.BIT)
                    points[ref] = WritablePoint(role, boolean, point.write_min, point.write_max)
        engineering = {role: (s.min, s.max) for role, s in site.setpoints.items()
                       if role in R.ENGINEERING_OUTPUTS and site.role_points(role)}
        return cls(max_ttl=max_ttl, roles=bound | frozenset(engineering), points=points,
                   engineering=engineering)


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    name: ClassVar[str]

    id: CommandId | None = Field(
        default=None, description="Echoed in the reply, so a 3.1.1 client can match it."
    )
    by: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="Who asks, for the audit trail."
    )


    @field_validator("id", mode="plain")
    @classmethod
    def _id(cls, value: Any) -> CommandId | None:
        if value is None or (isinstance(value, str) and len(value) <= ID_MAX_CHARS):
            return value
        if isinstance(value, int) and not isinstance(value, bool) \
                and abs(value) <= ID_MAX_INT:
            return value
        raise ValueError(f"must be text of at most {ID_MAX_CHARS} characters or an "
                         f"integer of at most {ID_MAX_INT} in magnitude")


def _limits(info: ValidationInfo) -> CommandLimits | None:
    """The site's limits; None when a command is built in code rather than parsed from
    MQTT (``parse`` always passes them), and then only the structure is checked."""
    return info.context if isinstance(info.context, CommandLimits) else None


def _check_ttl(ttl: float | None, limits: CommandLimits | None) -> None:
    if ttl is not None and limits is not None and ttl > limits.max_ttl:
        raise ValueError(
            f"ttl {ttl:g} s exceeds the longest allowed lease of {limits.max_ttl:g} s")


class ModeCommand(_Command):
    """``{"mode": "auto|recovery_off|manual|safe", "ttl"?: s}``; with ttl, back to auto."""

    name: ClassVar[str] = "mode"
    mode: Annotated[Mode, Field(strict=False)]
    """Lax only to take the enum's value from the parsed JSON's text: in strict mode a
    Python enum field wants the member itself. Nothing else converts to a Mode."""
    ttl: Ttl | None = None

    @model_validator(mode="after")
    def _bounded(self, info: ValidationInfo) -> ModeCommand:
        _check_ttl(self.ttl, _limits(info))
        return self


class OverrideCommand(_Command):
    """Lease one output: ``{"role"|"point": ..., "value": v, "ttl": s}``; value null ends it.

    After validation ``role`` is always set (resolved from ``point`` when a point was
    named). ``value`` is in the role's terms (fraction 0..1, or true/false for
    hp.enable) when the operator named the role, and in the point's engineering unit,
    within its write_min/write_max, when ``point`` is set.
    """

    name: ClassVar[str] = "override"
    role: str | None = None
    point: str | None = None
    value: float | bool | None
    ttl: Ttl | None = None

    @model_validator(mode="after")
    def _bounded(self, info: ValidationInfo) -> OverrideCommand:
        limits = _limits(info)
        if (self.role is None) == (self.point is None):
            raise ValueError("give exactly one of role or point")
        if self.value is None:
            if self.ttl is not None:
                raise ValueError("ttl makes no sense when clearing an override (value null)")
        elif self.ttl is None:
            raise ValueError("an override needs a ttl (seconds)")
        _check_ttl(self.ttl, limits)
        if limits is None:
            return self
        if self.point is not None:
            self.role = self._check_point(limits, self.point)
        else:
            self._check_role(limits, self.role or "")
        return self

    def _check_role(self, limits: CommandLimits, role: str) -> None:
        if role not in limits.roles:
            raise ValueError(f"role {role!r} cannot be overridden here; one of "
                             f"{sorted(limits.roles)}")
        if self.value is None:
            return
        if role in limits.engineering:
            low, high = limits.engineering[role]
            if isinstance(self.value, bool) or not low <= self.value <= high:
                raise ValueError(f"{role} takes a number in [{low:g}, {high:g}], got "
                                 f"{self.value!r}")
            return
        if role in BOOL_OUTPUTS:
            if not isinstance(self.value, bool):
                raise ValueError(f"{role} takes true or false")
        elif isinstance(self.value, bool) or not 0.0 <= self.value <= 1.0:
            raise ValueError(f"{role} takes a fraction 0..1, got {self.value!r}")

    def _check_point(self, limits: CommandLimits, ref: str) -> str:
        point = limits.points.get(ref)
        if point is None:
            raise ValueError(f"point {ref!r} cannot be overridden here; one of "
                             f"{sorted(limits.points)}")
        value = self.value
        if value is None:
            return point.role
        if point.boolean != isinstance(value, bool):
            raise ValueError(f"{ref} takes {'true or false' if point.boolean else 'a number'}")
        if not point.boolean:
            if point.low is not None and value < point.low:
                raise ValueError(f"{ref} value {value!r} below write_min {point.low:g}")
            if point.high is not None and value > point.high:
                raise ValueError(f"{ref} value {value!r} above write_max {point.high:g}")
        return point.role


class RepublishCommand(_Command):
    """Re-send every retained topic now (answered by the MQTT link itself)."""

    name: ClassVar[str] = "republish"


class ReloadCommand(_Command):
    """Re-read the site file (the runtime decides whether the new file is taken)."""

    name: ClassVar[str] = "reload"


class ResetLockoutCommand(_Command):
    """Reset a latched heat-pump lockout: a reset pulse on hp.reset (when bound), and
    heatd's own latch cleared once the heat pump reports no fault."""

    name: ClassVar[str] = "reset_lockout"


Command = (ModeCommand | OverrideCommand | RepublishCommand | ReloadCommand
           | ResetLockoutCommand)
MODELS: dict[str, type[Command]] = {
    m.name: m for m in (ModeCommand, OverrideCommand, RepublishCommand, ReloadCommand,
                        ResetLockoutCommand)
}


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The runtime's answer to a valid command; ``reason`` says why in words."""

    accepted: bool
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


CommandHandler = Callable[[Command], Awaitable[CommandResult]]


class CommandRefused(ValueError):
    """A payload that is not a valid command; ``id`` is echoed when it could be read.
    ``unread``: refused for its size or nesting, before any parser saw it."""

    def __init__(self, reason: str, id: CommandId | float | None, *, unread: bool = False
                 ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.id = id
        self.unread = unread


def parse(name: str, payload: bytes, limits: CommandLimits) -> Command:
    """Validate one command payload (JSON object); raises CommandRefused with the reason.

    Size and nesting are checked before anything parses the payload, so no input can
    exhaust the stack or the memory of the parsers below. The payload is parsed once:
    ``_read_object`` refuses what is not JSON, not one object, or names a key twice, then the
    model validates the object (strict, as in ``model_config``)."""
    problem = shape_problem(payload)
    if problem is not None:
        raise CommandRefused(problem, None, unread=True)
    model = MODELS.get(name)
    try:
        data = _read_object(payload or b"{}")
    except CommandRefused as exc:
        if model is None:  # the name says it first
            raise CommandRefused(_unknown(name), exc.id) from None
        raise
    if model is None:
        raise CommandRefused(_unknown(name), _id_in(data))
    try:
        return model.model_validate(data, context=limits)
    except ValidationError as exc:
        raise CommandRefused(explain(exc), _id_in(data)) from None


def _unknown(name: str) -> str:
    return f"unknown command {name!r}; known: {', '.join(MODELS)}"


def _read_object(payload: bytes) -> dict[str, Any]:
    """A command's JSON object; CommandRefused for anything else, including a key given
    twice at any depth (the models' own JSON parser keeps the last value, while a reader
    of the audit record or a bridge rule may take the first). Where ``json.loads`` alone
    would judge otherwise than that parser, it is made to agree: the text must be UTF-8
    (``json.loads`` takes UTF-16 too), a lone surrogate escape is no text, and an integer
    beyond a float's range reads as infinity, which no field takes."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandRefused(f"Invalid JSON: not UTF-8 ({exc.reason} at byte {exc.start})",
                             None) from None
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(items)
        if len(found) < len(items):  # rare: name the keys
            counts = Counter(key for key, _ in items)
            repeated.extend(key for key in found if counts[key] > 1 and key not in repeated)
        return found

    try:
        data = json.loads(text, object_pairs_hook=pairs, parse_int=_int)
    except ValueError as exc:  # JSONDecodeError
        raise CommandRefused(f"Invalid JSON: {exc}", None) from None
    if _SURROGATE_ESCAPE.search(text) and not _unicode(data):
        raise CommandRefused("Invalid JSON: lone surrogate in a string", None)
    if not isinstance(data, dict):
        raise CommandRefused("Input should be an object", None)
    if repeated:
        keys = ", ".join(repr(key) for key in repeated)
        raise CommandRefused(f"duplicate key{'s' if len(repeated) > 1 else ''} {keys}: a "
                             "command names each field once",
                             None if "id" in repeated else _id_in(data))
    return data


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""Where a lone surrogate can come from in text that decoded as UTF-8 (a pair is fine)."""


def _int(text: str) -> int | float:
    """An integer as JSON numbers are, a float beyond a float's range as infinity."""
    return int(text) if len(text) < 300 else float(text)


def _unicode(data: Any) -> bool:
    """Whether every string in ``data`` is valid Unicode (no lone surrogate from a
    ``\\ud800`` escape), as a command's text must be to be logged and echoed."""
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(data, dict):
        return all(_unicode(key) and _unicode(value) for key, value in data.items())
    if isinstance(data, list):
        return all(_unicode(item) for item in data)
    return True


def explain(exc: ValidationError) -> str:
    """Pydantic's errors as one line: ``field: message; ...``."""
    errors = exc.errors(include_url=False)
    # ``value: float | bool | None`` reports one error per member; NaN says it all.
    non_finite = {err["loc"][0] for err in errors
                  if err["type"] == "finite_number" and err["loc"]}
    parts = [f"{field}: must be a finite number (not NaN or Infinity)"
             for field in sorted(map(str, non_finite))]
    for err in errors:
        if err["loc"] and err["loc"][0] in non_finite:
            continue
        where = ".".join(str(x) for x in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] in ("enum", "literal_error"):
            allowed = str(err["ctx"]["expected"]).replace("'", "").replace(" or ", ", ")
            msg = f"{err['input']!r} is not one of {allowed}"
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def peek_id(payload: bytes) -> CommandId | float | None:
    """The ``id`` of a payload that may not validate, so even a refusal can be matched.

    None for a payload too big or deep to parse safely (json.loads recurses), and for an
    id that is not valid Unicode (a lone surrogate): it could not be logged or echoed."""
    return None if shape_problem(payload) is not None else _id_of(payload)


def _id_of(payload: bytes) -> CommandId | float | None:
    """``peek_id`` for a payload whose shape was checked already."""
    try:
        data = json.loads(payload)
    except ValueError:  # UnicodeDecodeError included
        return None
    return _id_in(data)


def _id_in(data: Any) -> CommandId | float | None:
    """The ``id`` of parsed JSON as a refusal may echo it: text (valid Unicode, at most
    its first 128 characters), an integer a valid id could be, or a finite float, each as
    it came; None for anything else (an object, a list, a huge integer), which an answer
    must not copy."""
    id_ = data.get("id") if isinstance(data, dict) else None
    if isinstance(id_, str):
        try:
            id_.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return id_[:ID_MAX_CHARS]
    if isinstance(id_, bool):
        return None
    if isinstance(id_, int):
        return id_ if abs(id_) <= ID_MAX_INT else None
    if isinstance(id_, float):
        return id_ if math.isfinite(id_) else None
    return None
