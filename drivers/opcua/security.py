"""Client identity: user token, application URI and secure-channel policy."""

from __future__ import annotations

from asyncua import Client, ua
from asyncua.crypto import security_policies

from drivers.opcua.config import OpcUaSettings

_POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
}


async def apply_security(client: Client, settings: OpcUaSettings) -> None:
    """Configure ``client`` before ``connect``.

    Without ``server_certificate`` the server's certificate is taken from its endpoint
    list (one extra round trip, and nothing is pinned); with it, a server presenting
    another key cannot complete the secure channel.
    """
    client.application_uri = settings.application_uri
    if settings.username is not None:
        client.set_user(settings.username)
    if settings.password is not None:
        client.set_password(settings.password)
    if settings.security_policy == "None":
        return
    assert settings.certificate is not None and settings.private_key is not None
    await client.set_security(
        _POLICIES[settings.security_policy],
        settings.certificate,
        settings.private_key,
        server_certificate=settings.server_certificate,
        mode=ua.MessageSecurityMode[settings.security_mode],
    )
