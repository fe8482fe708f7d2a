"""One OPC UA server of the served plant: the variables of every site device whose endpoint
has this port, values with the variant types the daemon writes, writes captured after the
server applied them.

Quality is explicit in OPC UA, so faults show as status codes: a sensor dropout is
BadSensorFailure, a device whose link is lost (comms_loss) serves BadNoCommunication on
all its variables, NaN is served as NaN on a Float/Double variable and as BadSensorFailure
on an integer one. A restart stops the server (every session drops) and builds it again
on the same port with the same node ids, keeping the setpoints clients wrote.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urlsplit

import structlog
from asyncua import Server, ua
from asyncua.common.callback import CallbackType, ServerItemCallback

from heatd.config import OpcUaDeviceConfig
from heatd.drivers.codec import DataType
from heatd.drivers.opcua.convert import VARIANT_TYPES, to_variant
from heatd.drivers.opcua.namespaces import STANDARD_URI, NodeRef, resolve
from heatd.drivers.opcua.spec import OpcUaPoint
from heatd.hil.pointmap import Binding

log = structlog.get_logger(__name__)

NAMESPACE = "urn:heatd:hil:{}"
SERVER_URI = "urn:freeopcua:python:server"
"""asyncua's own namespace, index 1."""
_BOOL_SENSORS = frozenset({"hp_running", "hp_fault", "hp_lockout", "plc_fallback"})
_INTEGER_SENSORS = frozenset({"hp_trip_code"})
_FLOATS = (ua.VariantType.Float, ua.VariantType.Double)
BAD_NO_COMMUNICATION = ua.StatusCode(ua.UInt32(ua.StatusCodes.BadNoCommunication))
BAD_SENSOR_FAILURE = ua.StatusCode(ua.UInt32(ua.StatusCodes.BadSensorFailure))
BAD_OUT_OF_RANGE = ua.StatusCode(ua.UInt32(ua.StatusCodes.BadOutOfRange))


@dataclass(frozen=True, slots=True)
class NodeWrite:
    """One value a client wrote to a variable of this server."""

    device: str
    node_id: str
    binding: Binding | None
    raw: object
    value: float | bool | int | None


NodeWriteSink = Callable[[NodeWrite], None]


@dataclass(frozen=True, slots=True)
class Variable:
    binding: Binding
    point: OpcUaPoint
    node_id: ua.NodeId
    variant_type: ua.VariantType
    writable: bool


def variant_type_of(binding: Binding, data_type: DataType | None) -> ua.VariantType:
    """The point's data_type if the site gives one, else what the quantity is."""
    if data_type is not None:
        return VARIANT_TYPES[data_type]
    if binding.sensor in _BOOL_SENSORS or binding.actuator in ("hp_enable", "hp_reset"):
        return ua.VariantType.Boolean
    if binding.sensor in _INTEGER_SENSORS or binding.actuator == "heartbeat":
        return ua.VariantType.UInt32
    return ua.VariantType.Double


def data_value(var: Variable, value: float | None, now: ua.DateTime) -> ua.DataValue:
    """What the variable serves for an engineering value (None: the sensor gave nothing)."""
    if value is None or (math.isnan(value) and var.variant_type not in _FLOATS):
        return ua.DataValue(StatusCode=BAD_SENSOR_FAILURE, SourceTimestamp=now,
                            ServerTimestamp=now)
    try:
        variant = to_variant(var.point, var.variant_type,
                             value >= 0.5 if var.variant_type is ua.VariantType.Boolean else value)
    except ValueError:
        return ua.DataValue(StatusCode=BAD_OUT_OF_RANGE, SourceTimestamp=now,
                            ServerTimestamp=now)
    return ua.DataValue(variant, SourceTimestamp=now, ServerTimestamp=now)


def namespace_array(devices: Iterable[OpcUaDeviceConfig]) -> tuple[str, ...]:
    """The namespaces the served devices' node ids need, in the order they are registered:
    each index a node id names (with the URI the site declares for it, else a made-up
    one), then each URI named by ``nsu=`` that is not there yet."""
    refs = [NodeRef.parse(p.node_id) for d in devices for p in d.points.values()]
    declared = {i: uri for d in devices for i, uri in d.namespaces.items()}
    highest = max([r.index for r in refs if r.uri is None] + list(declared), default=1)
    array = [STANDARD_URI, SERVER_URI]
    array += [declared.get(i, NAMESPACE.format(i)) for i in range(2, highest + 1)]
    array += dict.fromkeys(r.uri for r in refs if r.uri is not None and r.uri not in array)
    return tuple(array)


class OpcUaEndpoint:
    """An asyncua server on 127.0.0.1 at the port (and path) of the devices' endpoint."""

    def __init__(self, endpoint: str, devices: Mapping[str, OpcUaDeviceConfig],
                 bindings: Mapping[str, Binding], on_write: NodeWriteSink,
                 refresh_s: float = 1.0) -> None:
        parts = urlsplit(endpoint)
        self.port = parts.port or 4840
        self.url = f"opc.tcp://127.0.0.1:{self.port}{parts.path}"
        self.devices = dict(devices)
        self.offline: set[str] = set()
        self._on_write = on_write
        self._refresh_s = refresh_s
        self._server: Server | None = None
        self.variables: list[Variable] = []
        self.namespaces = namespace_array(self.devices.values())
        for name, device in self.devices.items():
            for pname, point in device.points.items():
                binding = bindings[f"{name}.{pname}"]
                vtype = variant_type_of(binding, point.data_type)
                spec = OpcUaPoint(pname, point.node_id, None, point.scale, point.offset)
                ref = spec.ref
                node_id = ua.NodeId.from_string(ref.at(resolve(ref, self.namespaces, {})))
                self.variables.append(Variable(binding, spec, node_id, vtype, point.writable))
        self._by_node = {v.node_id: v for v in self.variables}
        self._served: dict[ua.NodeId, tuple[object, int, float]] = {}

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def where(self) -> str:
        return f"OPC UA {self.url}"

    def describe(self) -> str:
        devices = ", ".join(f"{name} ({len(d.points)} points)" for name, d in self.devices.items())
        return f"{self.where}: {devices}"

    async def start(self, outputs: Mapping[str, float | bool | int | None]) -> None:
        """Build the address space and listen; writable variables start at `outputs`."""
        logging.getLogger("asyncua").setLevel(logging.CRITICAL)
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name("heatd plant simulator")
        for uri in self.namespaces[2:]:
            await server.register_namespace(uri)
        now = ua.DateTime.now(UTC)
        home = max(len(self.namespaces) - 1, 1)
        folders = {name: await server.nodes.objects.add_folder(home, name)
                   for name in self.devices}
        for var in self.variables:
            start = outputs.get(var.binding.ref) if var.binding.actuator else None
            dv = data_value(var, 0.0 if start is None else float(start), now)
            initial = dv.Value if dv.Value is not None else ua.Variant(0.0, var.variant_type)
            node = await folders[var.binding.device].add_variable(
                var.node_id, var.binding.point, initial.Value, var.variant_type)
            if var.writable:
                await node.set_writable()
        server.subscribe_server_callback(CallbackType.PostWrite, self._post_write)
        await server.start()
        self._served.clear()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()

    def set_offline(self, device: str, offline: bool) -> None:
        (self.offline.add if offline else self.offline.discard)(device)

    async def update(self, values: Mapping[str, float | None], wall: float) -> None:
        """Serve the plant's values; unchanged ones are re-stamped every refresh_s."""
        server = self._server
        if server is None:
            return
        now: ua.DateTime | None = None
        for var in self.variables:
            ref = var.binding.ref
            if var.binding.actuator is not None:
                continue  # setpoints hold what clients wrote, also while the link is down
            if var.binding.device in self.offline:
                key: object = "offline"
            elif ref in values:
                key = values[ref]
                if key is not None and math.isnan(key):
                    key = "nan"
            else:
                continue
            status = 1 if var.binding.device in self.offline else 0
            last = self._served.get(var.node_id)
            if last is not None and last[0] == key and last[1] == status and \
                    wall - last[2] < self._refresh_s:
                continue
            now = now or ua.DateTime.now(UTC)
            if status:
                dv = ua.DataValue(StatusCode=BAD_NO_COMMUNICATION, SourceTimestamp=now,
                                  ServerTimestamp=now)
            else:
                dv = data_value(var, values[ref], now)
            self._served[var.node_id] = (key, status, wall)
            await server.write_attribute_value(var.node_id, dv)

    async def _post_write(self, event: ServerItemCallback, _service: object) -> None:
        if not event.is_external:  # the server's own housekeeping (ServerStatus etc.)
            return
        for item, result in zip(event.request_params.NodesToWrite, event.response_params,
                                strict=False):
            if item.AttributeId != ua.AttributeIds.Value or not result.is_good():
                continue
            var = self._by_node.get(item.NodeId)
            raw = item.Value.Value.Value if item.Value and item.Value.Value else None
            device = var.binding.device if var else ""
            value: float | bool | int | None = None
            if var is not None and isinstance(raw, bool | int | float):
                p = var.point
                value = raw if isinstance(raw, bool) or (p.scale == 1.0 and p.offset == 0.0) \
                    else raw * p.scale + p.offset
            self._on_write(NodeWrite(device, item.NodeId.to_string(),
                                     var.binding if var else None, raw, value))
