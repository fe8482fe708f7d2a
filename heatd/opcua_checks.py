"""What ``heatd check-config`` checks of OPC UA devices beyond the file itself: the
certificate files a secured device would open at start, whether the client certificate
carries ``application_uri`` (servers refuse the session otherwise), an insecure
``trust: any``, and node ids that name a namespace only by index."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from heatd.config import OpcUaDeviceConfig, SiteConfig
from heatd.drivers.opcua.namespaces import NodeRef
from heatd.site_checks import Invalid, Problem


def opcua_problems(site: SiteConfig, invalid: Invalid, notes: list[str],
                   file: str) -> Iterator[Problem]:
    for name, device in site.devices.items():
        if not isinstance(device, OpcUaDeviceConfig) or invalid.covers("devices", name):
            continue
        indexes = sorted({ref.index for point in device.points.values()
                          if (ref := NodeRef.parse(point.node_id)).uri is None
                          and ref.index > 0 and ref.index not in device.namespaces})
        if indexes:
            listed = ", ".join(f"ns={i}" for i in indexes)
            notes.append(
                f"{file}: devices.{name}: node ids name {listed} by index only; a server "
                "may renumber its namespaces on restart or update: write nsu=<uri>;... or "
                "declare namespaces: {index: uri} (heatd browse shows the URIs)")
        if device.security_policy == "None":
            continue
        if device.server_trust == "any":
            notes.append(f"{file}: devices.{name}.trust: any is INSECURE: heatd accepts "
                         "whatever certificate answers on the endpoint")
        yield from _certificate_problems(name, device)


def _certificate_problems(name: str, device: OpcUaDeviceConfig) -> Iterator[Problem]:
    from heatd.drivers.opcua.failures import ConnectFailure
    from heatd.drivers.opcua.trust import check_own_certificate, read_certificate, trust_list

    where = ("devices", name)
    checks: list[tuple[str, Callable[[], object]]] = [("certificate", lambda: check_own_certificate(
        device.certificate or "", device.application_uri))]
    if device.server_trust == "pinned":
        checks.append(("server_certificate",
                       lambda: read_certificate(device.server_certificate or "")))
    if device.server_trust == "list":
        checks.append(("trust_list", lambda: _not_empty(trust_list(device.trust_list or ""),
                                                        device.trust_list or "")))
    for field, check in checks:
        try:
            check()
        except ConnectFailure as exc:
            yield (*where, field), f"{exc.detail} (heatd run could not connect)"
    try:
        Path(device.private_key or "").read_bytes()
    except OSError as exc:
        yield (*where, "private_key"), f"{device.private_key}: {exc.strerror or exc}"


def _not_empty(found: Sequence[object], folder: str) -> None:
    from heatd.drivers.opcua.failures import ConnectFailure, Failure

    if not found:
        raise ConnectFailure(Failure.LOCAL_CERTIFICATE,
                             f"{folder} holds no .der, .pem, .crt or .cer certificate")
