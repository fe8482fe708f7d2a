"""What a reload would read: the site file and every file it names.

A reload restarts every driver, and with them the PLC heartbeat, for as long as the
devices take to reconnect. When nothing it would read has changed there is nothing to
apply, so the daemon answers "unchanged" instead; a rotated password or certificate file
changes the fingerprint even though the site file did not.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from heatd.config import OpcUaDevice, SiteConfig


def referenced_files(site: SiteConfig) -> Iterator[str]:
    """Credential, TLS and certificate files named by the site, as written."""
    mqtt = site.mqtt
    if mqtt is not None:
        if mqtt.password_file:
            yield mqtt.password_file
        if mqtt.tls is not None:
            yield from (f for f in (mqtt.tls.ca, mqtt.tls.cert, mqtt.tls.key) if f)
    for device in site.devices.values():
        if isinstance(device, OpcUaDevice):
            yield from (f for f in (device.certificate, device.private_key,
                                    device.server_certificate) if f)


def fingerprint(path: Path, site: SiteConfig) -> str:
    """A digest of the site file's bytes and of every file it names (or their absence)."""
    digest = hashlib.sha256(path.read_bytes())
    for name in referenced_files(site):
        expanded = os.path.expandvars(name)
        digest.update(b"\0" + expanded.encode())
        try:
            digest.update(Path(expanded).read_bytes())
        except OSError as exc:
            digest.update(f"unreadable: {exc.errno}".encode())
    return digest.hexdigest()
