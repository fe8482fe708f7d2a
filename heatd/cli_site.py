"""Loading the site for a command about one of its devices (``heatd probe``, ``heatd
browse``): both say the same about an invalid file or a device it does not have."""

from __future__ import annotations

import sys

from heatd.config import SiteConfig


def load_for_device(file: str, device: str | None) -> SiteConfig | None:
    """The site in ``file``, with ``device`` among its devices (any site when None); None
    once the reason it cannot serve is on stderr."""
    from heatd.config_loader import ConfigError, load_site

    try:
        site = load_site(file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None
    if device is not None and device not in site.devices:
        print(f"{file}: no device {device!r} (devices: {', '.join(site.devices)})",
              file=sys.stderr)
        return None
    return site
