"""Which namespace a configured node id means, on the server as it is now.

A namespace index is only a position in the server's NamespaceArray, and servers build
that array at start: a restart or a firmware update may reorder it, and a second
namespace may hold the same string ids. So a site names the namespace by URI
(``nsu=urn:vendor:plant;s=Loop.Supply``), or states which URI it expects at an index
(``namespaces: {2: urn:vendor:plant}``), and every connection resolves the node ids
against the array the server reports. A node id whose namespace is not where the site
expects it is never read: its point goes bad with the reason.

Pure text and lists, no asyncua: the config check uses :class:`NodeRef` too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

STANDARD_URI = "http://opcfoundation.org/UA/"
"""Namespace 0, the same on every server."""


class NamespaceError(ValueError):
    """A node id's namespace is missing from the server or not the one the site expects."""


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A node id as the site file writes it: the namespace (by index or URI) and the
    identifier part (``s=...``, ``i=...``, ``g=...`` or ``b=...``), kept as text."""

    identifier: str
    index: int = 0
    uri: str | None = None

    @classmethod
    def parse(cls, text: str) -> NodeRef:
        """Split ``ns=2;s=X``, ``nsu=urn:a;s=X`` or ``i=85``; the text must already have
        passed :func:`heatd.drivers.opcua.nodeid.check_node_id`."""
        head, sep, rest = text.partition(";")
        if sep and head.startswith("nsu="):
            return cls(rest, uri=unquote(head[4:]))
        if sep and head.startswith("ns="):
            return cls(rest, index=int(head[3:]))
        return cls(text)

    def at(self, index: int) -> str:
        """The node id with the namespace given by ``index``, as asyncua parses it."""
        return self.identifier if index == 0 else f"ns={index};{self.identifier}"

    def __str__(self) -> str:
        if self.uri is not None:
            return nsu_text(self.uri, self.identifier)
        return self.at(self.index)


def nsu_text(uri: str, identifier: str) -> str:
    """``nsu=<uri>;<identifier>``, with ``;`` and ``%`` in the URI percent-encoded."""
    if uri == STANDARD_URI:
        return identifier
    return f"nsu={quote(uri, safe=':/?#[]@!$&()*+,=-._~')};{identifier}"


def resolve(ref: NodeRef, array: Sequence[str], expected: Mapping[int, str]) -> int:
    """The namespace index ``ref`` means on a server whose NamespaceArray is ``array``.

    ``expected`` maps an index to the URI the site expects there. Raises NamespaceError
    when the URI is missing from the array or the index holds another URI.
    """
    if ref.uri is not None:
        try:
            return list(array).index(ref.uri)
        except ValueError:
            raise NamespaceError(f"namespace {ref.uri} not on the server") from None
    want = expected.get(ref.index)
    if want is None:
        return ref.index
    have = array[ref.index] if ref.index < len(array) else None
    if have != want:
        found = f"is {have}" if have is not None else "does not exist"
        where = f"; {want} is ns={array.index(want)}" if want in array else ""
        raise NamespaceError(f"namespace ns={ref.index} {found}, the site expects {want}{where}")
    return ref.index


def changed_uris(before: Sequence[str], after: Sequence[str]) -> dict[str, tuple[int, int]]:
    """URIs whose index moved (or appeared, -1 before; or vanished, -1 after)."""
    old = {uri: i for i, uri in enumerate(before)}
    new = {uri: i for i, uri in enumerate(after)}
    return {
        uri: (old.get(uri, -1), new.get(uri, -1))
        for uri in old.keys() | new.keys()
        if old.get(uri, -1) != new.get(uri, -1)
    }


def moved(before: Sequence[str], after: Sequence[str]) -> dict[str, dict[str, int]]:
    """:func:`changed_uris` as the ``namespaces_changed`` event words it, by URI."""
    return {uri: {"was": was, "now": now}
            for uri, (was, now) in sorted(changed_uris(before, after).items())}
