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

The NamespaceArray (i=2255) is watched for the whole session, not only read at connect.
OPC UA lets a server add namespaces while sessions are open, and PLC runtimes that load a
new application or companion model may also reorder them (which Part 5 forbids, but it
happens); a node id resolved against the old array then names another variable. Model
change events and the UrisVersion property that would announce it are optional, and
common clients read the array only when a session opens. So the driver looks where it
costs least and shuts the window where a stale index does harm:

- a polled read asks for i=2255 in the same Read request as its points: one more item,
  no extra round trip, and the array and the values come from one service call, so a
  value read by a stale index is never returned: the driver resolves again and reads again;
- a subscription carries i=2255 as one more monitored item, which the server reports
  only when it changes (no traffic otherwise): values in the publish that announces a
  change are dropped, and points whose node id changed go bad until their subscription
  is made again;
- a write reads i=2255 just before it (one small Read): OPC UA has no conditional write,
  and a write by a stale index moves another actuator. Only a change in the round trip
  between that Read and the Write can slip through; the read-back after a write sees it.

Whichever sees a change first resolves every node id again, synchronously, so no read or
write picks a node id between the old resolution and the new one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif, Subscription
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from heatd.drivers.backoff import Backoff
from heatd.drivers.base import ReadingSink, WriteError
from heatd.drivers.cancel import cancel_all
from heatd.drivers.opcua.browse import Describer, VariableInfo, walk
from heatd.drivers.opcua.convert import VARIANT_TYPES, status_name, to_reading, to_variant
from heatd.drivers.opcua.failures import classify
from heatd.drivers.opcua.namespaces import moved
from heatd.drivers.opcua.resolver import NAMESPACE_ARRAY, NodeIds, namespace_array
from heatd.drivers.opcua.security import apply_security
from heatd.drivers.opcua.spec import OpcUaPoint, OpcUaSettings
from heatd.drivers.reading import Reading, Value

_log = logging.getLogger(__name__)

DISCONNECTED = "disconnected"
NAMESPACES_CHANGING = "namespace array changed"
"""Why a point whose node id moved has no value until it is read or subscribed again."""
_RESOLVE_ATTEMPTS = 3
"""Reads and writes that find the array changed resolve again and retry this often."""
SESSION_TIMEOUT_MS = 60_000
"""Short enough that a session orphaned by a dropped link is freed on the server within a
minute (small PLCs allow only a few sessions); the watchdog keeps a live one busy."""

_REQUEST_ERRORS = (asyncio.TimeoutError, ConnectionError, OSError, UaError)

EventSink = Callable[[str, dict[str, object]], None]
"""Called with an event name and its details, e.g. ``namespaces_changed``."""


@dataclass(eq=False)
class _Group:
    """Points subscribed together, with the sink that receives their readings, and the
    subscription and handler that deliver them on the current connection."""

    points: tuple[OpcUaPoint, ...]
    sink: ReadingSink
    interval: float
    by_node: dict[ua.NodeId, list[OpcUaPoint]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    subscription: Subscription | None = None
    handler: _Handler | None = None

    def bind(self, node_ids: NodeIds) -> dict[str, str]:
        """Map these node ids to points; returns the points that have none, and why."""
        found, self.refused = node_ids.split(self.points)
        self.by_node = {}
        for point, node_id in found:
            self.by_node.setdefault(node_id, []).append(point)
        return self.refused

    def rebind(self, node_ids: NodeIds, now: float) -> bool:
        """Bind to a NamespaceArray seen during the session; whether the subscription
        must be made again. If so its handler retires and every point whose node id
        changed goes bad (refused ones with the reason) until the new one delivers."""
        by_node, refused = self.by_node, self.refused
        self.bind(node_ids)
        if self.by_node == by_node and self.refused == refused:
            return False
        if self.handler is not None:
            self.handler.retired = True
        was = {point.name: node_id for node_id, points in by_node.items() for point in points}
        for node_id, points in self.by_node.items():
            self.emit_bad(NAMESPACES_CHANGING, now,
                          [point for point in points if was.get(point.name) != node_id])
        for name, reason in self.refused.items():
            self.sink(name, Reading.bad(reason, now))
        return True

    def emit_bad(self, reason: str, ts: float, points: Sequence[OpcUaPoint] | None = None) -> None:
        for point in self.points if points is None else points:
            self.sink(point.name, Reading.bad(reason, ts))


class _Handler:
    """asyncua subscription handler: turns notifications into readings for one group and
    hands NamespaceArray notifications to ``on_array``. A retired handler (its group was
    bound to another array since, or its connection is gone) drops whatever its
    subscription still delivers.

    Readings wait for the end of the event-loop turn: asyncua schedules one call per
    notification of a publish before running any, so a NamespaceArray change anywhere in
    the same publish, even after them, retires the handler before values sampled by
    stale node ids reach the sink.
    """

    def __init__(
        self, group: _Group, clock: Callable[[], float],
        on_array: Callable[[tuple[str, ...]], None],
    ):
        self._group = group
        self._clock = clock
        self._on_array = on_array
        self._pending: list[tuple[str, Reading]] = []
        self.retired = False

    def datachange_notification(self, node: Node, _val: object, data: DataChangeNotif) -> None:
        if self.retired:
            return
        value = data.monitored_item.Value
        if node.nodeid == NAMESPACE_ARRAY:
            try:
                self._on_array(namespace_array(value))
            except ValueError as exc:
                _log.warning("watching the namespace array: %s", exc)
            return
        received = self._clock()
        readings = [(point.name, to_reading(point, value, received))
                    for point in self._group.by_node.get(node.nodeid, ())]
        if readings and not self._pending:
            asyncio.get_running_loop().call_soon(self._deliver)
        self._pending += readings

    def _deliver(self) -> None:
        pending, self._pending = self._pending, []
        if not self.retired:
            for name, reading in pending:
                self._group.sink(name, reading)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        """The server ended the subscription (or the link died): its values are not fresh."""
        if not self.retired and not status.Status.is_good():
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
        """DataTypes read from the server, for the node ids of the current array."""
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._resubscribing: set[asyncio.Task[None]] = set()
        self._closing = False
        self.connects = 0
        """Connections made so far: a new one means the server may have restarted."""
        self._node_ids: NodeIds | None = None
        self.namespaces: tuple[str, ...] | None = None
        """The server's NamespaceArray as last seen: at connect or changed since."""
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
        await cancel_all(list(self._resubscribing))
        if self._task is not None:
            await cancel_all([self._task])  # cancelled again if a reply swallowed the first
            self._task = None

    # -- reading and writing -------------------------------------------------------

    async def read(self, points: Sequence[OpcUaPoint]) -> dict[str, Reading]:
        """Read all points, and the NamespaceArray, in one Read service call; never
        raises. Values read against an array the server no longer has are dropped: the
        node ids are resolved again and the points read again."""
        if not points:
            return {}
        for _ in range(_RESOLVE_ATTEMPTS):
            client = self._connected_client()
            node_ids = self._node_ids
            if client is None or node_ids is None:
                return self._all_bad(points, DISCONNECTED)
            found, refused = node_ids.split(points)
            array, readings = await self._read_values(client, found)
            if array is None or array == node_ids.array:
                now = self._clock()
                out = {name: Reading.bad(reason, now) for name, reason in refused.items()}
                out.update(readings)
                return out
            self._adopt(array)
        return self._all_bad(points, NAMESPACES_CHANGING)

    async def _read_values(
        self, client: Client, found: Sequence[tuple[OpcUaPoint, ua.NodeId]]
    ) -> tuple[tuple[str, ...] | None, dict[str, Reading]]:
        """The NamespaceArray and the points' readings from one Read; no array (None)
        when the request failed, and then every reading says why."""
        points = [point for point, _ in found]
        params = ua.ReadParameters(TimestampsToReturn=ua.TimestampsToReturn.Both)
        for node_id in [NAMESPACE_ARRAY, *(node_id for _, node_id in found)]:
            params.NodesToRead.append(
                ua.ReadValueId(NodeId=node_id, AttributeId=ua.AttributeIds.Value)
            )
        try:
            results = await asyncio.wait_for(client.uaclient.read(params), self.settings.timeout)
        except Exception as exc:  # read never raises: every failure becomes a reason
            self._request_error = self._failure_reason(exc)
            return None, self._all_bad(points, self._request_error)
        self._answering = True
        self._request_error = None
        received = self._clock()
        if len(results) != len(points) + 1:
            return None, self._all_bad(
                points, f"server returned {len(results) - 1} of {len(points)} values")
        try:
            array = namespace_array(results[0])
        except ValueError as exc:
            return None, self._all_bad(points, str(exc))
        return array, {p.name: to_reading(p, dv, received)
                       for p, dv in zip(points, results[1:], strict=True)}

    async def write(self, point: OpcUaPoint, value: Value, *, urgent: bool = False) -> None:
        """Write with the variable's own variant type; raises WriteError. ``urgent`` is
        accepted for the Device protocol: each OPC UA request has its own session slot.

        The NamespaceArray is read just before the Write and the Write goes out only if
        the node id was resolved against that very array; otherwise every node id is
        resolved again first, as a write queued behind a change must not use the old one.
        """
        for _ in range(_RESOLVE_ATTEMPTS):
            client = self._connected_client()
            node_ids, types = self._node_ids, self._variant_types
            if client is None or node_ids is None:
                raise WriteError(f"{self.name}/{point.name}: {DISCONNECTED}")
            try:
                node_id = node_ids.of(point)
                variant = to_variant(
                    point, await self._variant_type(client, point, node_id, types), value)
                array = await self._read_array(client)
                if array != node_ids.array or self._node_ids is not node_ids:
                    self._adopt(array)
                    continue
                params = ua.WriteParameters()
                params.NodesToWrite.append(ua.WriteValue(
                    NodeId=node_id, AttributeId=ua.AttributeIds.Value, Value=ua.DataValue(variant)
                ))
                results = await asyncio.wait_for(
                    client.uaclient.write(params), self.settings.timeout)
            except ValueError as exc:
                raise WriteError(f"{self.name}/{point.name}: {exc}") from exc
            except Exception as exc:
                raise WriteError(f"{self.name}/{point.name}: {self._failure_reason(exc)}") from exc
            self._answering = True
            if not results[0].is_good():
                raise WriteError(f"{self.name}/{point.name}: {status_name(results[0])}")
            return
        raise WriteError(f"{self.name}/{point.name}: {NAMESPACES_CHANGING}")

    async def _read_array(self, client: Client) -> tuple[str, ...]:
        """The server's NamespaceArray now; raises ValueError when it is unreadable."""
        params = ua.ReadParameters()
        params.NodesToRead.append(
            ua.ReadValueId(NodeId=NAMESPACE_ARRAY, AttributeId=ua.AttributeIds.Value))
        results = await asyncio.wait_for(client.uaclient.read(params), self.settings.timeout)
        return namespace_array(results[0])

    async def _variant_type(
        self, client: Client, point: OpcUaPoint, node_id: ua.NodeId,
        types: dict[ua.NodeId, ua.VariantType],
    ) -> ua.VariantType:
        """``types`` is the cache of the array ``node_id`` was resolved against."""
        if point.data_type is not None:
            return VARIANT_TYPES[point.data_type]
        if node_id not in types:
            node = client.get_node(node_id)
            types[node_id] = await asyncio.wait_for(
                node.read_data_type_as_variant_type(), self.settings.timeout
            )
        return types[node_id]

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
        """Create the group's subscription on this connection, with the NamespaceArray
        as one more item even when every point is refused (a namespace may appear);
        refused items go bad."""
        timeout = self.settings.timeout
        interval_ms = group.interval * 1000.0
        assert self._node_ids is not None
        if group.handler is not None:
            group.handler.retired = True
        refused = group.bind(self._node_ids)
        now = self._clock()
        for name, reason in refused.items():
            group.sink(name, Reading.bad(reason, now))
        node_ids = list(group.by_node)
        handler = group.handler = _Handler(group, self._clock, self._adopt)
        group.subscription = await asyncio.wait_for(
            client.create_subscription(interval_ms, handler), timeout
        )
        watch, *results = await asyncio.wait_for(
            group.subscription.subscribe_data_change(
                [client.get_node(n) for n in [NAMESPACE_ARRAY, *node_ids]],
                sampling_interval=ua.Duration(interval_ms),
            ),
            timeout,
        )
        if isinstance(watch, ua.StatusCode):
            _log.warning("%s: the server refuses to report NamespaceArray changes: %s",
                         self.name, status_name(watch))
        if handler.retired:
            return  # the array changed meanwhile: a resubscription is on its way
        now = self._clock()
        for node_id, result in zip(node_ids, results, strict=True):
            if isinstance(result, ua.StatusCode):
                group.emit_bad(status_name(result), now, group.by_node[node_id])

    async def _resubscribe(self, client: Client, group: _Group) -> None:
        """Make the group's subscription again after its node ids changed mid-session."""
        async with self._lock:
            current = group.handler
            if client is not self._connected_client() or (current and not current.retired):
                return  # a reconnect, or an earlier resubscription, has made it already
            old, group.subscription = group.subscription, None
            try:
                if old is not None:
                    await asyncio.wait_for(old.delete(), self.settings.timeout)
                await self._activate(client, group)
            except _REQUEST_ERRORS as exc:
                _log.warning("%s: subscribing again failed (%r); reconnecting", self.name, exc)
                client.uaclient.notify_transport_lost()

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
        """Resolve every node id anew against the server's NamespaceArray at connect."""
        self._resolve(tuple(await asyncio.wait_for(client.get_namespace_array(),
                                                   self.settings.timeout)))

    def _resolve(self, array: tuple[str, ...]) -> None:
        """Resolve every node id against ``array``; an array that differs from the one
        last seen (a restart, a firmware update, a change mid-session) is reported once."""
        self._node_ids = NodeIds(array, self.settings.namespaces)
        self._variant_types = {}
        before, self.namespaces = self.namespaces, array
        if before is not None and before != array:
            change = moved(before, array)
            _log.warning("%s: the server's namespace array changed; node ids resolved "
                         "again: %s", self.name, change)
            if self.on_event is not None:
                self.on_event("namespaces_changed", {"moved": change})

    def _adopt(self, array: tuple[str, ...]) -> None:
        """Take up an array seen during the session, unless it is the one in use: resolve
        again (synchronously, so nothing reads or writes in between), mark points bad
        whose node id changed and make their subscriptions again."""
        if self._node_ids is None or self._node_ids.array == array:
            return
        self._resolve(array)
        client = self._connected_client()
        now = self._clock()
        for group in self._groups:
            if group.rebind(self._node_ids, now) and client is not None:
                task = asyncio.create_task(self._resubscribe(client, group),
                                           name=f"opcua-{self.name}-resubscribe")
                self._resubscribing.add(task)
                task.add_done_callback(self._resubscribing.discard)

    async def _drop(self, client: Client) -> None:
        """Forget the connection, tell every sink, and release the client's tasks."""
        self._client = None
        self._answering = False
        for group in self._groups:
            if group.handler is not None:
                group.handler.retired = True  # nothing it still holds is current
        if not self._closing:
            now = self._clock()
            for group in self._groups:
                group.emit_bad(DISCONNECTED, now)
        try:
            await asyncio.wait_for(client.disconnect(), self.settings.timeout)
        except Exception as exc:  # the link is already gone; closing is best effort
            _log.debug("%s: disconnect: %r", self.name, exc)
