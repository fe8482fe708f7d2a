"""CSV records of a served run: the plant's ground truth at a fixed plant-time interval
(`truth.csv`) and every write the servers received (`writes.csv`), so a run against the
real daemon can be scored and debugged afterwards from what really happened.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from heatd.hil.faults import Fault
from heatd.hil.plant import Actuators, PlantState

TRUTH_FILE = "truth.csv"
WRITES_FILE = "writes.csv"
WRITE_COLUMNS = ("wall_time", "t", "protocol", "device", "point", "role", "actuator",
                 "address", "raw", "value")
_SCALARS = tuple(f for f in PlantState._fields if f not in ("tank_c", "hp_starts"))


def truth_columns(tank_nodes: int) -> list[str]:
    return ["wall_time", *_SCALARS, *(f"tank_{i}_c" for i in range(tank_nodes)),
            *(f"cmd_{f}" for f in Actuators._fields), "faults"]


class Recorder:
    """Appends rows to the two CSV files in `directory` (created if missing)."""

    def __init__(self, directory: str | Path, tank_nodes: int, interval_s: float = 10.0) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.interval_s = interval_s
        self._next_t: float | None = None
        self._files: list[IO[str]] = []
        self._truth = self._open(TRUTH_FILE, truth_columns(tank_nodes))
        self._writes = self._open(WRITES_FILE, list(WRITE_COLUMNS))

    def _open(self, name: str, header: list[str]) -> Any:
        fh = (self.directory / name).open("w", newline="", encoding="utf-8")
        self._files.append(fh)
        writer = csv.writer(fh)
        writer.writerow(header)
        return writer

    def truth(self, wall: float, state: PlantState, command: Actuators,
              faults: Iterable[Fault]) -> bool:
        """Record the state if the interval has passed since the last row; True if it did."""
        if self._next_t is not None and state.t < self._next_t:
            return False
        self._next_t = state.t + self.interval_s
        scalars = [getattr(state, f) for f in _SCALARS]
        active = ";".join(f"{f.kind}:{f.target}" if f.target else f.kind for f in faults)
        self._truth.writerow([f"{wall:.3f}", *scalars, *state.tank_c, *command, active])
        return True

    def write(self, wall: float, t: float, protocol: str, device: str, point: str, role: str,
              actuator: str, address: str, raw: object, value: object) -> None:
        self._writes.writerow([f"{wall:.3f}", f"{t:.3f}", protocol, device, point, role,
                               actuator, address, raw, value])

    def flush(self) -> None:
        for fh in self._files:
            fh.flush()

    def close(self) -> None:
        for fh in self._files:
            fh.close()
        self._files.clear()
