"""The reload fingerprint: the site file and the files it names, so a reload of an
unchanged configuration restarts nothing while a rotated credential still counts."""

from __future__ import annotations

from pathlib import Path

from test_config import MINIMAL

from heatd.config_loader import load_site
from heatd.fingerprint import fingerprint, referenced_files

SITE = MINIMAL + """\
mqtt:
  host: 127.0.0.1
  username: heatd
  password_file: ${SECRETS}/mqtt-password
"""


def test_a_rotated_password_changes_the_fingerprint_an_untouched_site_does_not(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SECRETS", str(tmp_path))
    (tmp_path / "mqtt-password").write_text("one\n")
    path = tmp_path / "site.yaml"
    path.write_text(SITE)
    site = load_site(path)
    assert list(referenced_files(site)) == [str(tmp_path / "mqtt-password")]
    first = fingerprint(path.read_bytes(), site)
    assert fingerprint(path.read_bytes(), site) == first
    (tmp_path / "mqtt-password").write_text("two\n")
    rotated = fingerprint(path.read_bytes(), site)
    assert rotated != first
    (tmp_path / "mqtt-password").unlink()
    vanished = fingerprint(path.read_bytes(), site)
    assert vanished not in (first, rotated)  # a vanished file is a change
    (tmp_path / "mqtt-password").write_text("two\n")
    path.write_text(SITE.replace("port: 5020", "port: 5021"))
    assert fingerprint(path.read_bytes(), site) != rotated
