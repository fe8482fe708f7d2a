"""The daemon reports to its listeners; no listener imports the daemon back. Read from the
source (every import, those under ``TYPE_CHECKING`` and inside functions too) and checked
in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "heatd"
RUNTIME = "heatd.runtime"
LISTENERS = ("heatd.publisher", "heatd.metering", "heatd.reporting", "heatd.dispatch",
             "heatd.cycle_report")


def module_file(name: str) -> Path | None:
    """The source file of a heatd module, None for anything else."""
    if name != "heatd" and not name.startswith("heatd."):
        return None
    base = PACKAGE.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported(name: str) -> set[str]:
    """Every heatd module the source of ``name`` imports, wherever the import is."""
    path = module_file(name)
    assert path is not None, name
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)  # ``from heatd import runtime`` names a module too
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in found if module_file(m) is not None}


def reachable(start: str) -> set[str]:
    """The heatd modules ``start`` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for module in imported(todo.pop()) - seen:
            seen.add(module)
            todo.append(module)
    return seen


def test_the_daemon_imports_its_listeners() -> None:
    """The check below would pass on nothing: the graph is read."""
    assert set(LISTENERS) <= reachable(RUNTIME)


@pytest.mark.parametrize("listener", LISTENERS)
def test_no_listener_imports_the_daemon(listener: str) -> None:
    assert RUNTIME not in reachable(listener)


def test_no_module_the_daemon_imports_imports_it_back() -> None:
    assert RUNTIME not in reachable(RUNTIME)


def test_importing_the_publisher_does_not_load_the_daemon() -> None:
    code = ("import sys, heatd.publisher, heatd.reporting; "
            "print('heatd.runtime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
