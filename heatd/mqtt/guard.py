"""Cheap checks on a command payload before any JSON parser sees it.

A recursive parser (``json.loads``) overflows the stack on a few kilobytes of ``[[[[``, and
even a parser that copes spends memory on a payload no command needs. Commands are flat
JSON objects of a few hundred bytes, so a size cap and a depth count, made in one pass
over the bytes with the strings removed, refuse hostile input in linear time.
"""

from __future__ import annotations

import re

MAX_PAYLOAD_BYTES = 4096
"""Far above any command (the largest, an override with id and by, is ~300 bytes)."""
MAX_DEPTH = 8
"""Nesting levels of arrays and objects; commands use one."""

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
"""A JSON string, or an unterminated one up to the end. Possessive and always matching
from its opening quote, so each byte is scanned once: ``"\\"\\"\\"...`` stays linear."""
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def shape_problem(payload: bytes, max_bytes: int = MAX_PAYLOAD_BYTES,
                  max_depth: int = MAX_DEPTH) -> str | None:
    """Why ``payload`` is refused unparsed (too big, nested too deep), or None.

    Brackets inside JSON strings do not count. Nor do those after an unterminated
    string: a parser stops at that string too, so it never descends into them.
    """
    if len(payload) > max_bytes:
        return f"payload of {len(payload)} bytes exceeds the limit of {max_bytes} bytes"
    brackets = _STRING.sub(b"", payload).translate(None, _NOT_BRACKET)
    if len(brackets) <= max_depth:
        return None
    depth = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            if depth > max_depth:
                return f"payload nested deeper than {max_depth} levels"
        else:
            depth -= 1
    return None
