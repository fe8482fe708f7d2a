"""Arguments the planning and report commands share: a time step, a CO2 factor or a price,
and the folder they write to, each refused with one line before any long run starts
rather than with a traceback after it."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path


def positive(text: str, what: str) -> float:
    """A finite number above 0; ``what`` names it in the error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def step_seconds(text: str) -> float:
    """A co-simulation step: a finite number of seconds above 0."""
    return positive(text, "a step > 0 in seconds")


def kwh_per_year(text: str) -> float:
    """A yearly energy, e.g. one home's heat: a finite number of kWh above 0."""
    return positive(text, "a yearly energy > 0 in kWh")


def non_negative(text: str, what: str) -> float:
    """A finite number, not negative; ``what`` names it in the error (a factor, a price)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def kg_per_kwh(text: str) -> float:
    """An emission factor in kg CO2 per kWh: finite, >= 0."""
    return non_negative(text, "a factor >= 0 in kg CO2/kWh")


def output_dir(path: str | Path, command: str) -> Path | None:
    """The folder ``heatd <command>`` writes to, made now (with its parents) and checked
    writable; None when it cannot be, said on stderr as ``heatd <command>: <path>:
    <reason>`` (the caller exits 2, as for any other bad argument)."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file of that name
        reason, where = "Not a directory", str(out)
    except OSError as exc:
        reason, where = exc.strerror or str(exc), str(exc.filename or out)
    else:
        if os.access(out, os.W_OK | os.X_OK):
            return out
        reason, where = "Permission denied", str(out)
    print(f"heatd {command}: {where}: {reason}", file=sys.stderr)
    return None
