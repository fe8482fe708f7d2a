"""Whether heatd trusts the server it reaches, and whether its own certificate says what
the session will claim. cryptography only: check-config runs these too.

``trust`` says which server certificates heatd accepts on a secured channel:
``pinned`` exactly ``server_certificate``; ``list`` a certificate in the ``trust_list``
folder or one issued directly by a CA certificate there; ``any`` whatever the server
presents (insecure: anyone who can answer on the endpoint gets heatd's setpoints).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from heatd.drivers.opcua.failures import ConnectFailure, Failure
from heatd.drivers.opcua.spec import Trust

CERT_SUFFIXES = (".der", ".pem", ".crt", ".cer")


def load_certificate(data: bytes) -> x509.Certificate:
    """A PEM or DER certificate; ValueError when it is neither."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def read_certificate(path: str | Path) -> x509.Certificate:
    """Raises ConnectFailure (LOCAL_CERTIFICATE) naming the file when it cannot be used."""
    try:
        return load_certificate(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConnectFailure(Failure.LOCAL_CERTIFICATE, f"{path}: {_why(exc)}") from exc


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 of the DER form, as OPC UA tools and servers show it."""
    return hashlib.sha1(cert.public_bytes(Encoding.DER), usedforsecurity=False).hexdigest()


def describe(cert: x509.Certificate) -> str:
    return f"{cert.subject.rfc4514_string()}, thumbprint {thumbprint(cert)}"


def application_uris(cert: x509.Certificate) -> list[str]:
    """The URIs in the SubjectAltName (an OPC UA application certificate has one)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(san.value.get_values_for_type(x509.UniformResourceIdentifier))


def check_own_certificate(path: str | Path, application_uri: str) -> None:
    """Servers refuse a session whose ApplicationUri is not in the client certificate:
    say so before asking them."""
    uris = application_uris(read_certificate(path))
    if application_uri not in uris:
        found = ", ".join(uris) or "none"
        raise ConnectFailure(
            Failure.APPLICATION_URI_MISMATCH,
            f"application_uri {application_uri} is not in {path} (its SubjectAltName URIs: "
            f"{found}); make a certificate with heatd opcua cert --uri {application_uri}")


def trust_list(folder: str | Path) -> list[x509.Certificate]:
    """Every certificate file in ``folder``; raises ConnectFailure for a missing folder."""
    directory = Path(folder)
    try:
        files = sorted(p for p in directory.iterdir() if p.suffix.lower() in CERT_SUFFIXES)
    except OSError as exc:
        raise ConnectFailure(Failure.LOCAL_CERTIFICATE,
                             f"trust_list {folder}: {_why(exc)}") from exc
    return [read_certificate(p) for p in files]


def check_server_certificate(
    presented: x509.Certificate, trust: Trust, *, pinned: str | None, folder: str | None
) -> None:
    """Raise ConnectFailure unless ``presented`` is trusted under ``trust``."""
    if trust == "any":
        return
    if trust == "pinned":
        assert pinned is not None
        expected = read_certificate(pinned)
        if expected != presented:
            raise ConnectFailure(
                Failure.SERVER_PIN_MISMATCH,
                f"the server presents {describe(presented)}, not the pinned {pinned} "
                f"({describe(expected)})")
        return
    assert folder is not None
    for known in trust_list(folder):
        if known == presented or _issued_by(presented, known):
            return
    raise ConnectFailure(
        Failure.SERVER_NOT_TRUSTED,
        f"the server presents {describe(presented)}, which is not in {folder} nor issued "
        "by a CA there; check it and copy it there to trust it")


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject or cert.issuer == cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return "not a PEM or DER certificate"
