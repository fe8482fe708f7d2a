"""Why an OPC UA connection failed, named the way a commissioning engineer acts on it.

asyncua reports a refused client certificate as a bare ``AssertionError`` (it asserts on
the fault a server sends instead of an OpenSecureChannel response), a server key that
does not match the pinned certificate as ``BadTcpInternalError``, and explains either
only in a log line. Here every failure gets a short code and a sentence; the code leads
the text the device reports as ``last_error`` (probe, logs, the MQTT health payload), so
``client_certificate_untrusted: ...`` can be matched without parsing the sentence.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum


class Failure(StrEnum):
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    CLIENT_CERTIFICATE_UNTRUSTED = "client_certificate_untrusted"
    APPLICATION_URI_MISMATCH = "application_uri_mismatch"
    SERVER_PIN_MISMATCH = "server_pin_mismatch"
    SERVER_NOT_TRUSTED = "server_not_trusted"
    SECURITY_POLICY_REJECTED = "security_policy_rejected"
    USER_REJECTED = "user_rejected"
    LOCAL_CERTIFICATE = "local_certificate"
    PROTOCOL_ERROR = "protocol_error"


class ConnectFailure(Exception):
    """A connection attempt that cannot succeed as configured, with its named cause."""

    def __init__(self, kind: Failure, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


_BY_STATUS: dict[str, tuple[Failure, str]] = {
    "BadCertificateUriInvalid": (
        Failure.APPLICATION_URI_MISMATCH,
        "the server refused the session: application_uri differs from the URI in the "
        "client certificate's SubjectAltName",
    ),
    "BadSecurityPolicyRejected": (
        Failure.SECURITY_POLICY_REJECTED, "the server refused the security policy"),
    "BadSecurityModeRejected": (
        Failure.SECURITY_POLICY_REJECTED, "the server refused the security mode"),
    "BadIdentityTokenInvalid": (Failure.USER_REJECTED, "the server refused the user token"),
    "BadIdentityTokenRejected": (Failure.USER_REJECTED, "the server refused the user token"),
    "BadUserAccessDenied": (Failure.USER_REJECTED, "wrong username or password"),
}
_CLIENT_CERTIFICATE = (
    "BadCertificateUntrusted", "BadSecurityChecksFailed", "BadCertificateInvalid",
    "BadCertificateRevoked", "BadCertificateTimeInvalid", "BadCertificateUseNotAllowed",
    "BadCertificateIssuerRevocationUnknown", "BadCertificateRevocationUnknown",
    "BadCertificateChainIncomplete",
)
UNTRUSTED_HINT = "put heatd's certificate in the server's trusted certificates"


def classify(exc: BaseException, *, secured: bool) -> ConnectFailure:
    """Name the failure of one connection attempt."""
    if isinstance(exc, ConnectFailure):
        return exc
    found = _by_kind(exc, secured)
    return found if found is not None else _by_status(exc)


def _by_kind(exc: BaseException, secured: bool) -> ConnectFailure | None:
    """A failure the exception's kind tells: no answer, no route, a faulted secure channel,
    no endpoint for the policy; None for one the server named with a status code."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return ConnectFailure(Failure.TIMEOUT, "no answer within the connect timeout")
    if isinstance(exc, OSError):
        return ConnectFailure(Failure.UNREACHABLE, exc.strerror or str(exc) or type(exc).__name__)
    if isinstance(exc, AssertionError) and secured:
        return ConnectFailure(
            Failure.CLIENT_CERTIFICATE_UNTRUSTED,
            f"the server refused the secure channel with a fault; {UNTRUSTED_HINT}")
    if "No matching endpoints" in str(exc):
        return ConnectFailure(Failure.SECURITY_POLICY_REJECTED,
                              f"the server offers no endpoint for this policy and mode ({exc})")
    return None


def _by_status(exc: BaseException) -> ConnectFailure:
    """A failure by the status code the server answered with, or a protocol error."""
    status = _status_name(exc)
    if status in _CLIENT_CERTIFICATE:
        return ConnectFailure(Failure.CLIENT_CERTIFICATE_UNTRUSTED,
                              f"the server refused heatd's certificate ({status}); "
                              f"{UNTRUSTED_HINT}")
    if status in _BY_STATUS:
        kind, text = _BY_STATUS[status]
        return ConnectFailure(kind, f"{text} ({status})")
    if status is not None:
        return ConnectFailure(Failure.PROTOCOL_ERROR, status)
    return ConnectFailure(Failure.PROTOCOL_ERROR, repr(exc))


def _status_name(exc: BaseException) -> str | None:
    from asyncua import ua  # the driver has loaded it already
    from asyncua.ua.uaerrors import UaStatusCodeError

    if isinstance(exc, UaStatusCodeError):
        return ua.StatusCode(ua.UInt32(exc.code & 0xFFFF0000)).name
    return None
