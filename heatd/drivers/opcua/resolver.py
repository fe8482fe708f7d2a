"""The node ids of one NamespaceArray: every configured node id resolved once against the
array the server reported, at connect or when the driver saw it change since."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from asyncua import ua

from heatd.drivers.opcua.convert import status_name
from heatd.drivers.opcua.namespaces import NamespaceError, NodeRef, resolve
from heatd.drivers.opcua.spec import OpcUaPoint

NAMESPACE_ARRAY = ua.NodeId(ua.Int32(ua.ObjectIds.Server_NamespaceArray))
"""i=2255, the Server object's NamespaceArray."""


def namespace_array(value: ua.DataValue) -> tuple[str, ...]:
    """The URIs in a Read or data-change result for :data:`NAMESPACE_ARRAY`; raises
    ValueError for a bad status or a value that is no list of strings."""
    status = value.StatusCode
    if status is not None and not status.is_good():
        raise ValueError(f"NamespaceArray unreadable: {status_name(status)}")
    uris = value.Value.Value if value.Value is not None else None
    if not isinstance(uris, list) or not all(isinstance(uri, str) for uri in uris):
        raise ValueError(f"NamespaceArray is no list of URIs: {uris!r}")
    return tuple(uris)


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
