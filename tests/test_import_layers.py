"""The layers of DESIGN.md's layout, read from the source: arrows never run upwards.

- ``heatd.drivers`` imports nothing else of heatd (nor the simulator);
- the control core imports only the standard library (no asyncio, sockets, files,
  clocks or threads), pydantic and itself;
- the daemon's own modules import the simulator only inside a function (a command
  handler), never when they are imported.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "heatd"
IO_MODULES = {"asyncio", "socket", "select", "selectors", "subprocess", "threading",
              "multiprocessing", "time", "os", "io", "sqlite3", "ssl", "signal"}


def imports(path: Path, top_level_only: bool = False) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in a file; only module-level ones if asked."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif top_level_only and isinstance(node, ast.If | ast.Try):
            # imports under "if TYPE_CHECKING:" or try/except at module level count too
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    yield from ((inner.lineno, a.name) for a in inner.names)
                elif isinstance(inner, ast.ImportFrom) and inner.level == 0 and inner.module:
                    yield inner.lineno, inner.module


def files(under: Path) -> list[Path]:
    return sorted(under.rglob("*.py"))


def test_there_is_something_to_check() -> None:
    assert len(files(PACKAGE / "drivers")) > 10 and len(files(PACKAGE / "control")) > 10


@pytest.mark.parametrize("path", files(PACKAGE / "drivers"), ids=lambda p: p.name)
def test_drivers_import_nothing_of_heatd(path: Path) -> None:
    bad = [(n, m) for n, m in imports(path)
           if (m == "heatd" or m.startswith("heatd.")) and not m.startswith("heatd.drivers")]
    assert not bad, f"{path}: {bad}"


@pytest.mark.parametrize("path", files(PACKAGE / "control"), ids=lambda p: p.name)
def test_the_control_core_does_no_io(path: Path) -> None:
    allowed = {"pydantic", "typing_extensions"}

    def wrong(module: str) -> bool:
        top = module.split(".", 1)[0]
        if top == "heatd":
            return not module.startswith("heatd.control")
        return top in IO_MODULES or (top not in sys.stdlib_module_names and top not in allowed)

    bad = [(n, m) for n, m in imports(path) if wrong(m)]
    assert not bad, f"{path}: {bad}"


def daemon_files() -> list[Path]:
    return [p for p in files(PACKAGE) if not p.is_relative_to(PACKAGE / "hil")]


@pytest.mark.parametrize("path", daemon_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_daemon_never_imports_the_simulator_when_imported(path: Path) -> None:
    bad = [(n, m) for n, m in imports(path, top_level_only=True)
           if m == "heatd.hil" or m.startswith("heatd.hil.")]
    assert not bad, f"{path}: {bad}"


def test_no_top_level_drivers_or_hil_package_is_imported_anywhere() -> None:
    root = PACKAGE.parent
    bad = []
    for folder in ("heatd", "tests", "bench"):
        for path in files(root / folder):
            if "node_modules" in path.parts:
                continue
            bad += [(str(path), n, m) for n, m in imports(path)
                    if m.split(".")[0] in {"drivers", "hil"}]
    assert not bad
