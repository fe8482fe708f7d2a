"""``heatd init DIR``: a new site's starting files, taken from the files the package ships.

The example site and the systemd unit travel inside the wheel as package data
(``heatd/share/``), so an operator who installed heatd with pip has them without the
source tree. The example names documentation addresses (192.0.2.x, /dev/ttyUSB0,
broker.example.net): probed as written it only times out, so the command says to edit it
first. Existing files are never overwritten unless asked: a commissioned site file is
worth more than the example.
"""

from __future__ import annotations

import sys
import sysconfig
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TextIO

SHARE = files("heatd") / "share"
EXAMPLE_SITE = "config/example-site.yaml"
UNIT = "systemd/heatd.service"
UNIT_HEATD = "/opt/heatd/bin/heatd"
"""The path the shipped unit runs heatd from; ``init`` puts this installation's in."""


def shipped(relative: str) -> Traversable:
    """A file the package ships under ``heatd/share/``, e.g. ``config/demo-site.yaml``."""
    item = SHARE.joinpath(*relative.split("/"))
    if not item.is_file():
        raise FileNotFoundError(f"heatd ships no {relative}")
    return item


def installed_heatd() -> Path | None:
    """This installation's ``heatd`` script, if it is where pip puts console scripts."""
    script = Path(sysconfig.get_path("scripts")) / "heatd"
    return script if script.is_file() else None


def unit_text(heatd: Path | None) -> str:
    """The shipped unit, running ``heatd`` from this installation when it is known."""
    text = shipped(UNIT).read_text(encoding="utf-8")
    return text if heatd is None else text.replace(UNIT_HEATD, str(heatd))


def _credential_steps(unit: str) -> str:
    """The shell lines that make each file the unit loads as a credential: systemd does
    not start a unit whose ``LoadCredential=`` source is missing (made empty, and never
    over a password already there)."""
    sources = [line.split(":", 1)[1].strip() for line in unit.splitlines()
               if line.startswith("LoadCredential=")]
    steps = "".join(f"     test -e {path} || install -m 0600 /dev/null {path}\n"
                    for path in sources)
    return ("     # the unit loads these (LoadCredential=); put the broker's password in it,\n"
            "     # if any: systemd does not start heatd without the file\n" + steps
            if steps else "")


def init(directory: Path, force: bool, out: TextIO) -> int:
    """Write ``site.yaml`` and ``heatd.service`` into ``directory`` and say what to do
    next on ``out``; 1 if one exists and ``force`` is not set (nothing is written then)."""
    site = directory / "site.yaml"
    unit = directory / "heatd.service"
    existing = [p for p in (site, unit) if p.exists()]
    if existing and not force:
        for path in existing:
            print(f"heatd init: {path} exists; --force overwrites it", file=sys.stderr)
        return 1
    heatd = installed_heatd()
    directory.mkdir(parents=True, exist_ok=True)
    site.write_text(shipped(EXAMPLE_SITE).read_text(encoding="utf-8"), encoding="utf-8")
    unit.write_text(unit_text(heatd), encoding="utf-8")
    runs = f"runs {heatd}" if heatd else f"runs {UNIT_HEATD}: edit ExecStart if heatd is elsewhere"
    print(f"wrote {site} (the example site) and {unit} ({runs})", file=out)
    print(
        "next:\n"
        f"  1. edit {site}: its hosts (192.0.2.x), serial port, OPC UA endpoint and broker\n"
        "     are placeholders; put in your devices' addresses, points and roles first\n"
        f"  2. heatd check-config {site}\n"
        f"  3. heatd probe {site}      # reads every point once from the edited addresses\n"
        f"  4. install -D -m 0644 {site} /etc/heatd/site.yaml\n"
        f"{_credential_steps(unit.read_text(encoding='utf-8'))}"
        f"     install -m 0644 {unit} /etc/systemd/system/\n"
        "     systemctl daemon-reload && systemctl enable --now heatd",
        file=out,
    )
    return 0
