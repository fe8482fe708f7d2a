"""The ``mqtt:`` section of a site file.

Strict like the rest of the site model: a misspelt key or a port given as a string stops
the daemon at start instead of leaving it silently unpublished. The password never sits
in the YAML: it is read from a file at start, which is how systemd's ``LoadCredential=``
hands secrets over (``${CREDENTIALS_DIRECTORY}/mqtt-password``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from heatd.hosts import check_host

if TYPE_CHECKING:
    import ssl

TOPIC_LEVEL = re.compile(r"^[a-z0-9_-]+$")
Seconds = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    # built when first validated, with the site (see heatd.config.Strict)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


class TlsSettings(_Strict):
    """TLS to the broker; without ``ca`` the system's trusted CAs verify the broker."""

    ca: str | None = Field(default=None, description="CA certificate file (PEM) for the broker.")
    cert: str | None = Field(default=None, description="Client certificate (PEM), with key.")
    key: str | None = Field(default=None, description="Client private key (PEM), with cert.")

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsSettings:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls: cert and key go together")
        return self

    def context(self) -> ssl.SSLContext:
        """An SSL context that verifies the broker (and presents our certificate)."""
        import ssl  # only when a site uses TLS: checking a site file needs no OpenSSL

        ctx = ssl.create_default_context(cafile=_expand(self.ca) if self.ca else None)
        if self.cert and self.key:
            ctx.load_cert_chain(_expand(self.cert), _expand(self.key))
        return ctx


class HomeAssistantSettings(_Strict):
    """Home Assistant MQTT discovery: off, one message for the site (``device``, Home
    Assistant 2024.11 and later) or one per entity (``entity``, older releases too)."""

    discovery: Literal[False, True, "device", "entity"] = Field(
        default=False, description="false, device (true means device: HA 2024.11 and later) or "
        "entity (one message per entity, for older HA releases)."
    )
    prefix: str = Field(default="homeassistant", description="Discovery prefix configured in HA.")
    override_ttl: Seconds = Field(
        default=900.0, description="Lease, in seconds, of an override set from Home Assistant."
    )

    @field_validator("prefix")
    @classmethod
    def _prefix_levels(cls, value: str) -> str:
        return _check_topic(value, "homeassistant.prefix")

    @property
    def format(self) -> Literal["device", "entity"] | None:
        """The discovery format, or None when discovery is off."""
        if self.discovery is False:
            return None
        return "entity" if self.discovery == "entity" else "device"


class MqttSettings(_Strict):
    """Broker connection, topics and publishing policy for one site."""

    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        default=None, description="Broker port; default 1883, or 8883 with tls."
    )
    username: str | None = None
    password_file: str | None = Field(
        default=None,
        description="File holding the password, read at start; environment variables are "
        "expanded, e.g. ${CREDENTIALS_DIRECTORY}/mqtt-password.",
    )
    tls: TlsSettings | None = None
    client_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = Field(
        default=None, description="MQTT client id of the publishing session; default"
        " heatd-<site>. Commands are read by a second session, <client_id>-cmd."
    )
    base_topic: str | None = Field(default=None, description="Topic prefix; default heatd/<site>.")
    qos: Literal[0, 1, 2] = 1
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30
    deadband: NonNegative = Field(
        default=0.0, description="Absolute change a numeric point must exceed to be re-published."
    )
    deadbands: dict[Annotated[str, Field(pattern=r"^[a-z0-9_-]+\.[a-z0-9_-]+$")], NonNegative] = (
        Field(default_factory=dict, description="Per point deadband: 'device.point' -> value.")
    )
    full_refresh: Seconds = Field(
        default=300.0, description="Seconds after which a device's full state is re-sent anyway."
    )
    reconnect_min: Seconds = 0.5
    reconnect_max: Seconds = 30.0
    queue_size: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=1000,
        description="Non-retained messages (events, replies) kept while the broker is away; "
        "beyond it the oldest are dropped and counted.",
    )
    max_packet_size: Annotated[int, Field(ge=128, le=268_435_460)] | None = Field(
        default=None,
        description="Largest MQTT packet, in bytes, heatd sends; a larger message is not "
        "sent, logged and counted (too_large). A broker that announces its Maximum Packet "
        "Size (MQTT v5) is honoured without this.",
    )
    override_max_ttl: Seconds = Field(
        default=3600.0,
        description="Longest lease, in seconds, a remote override or mode may ask for."
    )
    response_prefix: str | None = Field(
        default=None,
        description="MQTT v5 response topics are honoured only below this prefix; "
        "default <base>/reply. Others are refused (the broker ACL must let heatd write "
        "there).",
    )
    command_rate: Annotated[float, Field(gt=0, le=10_000)] = Field(
        default=10.0, description="Commands of one name taken per second, on average."
    )
    command_burst: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=20, description="Commands of one name taken at once before the rate applies."
    )
    reload_min_interval: NonNegative = Field(
        default=10.0,
        description="Seconds after a reload during which further reloads are answered "
        "with its result instead of reloading again.",
    )
    homeassistant: HomeAssistantSettings = Field(default_factory=lambda: HomeAssistantSettings())

    @field_validator("host")
    @classmethod
    def _host_alone(cls, value: str) -> str:
        return check_host(value, "mqtt.port")

    @field_validator("base_topic")
    @classmethod
    def _base_levels(cls, value: str | None) -> str | None:
        return None if value is None else _check_topic(value, "base_topic")

    @field_validator("response_prefix")
    @classmethod
    def _response_levels(cls, value: str | None) -> str | None:
        return None if value is None else _check_topic(value, "response_prefix")

    @model_validator(mode="after")
    def _backoff_ordered(self) -> MqttSettings:
        if self.reconnect_min > self.reconnect_max:
            raise ValueError("reconnect_min must not exceed reconnect_max")
        if self.username is None and self.password_file is not None:
            raise ValueError("password_file needs username")
        if self.homeassistant.override_ttl > self.override_max_ttl:
            raise ValueError("homeassistant.override_ttl exceeds override_max_ttl")
        if self.response_prefix is not None:
            problem = (reply_prefix_problem(self.base_topic, self.response_prefix)
                       if self.base_topic is not None
                       else _default_base_problem(self.response_prefix))
            if problem is not None:
                raise ValueError(problem)
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 8883 if self.tls is not None else 1883

    def base(self, site_id: str) -> str:
        return self.base_topic or f"heatd/{site_id}"

    def replies(self, site_id: str) -> str:
        """The prefix v5 response topics must lie below (checked against the base by the
        validator above)."""
        return self.response_prefix or f"{self.base(site_id)}/reply"

    def identifier(self, site_id: str) -> str:
        """The client id of the session that publishes the site (and holds its will)."""
        return self.client_id or f"heatd-{site_id}"

    def command_identifier(self, site_id: str) -> str:
        """The client id of the session that reads the commands."""
        return f"{self.identifier(site_id)}-cmd"

    def deadband_for(self, device: str, point: str) -> float:
        return self.deadbands.get(f"{device}.{point}", self.deadband)

    def read_password(self) -> str | None:
        """The password from ``password_file`` (one trailing newline stripped), or None.

        Raises ValueError naming the file when it cannot be read, so a missing credential
        stops the start with a clear message rather than as a refused CONNECT later.
        """
        if self.password_file is None:
            return None
        path = _expand(self.password_file)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"mqtt.password_file {path}: {exc.strerror or exc}") from exc
        return text.removesuffix("\n").removesuffix("\r")

    def files(self) -> list[str]:
        """The password and TLS files heatd reads at start, as it will open them (a path
        whose variable is not set, as written)."""
        named = [self.password_file]
        if self.tls is not None:
            named += [self.tls.ca, self.tls.cert, self.tls.key]
        paths = []
        for path in filter(None, named):
            try:
                paths.append(_expand(path))
            except ValueError:
                paths.append(path)
        return paths


def reply_prefix_problem(base: str, prefix: str) -> str | None:
    """Why ``prefix`` cannot hold replies for the site at ``base``, or None.

    A reply published among the site's own topics could pass for its state, or arrive
    back as a command; so the prefix lies outside the site's tree, or below
    ``<base>/reply``, and never above the base (that would contain the whole tree)."""
    inside = f"{prefix}/".startswith(f"{base}/")
    replies = f"{base}/reply"
    if f"{base}/".startswith(f"{prefix}/") or (
            inside and not f"{prefix}/".startswith(f"{replies}/")):
        return (f"mqtt.response_prefix {prefix!r} overlaps the site's topics below {base}/; "
                f"use {replies} or a prefix outside {base}/")
    return None


def _default_base_problem(prefix: str) -> str | None:
    """``reply_prefix_problem`` for the default base ``heatd/<site>``, before the site id
    is known: below ``heatd/`` only ``heatd/<any site>/reply...`` is safe."""
    levels = prefix.split("/")
    if levels[0] == "heatd" and (len(levels) < 3 or levels[2] != "reply"):
        return (f"mqtt.response_prefix {prefix!r} may overlap the site's topics below "
                "heatd/<site>/; use heatd/<site>/reply or a prefix outside heatd/")
    return None


def _expand(path: str) -> str:
    """Expand ``${VAR}``; an unset variable is an error, not a path with a literal '$'."""
    expanded = os.path.expandvars(os.path.expanduser(path))
    if "$" in expanded:
        raise ValueError(f"{path}: environment variable not set")
    return expanded


def _check_topic(value: str, field: str) -> str:
    levels = value.split("/")
    if not all(TOPIC_LEVEL.match(level) for level in levels):
        raise ValueError(f"{field} {value!r}: levels must match [a-z0-9_-]+, separated by '/'")
    return value
