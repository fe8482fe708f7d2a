"""One OPC UA server as a heatd device: polled reads, writes and data-change subscriptions
over a connection that a supervisor task keeps alive.

The supervisor owns the connection, not asyncua's auto-reconnect: asyncua only
reconnects after a first successful connect (a gateway that boots before its PLC would
never connect), starts its backoff at a fixed 1 s without jitter, and after a session
transfer sends no initial values, so a point marked "disconnected" could stay bad until
it next changes. Here every connection is a fresh ``Client``; on connect every
subscription group is created again, and the server sends each item's current value.

Nothing here blocks a caller for long: reads and writes are bounded by ``timeout`` and
answer at once while there is no connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from heatd.drivers.backoff import Backoff
from heatd.drivers.base import ReadingSink, WriteError
from heatd.drivers.opcua.browse import Describer, VariableInfo, walk
from heatd.drivers.opcua.convert import VARIANT_TYPES, status_name, to_reading, to_variant
from heatd.drivers.opcua.failures import classify
from heatd.drivers.opcua.namespaces import changed_uris
from heatd.drivers.opcua.resolver import NodeIds
from heatd.drivers.opcua.security import apply_security
from heatd.drivers.opcua.spec import OpcUaPoint, OpcUaSettings
from heatd.drivers.reading import Reading, Value

_log = logging.getLogger(__name__)

DISCONNECTED = "disconnected"
SESSION_TIMEOUT_MS = 60_000
"""Short enough that a session orphaned by a dropped link is freed on the server within a
minute (small PLCs allow only a few sessions); the watchdog keeps a live one busy."""

_REQUEST_ERRORS = (asyncio.TimeoutError, ConnectionError, OSError, UaError)

EventSink = Callable[[str, dict[str, object]], None]
"""Called with an event name and its details, e.g. ``namespaces_changed``."""


@dataclass(eq=False)
class _Group:
    """Points subscribed together, with the sink that receives their readings."""

    points: tuple[OpcUaPoint, ...]
    sink: ReadingSink
    interval: float
    by_node: dict[ua.NodeId, list[OpcUaPoint]] = field(default_factory=dict)

    def bind(self, node_ids: NodeIds) -> dict[str, str]:
        """Map this connection's node ids to points; returns the points that have none."""
        found, refused = node_ids.split(self.points)
        self.by_node = {}
        for point, node_id in found:
            self.by_node.setdefault(node_id, []).append(point)
        return refused

    def emit_bad(self, reason: str, ts: float, points: Sequence[OpcUaPoint] | None = None) -> None:
        for point in self.points if points is None else points:
            self.sink(point.name, Reading.bad(reason, ts))


class _Handler:
    """asyncua subscription handler: turns notifications into readings for one group."""

    def __init__(self, group: _Group, clock: Callable[[], float]):
        self._group = group
        self._clock = clock

    def datachange_notification(self, node: Node, _val: object, data: DataChangeNotif) -> None:
        received = self._clock()
        for point in self._group.by_node.get(node.nodeid, ()):
            self._group.sink(point.name, to_reading(point, data.monitored_item.Value, received))

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        """The server ended the subscription (or the link died): its values are not fresh."""
        if not status.Status.is_good():
            self._group.emit_bad(status_name(status.Status), self._clock())


class OpcUaDevice:
    """A :class:`heatd.drivers.base.Device` for one OPC UA server."""

    def __init__(
        self, name: str, settings: OpcUaSettings, *, clock: Callable[[], float] = time.time
    ):
        self.name = name
        self.settings = settings
        self._clock = clock
        self._client: Client | None = None
        self._answering = False
        self._groups: list[_Group] = []
        self._variant_types: dict[ua.NodeId, ua.VariantType] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.connects = 0
        """Connections made so far: a new one means the server may have restarted."""
        self._node_ids: NodeIds | None = None
        self.namespaces: tuple[str, ...] | None = None
        """The server's NamespaceArray at the latest connect."""
        self.on_event: EventSink | None = None
        self._connect_error: str | None = None
        self._request_error: str | None = None

    @property
    def session(self) -> int:
        """Changes whenever the outputs may have been lost (a new connection)."""
        return self.connects

    @property
    def online(self) -> bool:
        client = self._client
        return client is not None and client.state is UaClientState.CONNECTED and self._answering

    @property
    def last_error(self) -> str | None:
        """Why the server is not answering: the latest failed connect as the client
        raised it (refused, timeout, a security or certificate status), else the latest
        failed request; None while connected and answering."""
        if self._connected_client() is None:
            return self._connect_error or DISCONNECTED
        return self._request_error

    async def start(self) -> None:
        if self._task is None:
            if self.settings.secured and self.settings.trust == "any":
                _log.warning("%s: trust: any: INSECURE, any server certificate is accepted "
                             "on %s", self.name, self.settings.endpoint)
            self._closing = False
            self._task = asyncio.create_task(self._supervise(), name=f"opcua-{self.name}")

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- reading and writing -------------------------------------------------------

    async def read(self, points: Sequence[OpcUaPoint]) -> dict[str, Reading]:
        """Read all points in one Read service call; never raises."""
        if not points:
            return {}
        client = self._connected_client()
        if client is None or self._node_ids is None:
            return self._all_bad(points, DISCONNECTED)
        found, refused = self._node_ids.split(points)
        now = self._clock()
        out = {name: Reading.bad(reason, now) for name, reason in refused.items()}
        if found:
            out.update(await self._read_values(client, found))
        return out

    async def _read_values(
        self, client: Client, found: Sequence[tuple[OpcUaPoint, ua.NodeId]]
    ) -> dict[str, Reading]:
        points = [point for point, _ in found]
        params = ua.ReadParameters(TimestampsToReturn=ua.TimestampsToReturn.Both)
        for _, node_id in found:
            params.NodesToRead.append(
                ua.ReadValueId(NodeId=node_id, AttributeId=ua.AttributeIds.Value)
            )
        try:
            results = await asyncio.wait_for(client.uaclient.read(params), self.settings.timeout)
        except Exception as exc:  # read never raises: every failure becomes a reason
            self._request_error = self._failure_reason(exc)
            return self._all_bad(points, self._request_error)
        self._answering = True
        self._request_error = None
        received = self._clock()
        if len(results) != len(points):
            return self._all_bad(points, f"server returned {len(results)} of {len(points)} values")
        return {p.name: to_reading(p, dv, received) for p, dv in zip(points, results, strict=True)}

    async def write(self, point: OpcUaPoint, value: Value, *, urgent: bool = False) -> None:
        """Write with the variable's own variant type; raises WriteError. ``urgent`` is
        accepted for the Device protocol: each OPC UA request has its own session slot."""
        client = self._connected_client()
        if client is None or self._node_ids is None:
            raise WriteError(f"{self.name}/{point.name}: {DISCONNECTED}")
        try:
            node_id = self._node_ids.of(point)
            variant_type = await self._variant_type(client, point, node_id)
            variant = to_variant(point, variant_type, value)
            params = ua.WriteParameters()
            params.NodesToWrite.append(
                ua.WriteValue(
                    NodeId=node_id, AttributeId=ua.AttributeIds.Value, Value=ua.DataValue(variant)
                )
            )
            results = await asyncio.wait_for(client.uaclient.write(params), self.settings.timeout)
        except ValueError as exc:
            raise WriteError(f"{self.name}/{point.name}: {exc}") from exc
        except Exception as exc:
            raise WriteError(f"{self.name}/{point.name}: {self._failure_reason(exc)}") from exc
        self._answering = True
        if not results[0].is_good():
            raise WriteError(f"{self.name}/{point.name}: {status_name(results[0])}")

    async def _variant_type(
        self, client: Client, point: OpcUaPoint, node_id: ua.NodeId
    ) -> ua.VariantType:
        if point.data_type is not None:
            return VARIANT_TYPES[point.data_type]
        if node_id not in self._variant_types:
            node = client.get_node(node_id)
            self._variant_types[node_id] = await asyncio.wait_for(
                node.read_data_type_as_variant_type(), self.settings.timeout
            )
        return self._variant_types[node_id]

    # -- commissioning ---------------------------------------------------------------

    async def describe(self, points: Sequence[OpcUaPoint]) -> dict[str, VariableInfo | str]:
        """DataType, access and raw value of each point's variable as the server has
        them, or why there are none; raises ConnectionError while disconnected."""
        client = self._connected_client()
        if client is None or self._node_ids is None or self.namespaces is None:
            raise ConnectionError(self.last_error or DISCONNECTED)
        found, refused = self._node_ids.split(points)
        described = await Describer(client, self.namespaces, self.settings.timeout).describe(
            [(node_id, point.name) for point, node_id in found])
        out: dict[str, VariableInfo | str] = dict(refused)
        out.update({info.path: info for info in described})
        return out

    async def browse(self, start: str | None = None, **limits: int) -> list[VariableInfo]:
        """The variables below ``start`` (a node id as a site file writes it; default the
        Objects folder); raises ConnectionError while disconnected and ValueError for a
        start node whose namespace the server lacks."""
        client = self._connected_client()
        if client is None or self._node_ids is None or self.namespaces is None:
            raise ConnectionError(self.last_error or DISCONNECTED)
        node = (self._node_ids.of_text(start) if start
                else ua.NodeId(ua.Int32(ua.ObjectIds.ObjectsFolder)))
        return await walk(client, node, self.namespaces, request_timeout=self.settings.timeout,
                          standard=start is not None, **limits)

    def _connected_client(self) -> Client | None:
        client = self._client
        if client is None or client.state is not UaClientState.CONNECTED:
            return None
        return client

    def _failure_reason(self, exc: BaseException) -> str:
        """Name a failed request; a timeout also marks the device as not answering."""
        if isinstance(exc, asyncio.TimeoutError):
            self._answering = False
            return "timeout"
        if isinstance(exc, ConnectionError | OSError):
            return DISCONNECTED
        if isinstance(exc, UaStatusCodeError):
            return status_name(ua.StatusCode(ua.UInt32(exc.code)))
        return f"error: {exc!r}"

    def _all_bad(self, points: Sequence[OpcUaPoint], reason: str) -> dict[str, Reading]:
        now = self._clock()
        return {p.name: Reading.bad(reason, now) for p in points}

    # -- subscriptions -------------------------------------------------------------

    async def subscribe(
        self,
        points: Sequence[OpcUaPoint],
        sink: ReadingSink,
        publishing_interval: float | None = None,
    ) -> None:
        """Deliver every change of ``points`` to ``sink``, across reconnects, until close.

        The sink also gets a bad reading for each point whenever its values stop being
        current: ``disconnected``, a status such as ``BadNodeIdUnknown`` when the server
        refuses the item, or the status the server ends the subscription with.
        """
        interval = publishing_interval or self.settings.publishing_interval
        group = _Group(tuple(points), sink, interval)
        async with self._lock:
            self._groups.append(group)
            client = self._connected_client()
            if client is None:
                group.emit_bad(DISCONNECTED, self._clock())
                return
            try:
                await self._activate(client, group)
            except _REQUEST_ERRORS as exc:
                _log.warning("%s: subscribing failed (%r); reconnecting", self.name, exc)
                client.uaclient.notify_transport_lost()

    async def _activate(self, client: Client, group: _Group) -> None:
        """Create the group's subscription on this connection; refused items go bad."""
        timeout = self.settings.timeout
        interval_ms = group.interval * 1000.0
        assert self._node_ids is not None
        refused = group.bind(self._node_ids)
        now = self._clock()
        for name, reason in refused.items():
            group.sink(name, Reading.bad(reason, now))
        node_ids = list(group.by_node)
        if not node_ids:
            return
        subscription = await asyncio.wait_for(
            client.create_subscription(interval_ms, _Handler(group, self._clock)), timeout
        )
        results = await asyncio.wait_for(
            subscription.subscribe_data_change(
                [client.get_node(n) for n in node_ids], sampling_interval=ua.Duration(interval_ms)
            ),
            timeout,
        )
        now = self._clock()
        for node_id, result in zip(node_ids, results, strict=True):
            if isinstance(result, ua.StatusCode):
                group.emit_bad(status_name(result), now, group.by_node[node_id])

    # -- connection supervision ----------------------------------------------------

    async def _supervise(self) -> None:
        backoff = Backoff(self.settings.reconnect_min, self.settings.reconnect_max)
        while True:
            client = await self._connect()
            if client is not None:
                try:
                    await self._serve(client, backoff)
                finally:
                    await self._drop(client)
            await asyncio.sleep(backoff.next())

    async def _connect(self) -> Client | None:
        settings = self.settings
        client = Client(
            settings.endpoint, timeout=settings.timeout, watchdog_intervall=settings.timeout
        )
        client.session_timeout = SESSION_TIMEOUT_MS

        async def sequence() -> None:
            await apply_security(client, settings)
            await client.connect()

        try:
            await asyncio.wait_for(sequence(), settings.connect_timeout)
        except asyncio.CancelledError:
            client.uaclient.request_disconnect()  # stops any loop connect() had started
            client.disconnect_socket()
            raise
        except Exception as exc:
            error = str(classify(exc, secured=settings.secured))
            level = logging.INFO if error == self._connect_error else logging.WARNING
            _log.log(level, "%s: connect to %s failed: %s (%r)", self.name, settings.endpoint,
                     error, exc)
            self._connect_error = error
            client.disconnect_socket()
            return None
        self._connect_error = self._request_error = None
        _log.info("%s: connected to %s", self.name, settings.endpoint)
        return client

    async def _serve(self, client: Client, backoff: Backoff) -> None:
        """Publish the connection, create the subscriptions, wait until the link is lost.

        The backoff restarts only once the subscriptions exist, so a server that accepts
        sessions but refuses subscriptions is not hammered at the shortest delay.
        """
        async with self._lock:
            try:
                await self._learn_namespaces(client)
            except _REQUEST_ERRORS as exc:
                _log.warning("%s: reading the namespace array failed: %r", self.name, exc)
                return
            self._client = client
            self._answering = True
            self.connects += 1
            try:
                for group in self._groups:
                    await self._activate(client, group)
            except _REQUEST_ERRORS as exc:
                _log.warning("%s: creating subscriptions failed: %r", self.name, exc)
                return
        backoff.reset()
        async with client.subscribe_state() as changes:
            while client.state is UaClientState.CONNECTED:
                await changes.next_change()
        _log.warning("%s: connection to %s lost", self.name, self.settings.endpoint)

    async def _learn_namespaces(self, client: Client) -> None:
        """Resolve every node id anew against the server's NamespaceArray; a server whose
        array changed since the last connect (a restart, a firmware update) is reported."""
        array = tuple(await asyncio.wait_for(client.get_namespace_array(), self.settings.timeout))
        self._variant_types.clear()
        self._node_ids = NodeIds(array, self.settings.namespaces)
        before, self.namespaces = self.namespaces, array
        if before is not None and before != array:
            moved = {uri: {"was": old, "now": new}
                     for uri, (old, new) in sorted(changed_uris(before, array).items())}
            _log.warning("%s: the server's namespace array changed; node ids resolved "
                         "again: %s", self.name, moved)
            if self.on_event is not None:
                self.on_event("namespaces_changed", {"moved": moved})

    async def _drop(self, client: Client) -> None:
        """Forget the connection, tell every sink, and release the client's tasks."""
        self._client = None
        self._answering = False
        if not self._closing:
            now = self._clock()
            for group in self._groups:
                group.emit_bad(DISCONNECTED, now)
        try:
            await asyncio.wait_for(client.disconnect(), self.settings.timeout)
        except Exception as exc:  # the link is already gone; closing is best effort
            _log.debug("%s: disconnect: %r", self.name, exc)
