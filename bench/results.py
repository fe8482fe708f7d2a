"""The benchmark table: one row per figure, heatd beside a baseline measured in the same
run, the target and whether it is met; kept as ``bench/results.json`` so two commits can
be compared (``bench/compare.py``).

A row with a baseline is compared across runs by its ratio to that baseline, which the
machine's load affects far less than the raw figure; a row without one by its value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Better = Literal["lower", "higher"]
SCHEMA = 1


@dataclass(frozen=True, slots=True)
class Target:
    """``value <= 40`` or ``ratio >= 0.8``: what the row must meet."""

    on: Literal["value", "ratio"]
    op: Literal["<=", ">="]
    limit: float

    def met(self, value: float, ratio: float | None) -> bool | None:
        x = value if self.on == "value" else ratio
        if x is None:
            return None
        return x <= self.limit if self.op == "<=" else x >= self.limit

    def __str__(self) -> str:
        return f"{self.on} {self.op} {self.limit:g}"

    @classmethod
    def parse(cls, text: str) -> Target:
        on, op, limit = text.split()
        if on not in ("value", "ratio") or op not in ("<=", ">="):
            raise ValueError(f"{text!r} is not a target like 'ratio <= 1.3'")
        return cls(on, op, float(limit))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Row:
    metric: str
    unit: str
    heatd: float
    baseline: float | None
    target: Target | None
    better: Better = "lower"
    note: str = ""
    """What was run when it is not the obvious (a shortened horizon, the baseline's kind)."""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.heatd / self.baseline

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.target.met(self.heatd, self.ratio)

    @property
    def compared(self) -> float:
        """The figure compared across runs: the ratio when there is a baseline."""
        ratio = self.ratio
        return self.heatd if ratio is None else ratio

    def as_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "unit": self.unit, "heatd": self.heatd,
                "baseline": self.baseline, "ratio": self.ratio,
                "target": None if self.target is None else str(self.target),
                "pass": self.passed, "better": self.better, "note": self.note}


def _number(text: float) -> str:
    if abs(text) >= 100:
        return f"{text:.0f}"
    if abs(text) >= 10:
        return f"{text:.1f}"
    return f"{text:.2f}"


def render(rows: list[Row]) -> str:
    """The table as text, one line per row."""
    header = ("metric", "heatd", "baseline", "ratio", "target", "pass")
    lines = [header]
    for r in rows:
        lines.append((
            r.metric,
            f"{_number(r.heatd)} {r.unit}",
            "-" if r.baseline is None else f"{_number(r.baseline)} {r.unit}",
            "-" if r.ratio is None else f"{r.ratio:.2f}",
            "-" if r.target is None else str(r.target),
            {True: "pass", False: "FAIL", None: "-"}[r.passed],
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                     for i, (cell, w) in enumerate(zip(line, widths, strict=True))).rstrip()
           for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {r.metric}: {r.note}" for r in rows if r.note]
    return "\n".join(out + (["notes:", *notes] if notes else []))


def dump(rows: list[Row], meta: dict[str, Any], path: Path) -> None:
    data = {"schema": SCHEMA, **meta, "rows": [r.as_json() for r in rows]}
    path.write_text(json.dumps(data, indent=1) + "\n")


def load(path: Path) -> tuple[dict[str, Any], list[Row]]:
    """Rows of a results file; ValueError naming the file and the field when it is not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a benchmark results file (schema {SCHEMA})")
    if not isinstance(data.get("rows"), list):
        raise ValueError(f"{path}: rows: a list is needed")
    rows = []
    for i, item in enumerate(data["rows"]):
        where = f"{path}: rows[{i}]"
        try:
            baseline = item["baseline"]
            target = item["target"]
            row = Row(str(item["metric"]), str(item["unit"]), float(item["heatd"]),
                      None if baseline is None else float(baseline),
                      None if target is None else Target.parse(target),
                      item.get("better", "lower"), str(item.get("note", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc!r}") from None
        if row.better not in ("lower", "higher") or not math.isfinite(row.heatd):
            raise ValueError(f"{where}: better must be lower or higher, heatd a number")
        rows.append(row)
    meta = {k: v for k, v in data.items() if k not in ("rows", "schema")}
    return meta, rows


@dataclass(frozen=True, slots=True)
class Change:
    metric: str
    old: float
    new: float
    worse_by: float
    """Relative change in the bad direction (0.25: 25 % worse; negative: better)."""
    regression: bool


def changes(old: list[Row], new: list[Row], tolerance: float) -> list[Change]:
    """Each metric present in both, compared by ``Row.compared``; a change worse than
    ``tolerance`` (relative) is a regression."""
    before = {r.metric: r for r in old}
    out = []
    for row in new:
        prior = before.get(row.metric)
        if prior is None:
            continue
        a, b = prior.compared, row.compared
        if a == 0:
            worse = math.inf if (b > a if row.better == "lower" else b < a) else 0.0
        else:
            worse = (b - a) / abs(a) if row.better == "lower" else (a - b) / abs(a)
        out.append(Change(row.metric, a, b, worse, worse > tolerance))
    return out
