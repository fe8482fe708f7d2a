"""What a server offers: its variables below a node, each with the node id a site file
should use (``nsu=`` form), its DataType, whether heatd may read and write it, and its
value. ``heatd browse`` walks with it, ``heatd probe`` describes configured points with it.

One Read asks for DataType, UserAccessLevel and Value of a batch of variables; a DataType
that is not a built-in type (Duration, an enumeration, a vendor subtype) is followed up
its supertypes once per type, as asyncua does, to the variant type a write must use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from asyncua import Client, ua
from asyncua.common.ua_utils import data_type_to_variant_type
from asyncua.ua.uaerrors import UaError

from heatd.drivers.codec import DataType
from heatd.drivers.opcua.convert import VARIANT_TYPES, status_name
from heatd.drivers.opcua.namespaces import nsu_text

DATA_TYPES: dict[ua.VariantType, DataType] = {v: k for k, v in VARIANT_TYPES.items()}
"""The heatd data_type for each variant type heatd can read and write."""
BATCH = 200
"""Nodes per Read or Browse request: small PLCs limit the operations per call."""
_FORWARD_TREE = dict(
    ReferenceTypeId=ua.NodeId(ua.Int32(ua.ObjectIds.HierarchicalReferences)),
    BrowseDirection=ua.BrowseDirection.Forward,
    IncludeSubtypes=True,
    NodeClassMask=ua.NodeClass.Object | ua.NodeClass.Variable,
    ResultMask=ua.BrowseResultMask.All,
)


@dataclass(frozen=True, slots=True)
class VariableInfo:
    node_id: str
    """In ``nsu=`` form, stable across servers' namespace orders."""
    path: str
    data_type: str
    """The DataType's name as the server has it, e.g. ``Double`` or ``Duration``."""
    variant_type: ua.VariantType | None
    readable: bool
    writable: bool
    value: object
    status: str

    @property
    def access(self) -> str:
        return {(True, True): "read/write", (True, False): "read",
                (False, True): "write"}.get((self.readable, self.writable), "none")

    @property
    def heatd_type(self) -> DataType | None:
        """The site file's data_type for this variable, None when heatd has none for it."""
        return DATA_TYPES.get(self.variant_type) if self.variant_type is not None else None


def nsu_form(node_id: ua.NodeId, namespaces: Sequence[str]) -> str:
    """``nsu=<uri>;s=...`` for a node of this server (plain ``i=...`` in namespace 0)."""
    text = node_id.to_string()
    identifier = text.split(";", 1)[1] if text.startswith("ns=") else text
    index = node_id.NamespaceIndex
    if index == 0 or index >= len(namespaces):
        return text
    return nsu_text(namespaces[index], identifier)


class Describer:
    """Reads the facts of variables, remembering what each custom DataType resolves to."""

    def __init__(self, client: Client, namespaces: Sequence[str], timeout: float) -> None:
        self._client = client
        self._namespaces = tuple(namespaces)
        self._timeout = timeout
        self._types: dict[ua.NodeId, tuple[str, ua.VariantType | None]] = {}

    async def describe(
        self, nodes: Sequence[tuple[ua.NodeId, str]]
    ) -> list[VariableInfo]:
        """``nodes`` are (node id, path) pairs; one VariableInfo each, in order."""
        out: list[VariableInfo] = []
        for start in range(0, len(nodes), BATCH):
            out.extend(await self._batch(nodes[start:start + BATCH]))
        return out

    async def _batch(self, nodes: Sequence[tuple[ua.NodeId, str]]) -> list[VariableInfo]:
        attributes = (ua.AttributeIds.DataType, ua.AttributeIds.UserAccessLevel,
                      ua.AttributeIds.Value)
        params = ua.ReadParameters()
        for node_id, _ in nodes:
            for attribute in attributes:
                params.NodesToRead.append(ua.ReadValueId(NodeId=node_id, AttributeId=attribute))
        results = await asyncio.wait_for(self._client.uaclient.read(params), self._timeout)
        out = []
        for i, (node_id, path) in enumerate(nodes):
            dtype_dv, access_dv, value_dv = results[3 * i:3 * i + 3]
            dtype, access, value = (_good(dv) for dv in (dtype_dv, access_dv, value_dv))
            name, vtype = (await self._type(dtype.Value) if dtype is not None
                           and isinstance(dtype.Value, ua.NodeId) else ("?", None))
            bits = int(access.Value) if access is not None else 0
            out.append(VariableInfo(
                node_id=nsu_form(node_id, self._namespaces), path=path, data_type=name,
                variant_type=vtype,
                readable=bool(bits & ua.AccessLevel.CurrentRead.mask),
                writable=bool(bits & ua.AccessLevel.CurrentWrite.mask),
                value=value.Value if value is not None else None,
                status="Good" if value is not None else status_name(_status(value_dv)),
            ))
        return out

    async def _type(self, dtype: ua.NodeId) -> tuple[str, ua.VariantType | None]:
        if dtype not in self._types:
            node = self._client.get_node(dtype)
            if dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int) \
                    and dtype.Identifier in ua.ObjectIdNames:
                name = ua.ObjectIdNames[dtype.Identifier]
            else:
                name = (await node.read_browse_name()).Name
            try:
                vtype: ua.VariantType | None = await asyncio.wait_for(
                    data_type_to_variant_type(node), self._timeout)
            except (UaError, ValueError):
                vtype = None
            self._types[dtype] = (name, vtype)
        return self._types[dtype]


def _status(dv: ua.DataValue) -> ua.StatusCode:
    """A DataValue without a status is Good."""
    return dv.StatusCode if dv.StatusCode is not None else ua.StatusCode()


def _good(dv: ua.DataValue) -> ua.Variant | None:
    """The variant of a Good DataValue that has one, else None."""
    return dv.Value if _status(dv).is_good() else None


async def walk(
    client: Client, start: ua.NodeId, namespaces: Sequence[str], *, request_timeout: float,
    max_depth: int = 8, max_nodes: int = 10_000, standard: bool = False,
) -> list[VariableInfo]:
    """Every variable below ``start`` (objects and variables followed along hierarchical
    references, each node once), up to ``max_depth`` levels and ``max_nodes`` nodes, each
    browse or read request bounded by ``request_timeout``. Namespace 0's own nodes (the
    Server object) are left out unless ``standard``."""
    seen = {start}
    level: list[tuple[ua.NodeId, str]] = [(start, "")]
    variables: list[tuple[ua.NodeId, str]] = []
    for _ in range(max_depth):
        if not level or len(seen) >= max_nodes:
            break
        following: list[tuple[ua.NodeId, str]] = []
        for parent_path, ref in await _children(client, level, request_timeout):
            node_id = ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex,
                                ref.NodeId.NodeIdType)
            if node_id in seen or len(seen) >= max_nodes or \
                    (node_id.NamespaceIndex == 0 and not standard):
                continue
            seen.add(node_id)
            path = f"{parent_path}/{ref.BrowseName.Name}" if parent_path else ref.BrowseName.Name
            if ref.NodeClass == ua.NodeClass.Variable:
                variables.append((node_id, path))
            following.append((node_id, path))
        level = following
    return await Describer(client, namespaces, request_timeout).describe(variables)


async def _children(
    client: Client, parents: Sequence[tuple[ua.NodeId, str]], request_timeout: float
) -> list[tuple[str, ua.ReferenceDescription]]:
    out: list[tuple[str, ua.ReferenceDescription]] = []
    for start in range(0, len(parents), BATCH):
        batch = parents[start:start + BATCH]
        params = ua.BrowseParameters()
        params.NodesToBrowse = [ua.BrowseDescription(NodeId=node_id, **_FORWARD_TREE)
                                for node_id, _ in batch]
        results = await asyncio.wait_for(client.uaclient.browse(params), request_timeout)
        for (_, path), result in zip(batch, results, strict=True):
            refs = list(result.References)
            point = result.ContinuationPoint
            while point:
                more = await asyncio.wait_for(client.uaclient.browse_next(
                    ua.BrowseNextParameters(ContinuationPoints=[point])), request_timeout)
                refs.extend(more[0].References)
                point = more[0].ContinuationPoint
            out.extend((path, ref) for ref in refs)
    return out
