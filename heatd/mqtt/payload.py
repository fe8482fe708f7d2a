"""JSON payloads: compact, numbers stay numbers, and never a NaN that no parser accepts."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Mapping
from typing import Any


def epoch_ms(ts: float) -> int:
    """Epoch seconds -> integer epoch milliseconds (UTC), the contract's ``ts``."""
    return round(ts * 1000)


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: non-finite floats become null, enums their value,
    dataclasses dicts. Anything else unknown raises TypeError, naming the type."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    raise TypeError(f"cannot publish a {type(value).__name__} as JSON")


def dumps(value: Any) -> bytes:
    return json.dumps(plain(value), separators=(",", ":"), allow_nan=False).encode()


def dumps_ready(value: Mapping[str, Any]) -> bytes:
    """``dumps`` for data that is JSON-ready already (a device state body: numbers,
    strings, None, and a dict of strings), without the walk through ``plain``; a NaN
    that slipped through is still refused."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
