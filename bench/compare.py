"""Compare two benchmark results files (``bench/run.py`` writes them): print every metric
the two share, old beside new, and exit 1 when one got worse than the tolerance.

Rows with a baseline are compared by their ratio to it (the machine's load moves both), the
others by their value; "worse" follows each row's direction (lower is better for times and
memory, higher for throughput).

    .venv/bin/python bench/compare.py OLD.json NEW.json [--tolerance 0.10]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from results import changes, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--tolerance", type=float, default=0.10,
                        help="relative change counted as a regression (default 0.10)")
    args = parser.parse_args(argv)
    try:
        old_meta, old = load(args.old)
        new_meta, new = load(args.new)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"old: {old_meta.get('commit', '?')}  new: {new_meta.get('commit', '?')}  "
          f"tolerance {args.tolerance:.0%}")
    found = changes(old, new, args.tolerance)
    missing = sorted({r.metric for r in old} - {r.metric for r in new})
    width = max((len(metric) for metric in [c.metric for c in found] + missing), default=6)
    for c in found:
        mark = "REGRESSION" if c.regression else ("better" if c.worse_by < 0 else "")
        moved = (c.new - c.old) / abs(c.old) if c.old else 0.0
        print(f"  {c.metric:<{width}}  {c.old:10.3f} -> {c.new:10.3f}  {moved:+7.1%}  "
              f"{mark}".rstrip())
    for metric in missing:
        print(f"  {metric:<{width}}  not in {args.new}")
    regressions = [c for c in found if c.regression]
    print(f"{len(regressions)} regression{'s' if len(regressions) != 1 else ''}")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
