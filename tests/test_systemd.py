"""The unit files load cleanly in systemd (systemd-analyze verify) and carry the hardening
an operator expects; ExecStart points at this installation's heatd for the check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "systemd"
HEATD = Path(sys.executable).with_name("heatd")
ANALYZE = shutil.which("systemd-analyze") or "systemd-analyze"  # make test installs it

HARDENING = [
    "Type=notify", "WatchdogSec=", "Restart=on-failure", "DynamicUser=yes",
    "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
    "CapabilityBoundingSet=\n", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    "SystemCallFilter=@system-service", "SupplementaryGroups=dialout", "StateDirectory=heatd",
    "LoadCredential=mqtt-password:",
]


def verify(unit_text: str, name: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(unit_text.replace("/opt/heatd/bin/heatd", str(HEATD)))
    return subprocess.run([ANALYZE, "verify", str(path)], capture_output=True, text=True,
                          check=False)


@pytest.mark.parametrize(("source", "name"), [("heatd.service", "heatd.service"),
                                              ("heatd@.service", "heatd@north.service")])
def test_unit_verifies_and_is_hardened(source: str, name: str, tmp_path: Path) -> None:
    text = (UNITS / source).read_text()
    result = verify(text, name, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    for directive in HARDENING:
        assert directive in text, directive


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    text = (UNITS / "heatd.service").read_text().replace("Type=notify", "Type=notfy")
    result = verify(text, "heatd.service", tmp_path)
    assert "notfy" in result.stderr


def test_template_runs_one_site_per_instance() -> None:
    text = (UNITS / "heatd@.service").read_text()
    assert "ExecStart=/opt/heatd/bin/heatd run /etc/heatd/%i.yaml" in text
    assert "StateDirectory=heatd/%i" in text
