"""The site model: one YAML file describes devices, points, poll groups and role bindings.

The models are strict (unknown keys are errors; validated in JSON strict mode, so a string
is never coerced into a number, and NaN or infinity is no number at all) because a typo in
a site file must stop the daemon before it starts, not make it read the wrong register.
Loading, and error reporting with file and line, live in ``heatd.config_loader``; this
module only says what a valid site is.
"""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from heatd.billing.contracts import Contracts
from heatd.control.params import ControlParams
from heatd.drivers.codec import FLOAT_TYPES, RAW_LIMITS, ByteOrder, DataType, register_count
from heatd.drivers.modbus.addresses import Forbidden, Table
from heatd.drivers.opcua.nodeid import check_node_id
from heatd.hosts import check_host
from heatd.mqtt.settings import MqttSettings

ID_PATTERN = r"^[a-z0-9_-]+$"
Identifier = Annotated[str, Field(pattern=ID_PATTERN, min_length=1, max_length=64)]
Seconds = Annotated[float, Field(gt=0)]
WriteFunction = Literal["fc6", "fc16"]
"""How a holding register is written: ``fc6`` sends one register with function 6 (Write
Single Register) and several with 16; ``fc16`` sends every write with function 16 (Write
Multiple Registers), for devices that refuse function 6."""


Wrap = Literal[16, 32, 64]
_WRAP = ("An energy counter that wraps after 2^bits raw counts (e.g. a 32-bit Wh counter): a "
         "step back from the top to the bottom quarter of its range is a wrap, not a reset. "
         "The data type must carry 0 to 2^bits - 1.")


def _wrap_fits(wrap: Wrap | None, info: ValidationInfo) -> Wrap | None:
    """``wrap`` on a point its counter logic can read: raw counts 0 to 2^bits - 1 in an
    integer type that carries them all, and value = raw * scale with a positive scale
    (``billing.counter`` tells a wrap from a reset by where the value lies in that range).
    Judged after the point's data type, scale and offset, which precede the field."""
    if wrap is None:
        return None
    data_type: DataType | None = info.data.get("data_type")
    if data_type is not None:  # None: an untyped OPC UA point, or one refused already
        limits = RAW_LIMITS.get(data_type)
        if data_type in FLOAT_TYPES or limits is None:
            raise ValueError(f"wrap is for integer counters: a {data_type.value} value does "
                             "not start again at zero after 2^bits counts")
        if limits[1] < (top := 2 ** wrap - 1):
            low, high = (int(x) for x in limits)
            raise ValueError(f"a counter that wraps at 2^{wrap} counts 0 to {top}, which "
                             f"{data_type.value} cannot carry ({low} to {high})")
    if info.data.get("offset", 0.0) != 0.0:
        raise ValueError("a wrapping counter needs offset 0: its value is raw * scale")
    if info.data.get("scale", 1.0) < 0:
        raise ValueError("a wrapping counter needs a positive scale: its value is raw * scale")
    return wrap


class Strict(BaseModel):
    # defer_build: a model's validator is built when it first validates. SiteConfig builds
    # every section's schema into its own; building each section's validator as well, at
    # import, doubled the work for models that never validate on their own.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False,
                              defer_build=True)


class PollGroup(Strict):
    interval: Seconds = Field(description="Seconds between two polls of the group's points.")


class PointBase(Strict):
    unit: str | None = Field(default=None, description="Engineering unit, e.g. degC, kW, m3/h, %.")
    range: tuple[float, float] | None = Field(
        default=None, description="Physical range [min, max]; a value outside it is bad quality."
    )
    max_age: Seconds | None = Field(
        default=None,
        description="Seconds after which a value is stale (default: 3 poll intervals)."
    )
    poll_group: Identifier = Field(default="default", description="Name of a poll group.")
    writable: bool = False
    write_min: float | None = Field(default=None, description="Lowest value heatd may write.")
    write_max: float | None = Field(default=None, description="Highest value heatd may write.")
    description: str | None = Field(
        default=None, max_length=100, description="The point's name for people, e.g. 'Recovery "
        "valve position' in Home Assistant; default: device and point name."
    )

    @model_validator(mode="after")
    def _bounds_make_sense(self) -> PointBase:
        if self.range is not None and self.range[0] >= self.range[1]:
            raise ValueError("range: min must be below max")
        if (self.write_min is not None or self.write_max is not None) and not self.writable:
            raise ValueError("write_min/write_max given but the point is not writable")
        if (self.write_min is not None and self.write_max is not None
                and self.write_min > self.write_max):
            raise ValueError("write_min must not exceed write_max")
        return self


class ModbusPointConfig(PointBase):
    table: Table = Field(description="holding, input, coil or discrete.")
    address: Annotated[int, Field(ge=0, le=65536)] = Field(
        description="Register or coil address, counted from the device's address_base."
    )
    address_base: Literal[0, 1] | None = Field(
        default=None, description="Overrides the device's address_base for this point."
    )
    data_type: DataType
    order: ByteOrder = Field(
        default=ByteOrder.ABCD, description="Byte/word order: ABCD BADC CDAB DCBA.")
    bit: Annotated[int, Field(ge=0, le=15)] | None = Field(
        default=None, description="Bit number 0-15, for data_type bit."
    )
    scale: float = Field(default=1.0, description="value = raw * scale + offset.")
    offset: float = 0.0
    wrap: Wrap | None = Field(default=None, description=_WRAP)
    write_function: WriteFunction | None = Field(
        default=None,
        description="Overrides the device's write_function for this holding register.")

    _wrap_checked = field_validator("wrap")(_wrap_fits)

    @model_validator(mode="after")
    def _type_fits_table(self) -> ModbusPointConfig:
        bit_tables = (Table.COIL, Table.DISCRETE)
        if self.table in bit_tables and self.data_type is not DataType.BOOL:
            raise ValueError(f"a {self.table.value} point must have data_type bool")
        if self.data_type is DataType.BIT and self.bit is None:
            raise ValueError("data_type bit needs 'bit' (0-15)")
        if self.bit is not None and self.data_type is not DataType.BIT:
            raise ValueError("'bit' is only for data_type bit")
        if self.write_function is not None and self.table is not Table.HOLDING:
            raise ValueError("write_function is for holding registers; coils are written "
                             "with function 5")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self

    @property
    def register_count(self) -> int:
        return 1 if self.table in (Table.COIL, Table.DISCRETE) else register_count(self.data_type)


class OpcUaPointConfig(PointBase):
    node_id: str = Field(description="OPC UA node id, e.g. nsu=urn:vendor:plant;s=Loop.Supply "
                         "(namespace by URI, resolved at every connect) or ns=2;s=Loop.Supply.")
    data_type: DataType | None = Field(
        default=None,
        description="The variant type to write; without it heatd writes with the type "
        "the server reports for the variable."
    )
    scale: float = 1.0
    offset: float = 0.0
    wrap: Wrap | None = Field(default=None, description=_WRAP)

    _wrap_checked = field_validator("wrap")(_wrap_fits)

    @field_validator("node_id")
    @classmethod
    def _looks_like_node_id(cls, value: str) -> str:
        check_node_id(value)
        return value

    @model_validator(mode="after")
    def _type_exists_on_opcua(self) -> OpcUaPointConfig:
        if self.data_type is DataType.BIT:
            raise ValueError("data_type bit exists only on Modbus; an OPC UA Boolean "
                             "variable is data_type bool")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self


class BackoffConfig(Strict):
    """Exponential backoff with jitter between reconnect attempts to one device."""

    min: Seconds = 0.5
    max: Seconds = 30.0



class ForbiddenRange(Strict):
    """Addresses a device must never be asked for (it answers with an error, or worse,
    hangs): ``[first, last]`` in every table, or ``{first, last, table}`` in one."""

    first: Annotated[int, Field(ge=0, le=65536)]
    last: Annotated[int, Field(ge=0, le=65536)]
    table: Table | None = Field(default=None, description="Only this table (default: every table).")

    def on_wire(self, address_base: int) -> Forbidden:
        """The range in protocol addresses, for a device that counts from ``address_base``."""
        return Forbidden(self.first - address_base, self.last - address_base, self.table)

    @model_validator(mode="after")
    def _ordered(self) -> ForbiddenRange:
        if self.first > self.last:
            raise ValueError(f"forbidden range [{self.first}, {self.last}]: first must not "
                             "exceed last")
        return self


def _range_from_pair(data: object) -> object:
    """``[first, last]``, the short form for a range in every table."""
    if isinstance(data, list | tuple):
        if len(data) != 2:
            raise ValueError("give [first, last] or {first: ..., last: ..., table: ...}")
        return {"first": data[0], "last": data[1]}
    return data


ForbiddenEntry = Annotated[
    ForbiddenRange,
    BeforeValidator(_range_from_pair, json_schema_input_type=tuple[int, int] | ForbiddenRange),
]


class ModbusCommon(Strict):
    unit_id: Annotated[int, Field(ge=0, le=247)] = 1
    address_base: Literal[0, 1] = Field(
        description="Whether addresses in this file count from 0 (protocol) or 1 (register "
        "numbers as many manuals print them). Stated explicitly: there is no default."
    )
    timeout: Seconds = 1.0
    retries: Annotated[int, Field(ge=0, le=5)] = 0
    max_registers: Annotated[int, Field(ge=1, le=125)] = 125
    allow_gaps: bool = False
    max_gap: Annotated[int, Field(ge=0, le=124)] = 0
    forbidden: list[ForbiddenEntry] = Field(
        default_factory=list,
        description="Address ranges (inclusive, in this file's address base) that must never "
        "be read, not even as a gap: [first, last] in every table, or {first, last, table}.",
    )
    request_delay: Annotated[float, Field(ge=0, le=10)] = 0.0
    write_function: WriteFunction = Field(
        default="fc6", description="fc6: a one-register write uses function 6 (Write Single "
        "Register), longer ones 16; fc16: every holding-register write uses function 16 "
        "(Write Multiple Registers), for devices that accept only that.")
    backoff: BackoffConfig = Field(default_factory=lambda: BackoffConfig())
    points: dict[Identifier, ModbusPointConfig]

    @model_validator(mode="after")
    def _points_fit_a_request(self) -> ModbusCommon:
        """Every register point fits in one request: a point is never read in parts, so
        one wider than ``max_registers`` could not be read at all. Named at the
        ``max_registers`` line, the widest point first (a float64 or int64 needs 4)."""
        widest = max(self.points.items(), key=lambda item: item[1].register_count, default=None)
        if widest is not None and widest[1].register_count > self.max_registers:
            name, point = widest
            count = point.register_count
            error = ValueError(f"{self.max_registers} is smaller than point {name!r} "
                               f"({point.data_type.value}, {count} registers): a point is "
                               "read in one request")
            raise ValidationError.from_exception_data(type(self).__name__, [InitErrorDetails(
                type="value_error", loc=("max_registers",), input=self.max_registers,
                ctx={"error": error})])
        return self

    def protocol_address(self, point: ModbusPointConfig) -> int:
        """The 0-based address on the wire of one of this device's points, after the
        address base the file states (the daemon's read plans and the simulator's servers
        both address the point by it)."""
        base = point.address_base if point.address_base is not None else self.address_base
        return point.address - base


class ModbusTcpDeviceConfig(ModbusCommon):
    protocol: Literal["modbus_tcp"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 502

    @field_validator("host")
    @classmethod
    def _host_alone(cls, value: str) -> str:
        return check_host(value, "the device's port:")


class ModbusRtuDeviceConfig(ModbusCommon):
    protocol: Literal["modbus_rtu"]
    serial_port: str = Field(description="Serial device, e.g. /dev/ttyUSB0.")
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class OpcUaDeviceConfig(Strict):
    protocol: Literal["opcua"]
    endpoint: str = Field(description="opc.tcp://host:port/path")
    security_policy: Literal["None", "Basic256Sha256"] = "None"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    username: str | None = None
    password: str | None = None
    certificate: str | None = Field(default=None, description="Client certificate (PEM or DER).")
    private_key: str | None = Field(default=None, description="Client private key (PEM).")
    server_certificate: str | None = None
    application_uri: str = Field(
        default="urn:heatd:client", description="Must equal the URI in the client certificate."
    )
    trust: Literal["pinned", "list", "any"] | None = Field(
        default=None, description="Which server certificates a secured channel accepts: pinned "
        "(server_certificate), list (a certificate in trust_list or issued by a CA there) or "
        "any (insecure). Default: pinned with server_certificate, list with trust_list."
    )
    trust_list: str | None = Field(default=None, description="Folder of trusted server or CA "
                                   "certificates (.der, .pem, .crt, .cer).")
    namespaces: dict[Annotated[int, Field(ge=1, le=65535)], Annotated[str, Field(min_length=1)]] \
        = Field(default_factory=dict, description="Namespace index -> the URI the site expects "
                "there; a point at an index whose URI differs on the server is bad, not read.")
    timeout: Seconds = 2.0
    mode: Literal["subscription", "polling"] = "subscription"
    publishing_interval: Seconds = 0.5
    backoff: BackoffConfig = Field(default_factory=lambda: BackoffConfig())
    points: dict[Identifier, OpcUaPointConfig]


    @field_validator("endpoint")
    @classmethod
    def _opc_tcp(cls, value: str) -> str:
        if not value.startswith("opc.tcp://"):
            raise ValueError(f"{value!r} is not an opc.tcp:// endpoint")
        return value

    @model_validator(mode="after")
    def _security_consistent(self) -> OpcUaDeviceConfig:
        secured = self.security_policy != "None"
        if secured != (self.security_mode != "None"):
            raise ValueError("security_policy and security_mode must both be None or both set")
        if secured and not (self.certificate and self.private_key):
            raise ValueError(f"{self.security_policy} needs certificate and private_key")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if secured and self.server_trust == "pinned" and not self.server_certificate:
            raise ValueError("a secured device needs trust: pinned with server_certificate, "
                             "list with trust_list, or any (insecure)")
        if secured and self.server_trust == "list" and not self.trust_list:
            raise ValueError("trust: list needs trust_list, a folder of certificates")
        return self

    @property
    def server_trust(self) -> Literal["pinned", "list", "any"]:
        """``trust`` as given, else what the certificates given imply."""
        if self.trust is not None:
            return self.trust
        return "list" if self.trust_list and not self.server_certificate else "pinned"


DeviceConfig = Annotated[
    ModbusTcpDeviceConfig | ModbusRtuDeviceConfig | OpcUaDeviceConfig,
    Field(discriminator="protocol"),
]
PointConfig = ModbusPointConfig | OpcUaPointConfig


class SiteInfo(Strict):
    id: Identifier
    name: str | None = None
    timezone: str = Field(default="UTC", description="IANA time zone of the site, e.g. "
                          "Europe/Copenhagen: contracts' hours and report days are site time.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        """Looked up now: the contract records and reports would first meet a typo at the
        close of an hour, in the running daemon."""
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone (an IANA name such as "
                             "Europe/Copenhagen or UTC)") from None
        return value


class RuntimeSettings(Strict):
    """How the daemon runs its control cycle and writes its setpoints."""

    cycle_period: Annotated[float, Field(ge=0.1, le=10.0)] = Field(
        default=1.0, description="Seconds between two control cycles (0.1 to 10)."
    )
    write_deadband: Annotated[float, Field(ge=0)] = Field(
        default=0.001, description="Change of a setpoint (in role units, e.g. 0.001 = 0.1 % valve) "
        "below which it is not written again."
    )
    write_min_interval: Annotated[float, Field(ge=0, le=60)] = Field(
        default=0.0,
        description="Least seconds between two writes of one setpoint (the heartbeat is "
        "written every cycle regardless), for actuators that wear or devices that throttle."
    )
    stop_timeout: Annotated[float, Field(gt=0, le=30)] = Field(
        default=3.0, description="Seconds a clean stop waits for the safe state to be written."
    )


class MeterSettings(Strict):
    """Energy metering: one record per interval, kept in SQLite until the broker has it."""

    interval: Annotated[float, Field(ge=1, le=86400)] = Field(
        default=900.0, description="Seconds per record, aligned to the clock (900: quarter hours)."
    )
    database: str = Field(
        default="${STATE_DIRECTORY}/meter.sqlite",
        description="SQLite file of records not yet acknowledged by the broker; environment "
        "variables are expanded (systemd sets STATE_DIRECTORY from StateDirectory=).",
    )


PointRef = Annotated[str, Field(pattern=r"^[a-z0-9_-]+\.[a-z0-9_-]+$")]


class EngineeringSetpoint(Strict):
    """An output in engineering units that the control core does not decide (a network
    supply setpoint in degC): heatd writes ``value``, or an operator's lease, never
    outside ``[min, max]``."""

    value: float = Field(description="What heatd writes while no operator lease holds it.")
    min: float = Field(description="Lowest value heatd writes, whoever asks.")
    max: float = Field(description="Highest value heatd writes, whoever asks.")

    @model_validator(mode="after")
    def _inside(self) -> EngineeringSetpoint:
        if not self.min < self.max:
            raise ValueError(f"min ({self.min:g}) must be below max ({self.max:g})")
        if not self.min <= self.value <= self.max:
            raise ValueError(f"value {self.value:g} lies outside [{self.min:g}, {self.max:g}]")
        return self


class SiteConfig(Strict):
    """A whole site: what the daemon and the simulator both read."""

    site: SiteInfo
    poll_groups: dict[Identifier, PollGroup] = Field(
        default_factory=lambda: {"default": PollGroup(interval=1.0)}
    )
    devices: dict[Identifier, DeviceConfig]
    roles: dict[str, PointRef | list[PointRef]] = Field(
        default_factory=dict,
        description="Role name -> 'device.point' or a list of them (redundant sensors).",
    )
    control: ControlParams = Field(default_factory=lambda: ControlParams())
    runtime: RuntimeSettings = Field(default_factory=lambda: RuntimeSettings())
    mqtt: MqttSettings | None = Field(default=None, description="Broker; without it heatd runs "
                                      "without publishing.")
    meter: MeterSettings | None = Field(default=None, description="Energy metering; needs mqtt.")
    contracts: Contracts | None = Field(
        default=None, description="Heat-purchase agreements and the cooling guarantee: hourly "
        "records kept in meter.database; needs meter.")
    setpoints: dict[str, EngineeringSetpoint] = Field(
        default_factory=dict,
        description="Outputs in engineering units bound in roles (dh.supply_setpoint): "
        "the value heatd writes and the bounds of any value it writes.")

    def point(self, ref: str) -> PointConfig:
        device, name = ref.split(".", 1)
        return self.devices[device].points[name]

    def role_points(self, role: str) -> list[str]:
        bound = self.roles.get(role, [])
        return [bound] if isinstance(bound, str) else list(bound)
