"""What the site YAML says about an OPC UA server and its points, as the driver needs it.

The config loader in ``heatd`` builds these; they check themselves on construction so a
bad node id or an impossible security combination fails at load time, not mid-run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from heatd.drivers.codec import DataType
from heatd.drivers.opcua.namespaces import NodeRef
from heatd.drivers.opcua.nodeid import check_node_id

SecurityPolicy = Literal["None", "Basic256Sha256"]
SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]
ReadMode = Literal["subscription", "polling"]
Trust = Literal["pinned", "list", "any"]
"""Which server certificates a secured channel accepts: see ``heatd.drivers.opcua.trust``."""

_CONNECT_STEPS = 6
_DISCOVERY_STEPS = 4


@dataclass(frozen=True, slots=True)
class OpcUaPoint:
    """One variable node. ``value = raw * scale + offset``.

    ``data_type`` fixes the variant type used for writing; when it is None the driver asks
    the server for the variable's DataType once and remembers it.
    """

    name: str
    node_id: str
    data_type: DataType | None = None
    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        try:
            check_node_id(self.node_id)
        except ValueError as exc:
            raise ValueError(f"point {self.name!r}: invalid node id {self.node_id!r}") from exc
        if self.data_type is DataType.BIT:
            raise ValueError(f"point {self.name!r}: bit points exist only on Modbus")
        if self.scale == 0 or not math.isfinite(self.scale) or not math.isfinite(self.offset):
            raise ValueError(f"point {self.name!r}: scale must be finite and non-zero")

    @property
    def ref(self) -> NodeRef:
        """The node id split into namespace and identifier, to resolve per connection."""
        return NodeRef.parse(self.node_id)


@dataclass(frozen=True, slots=True)
class OpcUaSettings:
    """Connection settings for one server. Times are in seconds.

    ``mode`` tells the runtime whether to poll this device with ``read`` or to call
    ``subscribe``. ``timeout`` bounds every request; a connection attempt may take up to
    ``connect_timeout`` (TCP, hello, channel, endpoints, session, activation).
    ``application_uri`` must equal the URI in the client certificate's SubjectAltName:
    servers reject a session whose ApplicationUri differs from its certificate's.
    ``namespaces`` maps a namespace index to the URI the site expects there; ``trust``
    says which server certificates a secured channel accepts (``heatd.drivers.opcua.trust``).
    """

    endpoint: str
    security_policy: SecurityPolicy = "None"
    security_mode: SecurityMode = "None"
    username: str | None = None
    password: str | None = None
    certificate: str | None = None
    private_key: str | None = None
    server_certificate: str | None = None
    application_uri: str = "urn:heatd:client"
    trust: Trust = "pinned"
    trust_list: str | None = None
    namespaces: Mapping[int, str] = field(default_factory=dict)
    timeout: float = 2.0
    mode: ReadMode = "subscription"
    publishing_interval: float = 1.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0

    def __post_init__(self) -> None:
        if not self.endpoint.startswith("opc.tcp://"):
            raise ValueError(f"endpoint {self.endpoint!r} must start with opc.tcp://")
        if (self.security_policy == "None") != (self.security_mode == "None"):
            raise ValueError("security_policy and security_mode must both be None or both be set")
        if self.security_policy != "None" and not (self.certificate and self.private_key):
            raise ValueError(f"{self.security_policy} needs a client certificate and private key")
        if self.security_policy != "None" and self.trust == "pinned" and \
                not self.server_certificate:
            raise ValueError("trust: pinned needs server_certificate")
        if self.security_policy != "None" and self.trust == "list" and not self.trust_list:
            raise ValueError("trust: list needs trust_list (a folder of certificates)")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        if not (self.timeout > 0 and self.publishing_interval > 0):
            raise ValueError("timeout and publishing_interval must be positive")
        if not 0 < self.reconnect_min <= self.reconnect_max:
            raise ValueError("need 0 < reconnect_min <= reconnect_max")

    @property
    def secured(self) -> bool:
        return self.security_policy != "None"

    @property
    def connect_timeout(self) -> float:
        """A secured connect first asks for the endpoints on a channel of its own."""
        return self.timeout * (_CONNECT_STEPS + _DISCOVERY_STEPS * self.secured)
