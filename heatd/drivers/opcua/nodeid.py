"""The text form of an OPC UA node id (Part 6, 5.3.1.10), checked without asyncua.

A site file is validated by ``heatd check-config`` and at every start; a site without an
OPC UA device must not pay for loading asyncua, and one with a device must not pay for it
before the file is known to be good. The driver still parses the id with asyncua when it
talks to the server; this check refuses what asyncua would refuse or misread.
"""

from __future__ import annotations

import re

_HEX = "[0-9A-Fa-f]"
_NODE_ID = re.compile(
    r"(?:ns=(?P<ns>\d+);|nsu=[^;]+;)?"
    r"(?:i=(?P<numeric>\d+)"
    r"|s=.+"
    rf"|g={_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
    rf"|b=(?:0x(?:{_HEX}{{2}})+|[A-Za-z0-9+/]+={{0,2}}))",
    re.DOTALL,
)
NAMESPACE_MAX = 0xFFFF
NUMERIC_MAX = 0xFFFFFFFF


def check_node_id(text: str) -> None:
    """Raise ValueError unless ``text`` is a node id such as ``ns=2;s=Loop.Supply``,
    ``nsu=urn:vendor:plant;i=1001`` or ``i=85``."""
    match = _NODE_ID.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an OPC UA node id like ns=2;s=Name, "
                         "nsu=urn:example;i=1001 or i=85")
    if match["ns"] is not None and int(match["ns"]) > NAMESPACE_MAX:
        raise ValueError(f"{text!r}: namespace index above {NAMESPACE_MAX}")
    if match["numeric"] is not None and int(match["numeric"]) > NUMERIC_MAX:
        raise ValueError(f"{text!r}: numeric identifier above {NUMERIC_MAX}")
