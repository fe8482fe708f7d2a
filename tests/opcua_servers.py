"""Real OPC UA peers for the tests: an asyncua server on a free port with a small loop and
heat-pump address space, restartable on the same port with the same node ids, optionally
Basic256Sha256-only with self-signed certificates; and a TCP link that can go silent."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from asyncua import Server, ua
from asyncua.common.node import Node
from asyncua.common.utils import ServiceError
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from heatd.hil.siteports import free_port

NAMESPACE = "urn:heatd:test"
NS = 2
"""asyncua puts the first registered namespace at index 2."""

VARIABLES: dict[str, tuple[object, ua.VariantType]] = {
    "Loop.SupplyTemp": (35.5, ua.VariantType.Double),
    "Loop.Flow": (12.25, ua.VariantType.Float),
    "Loop.Valve": (0.0, ua.VariantType.Double),
    "HP.Running": (True, ua.VariantType.Boolean),
    "HP.TripCode": (7, ua.VariantType.UInt16),
    "HP.Capacity": (40, ua.VariantType.Int16),
    "Rack.Energy": (123456789, ua.VariantType.Int64),
}
READ_ONLY = "HP.Status"




def node_id(name: str) -> str:
    return f"ns={NS};s={name}"


@dataclass(frozen=True)
class CertPair:
    certificate: Path
    private_key: Path
    uri: str


def make_cert(directory: Path, name: str, uri: str, *, server: bool) -> CertPair:
    """A self-signed application certificate (PEM) whose SubjectAltName carries ``uri``."""
    key = cert_gen.generate_private_key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        name,
        {},
        [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")],
        [usage],
    )
    pair = CertPair(directory / f"{name}.pem", directory / f"{name}.key.pem", uri)
    pair.certificate.write_bytes(cert.public_bytes(Encoding.PEM))
    pair.private_key.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return pair


@dataclass
class OpcUaTestServer:
    server: Server
    port: int
    nodes: dict[str, Node]

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}"

    async def set(self, name: str, value: object) -> None:
        """Write a Good value with the variable's own variant type."""
        await self.nodes[name].write_value(ua.Variant(value, VARIABLES[name][1]))

    async def set_status(self, name: str, status: int, value: object = None) -> None:
        """Give the variable a non-Good status, optionally still carrying a value."""
        variant = ua.Variant(value, VARIABLES[name][1]) if value is not None else ua.Variant()
        await self.nodes[name].write_value(ua.DataValue(variant, StatusCode=ua.StatusCode(status)))

    async def set_stamped(self, name: str, value: object, source: datetime) -> None:
        await self.nodes[name].write_value(
            ua.DataValue(ua.Variant(value, VARIABLES[name][1]), SourceTimestamp=source)
        )

    async def reset(self) -> None:
        """Every variable back to its initial Good value."""
        for name, (value, _) in VARIABLES.items():
            await self.set(name, value)

    async def read(self, name: str) -> object:
        return await self.nodes[name].read_value()

    async def stop(self) -> None:
        # Stop accepting first. asyncua's stop closes the open connections, awaits its own
        # clean-up and only then closes the listening socket: a client that reconnects in
        # between (the drivers retry within 0.1 s here) keeps a connection that stop()
        # then waits on for ever. On a loaded machine that window is wide enough to hit.
        bserver = self.server.bserver
        listener = bserver._server if bserver is not None else None
        if listener is not None:
            listener.close()
        await self.server.stop()


async def start_server(
    port: int | None = None,
    *,
    cert: CertPair | None = None,
    trusted_client: CertPair | None = None,
    users: dict[str, str] | None = None,
) -> OpcUaTestServer:
    """Start a server; with ``cert`` it offers only Basic256Sha256 SignAndEncrypt, with
    ``trusted_client`` it refuses every other client certificate, and with ``users`` it
    wants one of these user names and passwords."""
    port = port or free_port()
    server = Server(user_manager=_Passwords(users) if users is not None else None)
    await server.init()
    server.disable_clock()  # its 1 s update loop would delay stop() by up to a second
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}")
    if cert is not None:
        await server.set_application_uri(cert.uri)
        await server.load_certificate(str(cert.certificate))
        await server.load_private_key(str(cert.private_key))
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    if users is not None:
        server.set_identity_tokens([ua.UserNameIdentityToken])
    if trusted_client is not None:
        server.set_certificate_validator(_only(trusted_client))
    idx = await server.register_namespace(NAMESPACE)
    assert idx == NS
    folder = await server.nodes.objects.add_folder(ua.NodeId("Plant", NS), "Plant")
    nodes = {}
    for name, (value, vtype) in VARIABLES.items():
        nodes[name] = await folder.add_variable(ua.NodeId(name, NS), name, value, vtype)
        await nodes[name].set_writable()
    nodes[READ_ONLY] = await folder.add_variable(ua.NodeId(READ_ONLY, NS), READ_ONLY, 1.0)
    await server.start()
    return OpcUaTestServer(server, port, nodes)


class _Passwords:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(
        self,
        _iserver: object,
        username: str | None = None,
        password: str | None = None,
        **_: object,
    ) -> User | None:
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User)
        return None


def _only(trusted: CertPair):
    expected = x509.load_pem_x509_certificate(trusted.certificate.read_bytes())

    async def validate(cert: x509.Certificate, _app: ua.ApplicationDescription) -> None:
        if cert != expected:
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    return validate


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class FreezableLink:
    """A TCP relay in front of a server that can stop passing bytes without closing
    anything: a pulled cable or a hung switch, which no socket error reveals."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = False
        self._listener: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._listener is not None
        return self._listener.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._listener = await asyncio.start_server(self._relay, "127.0.0.1", 0)

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {client_w, server_w}
        await asyncio.gather(self._pump(client_r, server_w), self._pump(server_r, client_w))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if not self.frozen:
                    writer.write(data)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
