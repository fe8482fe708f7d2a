"""What a reload would read: the site file and every file it names.

A reload restarts every driver, and with them the PLC heartbeat, for as long as the
devices take to reconnect. When nothing it would read has changed there is nothing to
apply, so the daemon answers "unchanged" instead; a rotated password or certificate file
changes the fingerprint even though the site file did not.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from heatd.config import OpcUaDeviceConfig, SiteConfig


def referenced_files(site: SiteConfig) -> Iterator[str]:
    """Credential, TLS and certificate files named by the site, as heatd opens them."""
    if site.mqtt is not None:
        yield from site.mqtt.files()
    for device in site.devices.values():
        if isinstance(device, OpcUaDeviceConfig):
            yield from (f for f in (device.certificate, device.private_key,
                                    device.server_certificate) if f)
            if device.trust_list:  # a certificate added to or removed from the folder
                with contextlib.suppress(OSError):
                    yield from sorted(str(p) for p in Path(device.trust_list).iterdir())


def fingerprint(site_file: bytes, site: SiteConfig) -> str:
    """A digest of the site file's bytes and of every file it names (or their absence)."""
    digest = hashlib.sha256(site_file)
    for name in referenced_files(site):
        digest.update(b"\0" + name.encode())
        try:
            digest.update(Path(name).read_bytes())
        except OSError as exc:
            digest.update(f"unreadable: {exc.errno}".encode())
    return digest.hexdigest()
