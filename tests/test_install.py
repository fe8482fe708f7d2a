"""heatd as an operator gets it: the wheel built from this tree, installed without the
plot extra into a fresh virtual environment outside the source tree, used only through its
console commands. What the source tree lends an editable install (config/, systemd/,
matplotlib from the test extras) is out of reach here, so a file the wheel forgets or an
import the plot extra hides fails this test."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the version as the source writes it (pyproject takes it from there): read, not imported, so
# the installed wheel's metadata is checked against the tree it was built from
VERSION = next(
    node.value.value for node in ast.parse((ROOT / "heatd" / "__init__.py").read_text()).body
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
    and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
)
PLOT_EXTRA = "plots need the 'plot' extra: pip install 'heatd[plot]'"


@dataclass(frozen=True)
class Installed:
    wheel: Path
    build_log: str
    bin: Path
    home: Path  # a working directory with nothing of the source tree in it

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run([str(self.bin / args[0]), *args[1:]], cwd=self.home, env=env,
                              capture_output=True, text=True, timeout=300, check=False)


def _checked(command: list[str], cwd: Path) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("install")
    home = base / "home"
    home.mkdir()
    # setuptools builds in the source's own build/ folder: build from a copy, so the test
    # leaves nothing in the checkout (a stray build/lib/heatd is a second heatd to mypy).
    source = base / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "node_modules", "__pycache__",
        ".hypothesis", ".pytest_cache", ".ruff_cache", ".mypy_cache", "out"))
    log = _checked([sys.executable, "-m", "pip", "wheel", "--verbose", "--no-deps",
                    "--wheel-dir", str(base / "dist"), str(source)], home)
    (wheel,) = (base / "dist").glob("heatd-*.whl")
    _checked([sys.executable, "-m", "venv", str(base / "venv")], home)
    _checked([str(base / "venv" / "bin" / "pip"), "install", "--quiet", str(wheel)], home)
    return Installed(wheel, log, base / "venv" / "bin", home)


def test_the_wheel_carries_its_licence_and_builds_without_deprecations(
        installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        info = f"heatd-{VERSION}.dist-info"
        metadata = wheel.read(f"{info}/METADATA").decode()
    assert f"{info}/licenses/LICENSE" in names
    assert "License-Expression: Apache-2.0" in metadata
    shipped = {"heatd/share/config/example-site.yaml", "heatd/share/config/demo-site.yaml",
               "heatd/share/systemd/heatd.service", "heatd/share/systemd/heatd@.service",
               "heatd/py.typed"}
    assert shipped <= names
    assert "deprecated" not in installed.build_log.lower(), installed.build_log


def test_version_and_no_plot_extra(installed: Installed) -> None:
    done = installed.run("heatd", "--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"heatd {VERSION}")
    probe = installed.run("python", "-c", "import matplotlib")
    assert probe.returncode != 0 and "No module named 'matplotlib'" in probe.stderr


def test_init_writes_an_example_site_that_checks_and_a_unit_for_this_install(
        installed: Installed) -> None:
    site_dir = installed.home / "north"
    first = installed.run("heatd", "init", str(site_dir))
    assert first.returncode == 0, first.stderr
    site, unit = site_dir / "site.yaml", site_dir / "heatd.service"
    assert f"1. edit {site}" in first.stdout
    assert first.stdout.index("edit") < first.stdout.index("heatd probe")
    unit_text = unit.read_text()
    assert f"ExecStart={installed.bin / 'heatd'} run /etc/heatd/site.yaml" in unit_text
    assert "/opt/heatd/bin/heatd" not in unit_text.split("[Unit]")[1]
    # systemd refuses to start a unit whose credential file is missing: the steps make it
    credentials = [line.split(":", 1)[1] for line in unit_text.splitlines()
                   if line.startswith("LoadCredential=")]
    assert credentials
    for source in credentials:
        assert f"install -m 0600 /dev/null {source}" in first.stdout

    site.write_text(site.read_text().replace("id: example", "id: north"))
    again = installed.run("heatd", "init", str(site_dir))
    assert again.returncode == 1 and "--force" in again.stderr
    assert "id: north" in site.read_text()  # refused: nothing overwritten

    checked = installed.run("heatd", "check-config", str(site))
    assert checked.returncode == 0, checked.stderr
    assert "ok (site north" in checked.stdout

    forced = installed.run("heatd", "init", "--force", str(site_dir))
    assert forced.returncode == 0 and "id: example" in site.read_text()


def test_score_without_the_plot_extra_says_so_once_and_scores(installed: Installed) -> None:
    plots = installed.home / "plots"
    done = installed.run("heatd", "hil", "score", "--scenario", "winter_week", "--dt", "30",
                         "--plot-dir", str(plots))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(PLOT_EXTRA) == 1 and "Traceback" not in done.stderr
    assert "heat-pump starts" in done.stdout and "supply over limit" in done.stdout
    assert not plots.exists()
