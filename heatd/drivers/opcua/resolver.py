"""The node ids of one connection: every configured node id resolved once against the
NamespaceArray the server reported when the connection was made."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from asyncua import ua

from heatd.drivers.opcua.namespaces import NamespaceError, NodeRef, resolve
from heatd.drivers.opcua.spec import OpcUaPoint


class NodeIds:
    def __init__(self, array: Sequence[str], expected: Mapping[int, str]) -> None:
        self.array = tuple(array)
        self._expected = expected
        self._cache: dict[str, ua.NodeId | NamespaceError] = {}

    def of_text(self, text: str) -> ua.NodeId:
        """The asyncua node id for a configured one; raises NamespaceError."""
        found = self._cache.get(text)
        if found is None:
            ref = NodeRef.parse(text)
            try:
                found = ua.NodeId.from_string(ref.at(resolve(ref, self.array, self._expected)))
            except NamespaceError as exc:
                found = exc
            self._cache[text] = found
        if isinstance(found, NamespaceError):
            raise found
        return found

    def of(self, point: OpcUaPoint) -> ua.NodeId:
        return self.of_text(point.node_id)

    def split(
        self, points: Iterable[OpcUaPoint]
    ) -> tuple[list[tuple[OpcUaPoint, ua.NodeId]], dict[str, str]]:
        """Points with their node ids, and the reason for each point that has none."""
        found: list[tuple[OpcUaPoint, ua.NodeId]] = []
        refused: dict[str, str] = {}
        for point in points:
            try:
                found.append((point, self.of(point)))
            except NamespaceError as exc:
                refused[point.name] = str(exc)
        return found, refused
