"""Client identity: user token, application URI and secure-channel policy, and the checks
that name a security failure before asyncua turns it into an opaque one."""

from __future__ import annotations

from asyncua import Client, ua
from asyncua.crypto import security_policies, uacrypto
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from heatd.drivers.opcua.failures import ConnectFailure, Failure
from heatd.drivers.opcua.spec import OpcUaSettings
from heatd.drivers.opcua.trust import check_own_certificate, check_server_certificate

_POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
}


async def apply_security(client: Client, settings: OpcUaSettings) -> None:
    """Configure ``client`` before ``connect``.

    A secured device first checks that its own certificate carries ``application_uri``,
    then asks the server for its endpoints on an unsecured discovery channel (as every
    OPC UA client does), and refuses, by name, a server that does not offer the policy
    and mode or whose certificate ``trust`` does not accept. The channel is then opened
    with the accepted certificate, so a server that lied in its endpoint list cannot
    decrypt it.
    """
    client.application_uri = settings.application_uri
    if settings.username is not None:
        client.set_user(settings.username)
    if settings.password is not None:
        client.set_password(settings.password)
    if not settings.secured:
        return
    assert settings.certificate is not None and settings.private_key is not None
    check_own_certificate(settings.certificate, settings.application_uri)
    policy = _POLICIES[settings.security_policy]
    mode = ua.MessageSecurityMode[settings.security_mode]
    endpoints = await client.connect_and_get_server_endpoints()
    endpoint = _matching(endpoints, mode, policy.URI)
    presented: x509.Certificate | None = uacrypto.x509_from_der(endpoint.ServerCertificate)
    if presented is None:
        raise ConnectFailure(Failure.SERVER_NOT_TRUSTED,
                             f"the server offers {settings.security_policy}/"
                             f"{settings.security_mode} without a certificate")
    check_server_certificate(presented, settings.trust, pinned=settings.server_certificate,
                             folder=settings.trust_list)
    await client.set_security(
        policy,
        settings.certificate,
        settings.private_key,
        server_certificate=presented.public_bytes(Encoding.DER),
        mode=mode,
    )


def _matching(
    endpoints: list[ua.EndpointDescription], mode: ua.MessageSecurityMode, policy_uri: str
) -> ua.EndpointDescription:
    for endpoint in endpoints:
        if endpoint.SecurityMode == mode and endpoint.SecurityPolicyUri == policy_uri:
            return endpoint
    offered = sorted({f"{e.SecurityPolicyUri.rpartition('#')[2]}/{e.SecurityMode.name}"
                      for e in endpoints})
    raise ConnectFailure(
        Failure.SECURITY_POLICY_REJECTED,
        f"the server does not offer {policy_uri.rpartition('#')[2]}/{mode.name}; it offers "
        f"{', '.join(offered) or 'nothing'}")
