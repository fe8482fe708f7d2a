"""``heatd opcua cert``: a self-signed OPC UA application certificate for heatd.

Servers check that the ApplicationUri a client announces is the URI in its certificate's
SubjectAltName, and many check the key usages too; a certificate made with a generic TLS
recipe fails on either. This one carries the URI and the host name, the usages OPC UA
Part 6 asks of an application instance certificate, and is written as DER (what server
trust folders take), PEM, and a PEM private key readable only by its owner.
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_BITS = 2048
"""Basic256Sha256 wants 2048 to 4096 bits."""


@dataclass(frozen=True, slots=True)
class CertFiles:
    der: Path
    pem: Path
    key: Path


def make_certificate(
    uri: str, out: Path, *, name: str = "heatd", hosts: tuple[str, ...] = (), days: int = 3650,
    force: bool = False,
) -> CertFiles:
    """Write ``<name>.der``, ``<name>.pem`` and ``<name>.key.pem`` to ``out``.

    Raises FileExistsError rather than replace a key a server may already trust.
    """
    files = CertFiles(out / f"{name}.der", out / f"{name}.pem", out / f"{name}.key.pem")
    existing = [str(p) for p in (files.der, files.pem, files.key) if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{', '.join(existing)} exist(s); --force replaces them")
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    cert = _certificate(key, uri, hosts or (socket.gethostname(),), days)
    out.mkdir(parents=True, exist_ok=True)
    files.der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    files.pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(files.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem)
    os.chmod(files.key, 0o600)  # also when --force replaced a file with looser rights
    return files


def _certificate(
    key: rsa.RSAPrivateKey, uri: str, hosts: tuple[str, ...], days: int
) -> x509.Certificate:
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, f"heatd@{hosts[0]}"[:64]),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "heatd"),
    ])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(uri), *(x509.DNSName(h) for h in hosts)]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=True, key_encipherment=True,
            data_encipherment=True, key_agreement=False, key_cert_sign=True, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
