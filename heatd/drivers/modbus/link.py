"""Connections: one pymodbus client per TCP endpoint or serial line, shared by the
devices (unit ids) behind it.

pymodbus reconnects only after a connection that once worked is lost, and its defaults
back off up to 300 s. A link therefore disables pymodbus' own reconnect and runs its
own supervisor: connect, and on failure wait an exponentially growing, jittered delay,
including when the very first connect fails. Requests never wait for a connect: while
the link is down they fail at once, so a dead device costs its poll nothing.

Requests take turns (``Turns``): urgent ones (heartbeat, safe state) go before every queued
poll or read-back. Each request carries its unit's own timeout and retries: pymodbus keeps
one timeout per client, and the link sets it before each request it lets on the wire, so
units behind one gateway or on one line keep the settings their devices name. The link
retries, one attempt a turn, rather than pymodbus, which would hold the line through every
attempt of a silent unit.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ModbusPDU

from heatd.drivers.backoff import Backoff
from heatd.drivers.cancel import cancel_all
from heatd.drivers.failures import describe
from heatd.drivers.modbus.spec import SerialSettings, TcpSettings
from heatd.drivers.modbus.turns import Turns


class Link:
    """A client, the turns that keep one request at a time on it, and its reconnects."""

    def __init__(
        self,
        name: str,
        make_client: Callable[[Callable[[bool], None]], ModbusBaseClient],
        settings: TcpSettings | SerialSettings,
    ) -> None:
        self.name = name
        self.settings = settings
        self.timeout = settings.timeout
        self.retries = settings.retries
        self.request_delay = settings.request_delay
        self._backoff_range = (settings.backoff_min, settings.backoff_max)
        self._backoff = Backoff(settings.backoff_min, settings.backoff_max)
        self._make_client = make_client
        self.client: ModbusBaseClient | None = None
        self._turns: Turns | None = None
        self._lost: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._users = 0
        self._last_request = 0.0
        self.connects = 0
        """Successful connects so far (diagnostics: a flapping link shows here)."""
        self.connect_error: str | None = None
        """Why the latest connect failed (``connection refused``, ``no such serial port``,
        ...); None once connected."""
        self._attempt_error: str | None = None
        """Why the connect attempt under way failed, described."""

    def join(self, settings: TcpSettings | SerialSettings) -> None:
        """Another unit shares this link: the longest pause between requests and the
        shortest reconnect backoff of its units apply to the link (timeouts and retries
        stay per unit, see ``request``)."""
        self.request_delay = max(self.request_delay, settings.request_delay)
        low = min(self._backoff_range[0], settings.backoff_min)
        high = min(self._backoff_range[1], settings.backoff_max)
        if (low, high) != self._backoff_range:
            self._backoff_range = (low, high)
            self._backoff = Backoff(low, max(low, high))

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    @property
    def waiting(self) -> int:
        """Requests queued for their turn."""
        return 0 if self._turns is None else self._turns.waiting

    async def acquire(self) -> None:
        """Register a user; the first one starts the client and its supervisor."""
        self._users += 1
        if self._task is None:
            self._turns = Turns()
            self._lost = asyncio.Event()
            self.client = self._make_client(self._on_connection)
            self._record_connect_failures(self.client)
            self._task = asyncio.create_task(self._supervise(), name=f"modbus link {self.name}")

    async def release(self) -> None:
        """Unregister a user; the last one closes the connection."""
        self._users = max(0, self._users - 1)
        if self._users == 0:
            await self.close()

    async def close(self) -> None:
        if self._task is not None:
            await cancel_all([self._task])  # cancelled again if a reply swallowed the first
            self._task = None
        if self.client is not None:
            self.client.close()
            self.client = None

    def _on_connection(self, up: bool) -> None:
        if not up and self._lost is not None:
            self._lost.set()

    def _record_connect_failures(self, client: ModbusBaseClient) -> None:
        """pymodbus logs why a connect failed and returns False; keep why too, by wrapping
        the transport's create call, so the cause can be reported."""
        create = client.ctx.call_create

        async def recorded() -> Any:
            try:
                return await create()
            except Exception as exc:  # termios.error (a port refusing its settings) too
                self._attempt_error = describe(exc)
                # The failed frames hold what the attempt opened (a serial port, locked
                # against the next attempt) in a cycle the garbage collector would free
                # only some time later: their locals go now.
                traceback.clear_frames(exc.__traceback__)
                raise

        client.ctx.call_create = recorded

    async def _supervise(self) -> None:
        assert self.client is not None and self._lost is not None
        while True:
            if not self.client.connected:
                self._attempt_error = None
                try:
                    up = await self.client.connect()
                except Exception as exc:  # any failed attempt is retried, never the end
                    self._attempt_error = self._attempt_error or describe(exc)
                    up = False
                if not up:
                    self.connect_error = self._attempt_error or "timeout"
                    await asyncio.sleep(self._backoff.next())
                    continue
                self.connect_error = None
                self._backoff.reset()
                self.connects += 1
            self._lost.clear()
            if self.client.connected:
                await self._lost.wait()

    async def request(
        self,
        call: Callable[..., Awaitable[ModbusPDU]],
        *args: Any,
        urgent: bool = False,
        attempt_timeout: float | None = None,
        retries: int | None = None,
        **kwargs: Any,
    ) -> ModbusPDU:
        """Send one request and wait for its answer, one at a time on this link.

        ``urgent`` requests go before every queued normal one. ``attempt_timeout`` and
        ``retries`` (default: the link's) bound each attempt and their number. Each
        attempt is a turn of its own: a silent unit holds the link for one timeout at a
        time, and the heartbeat and safe state go between its attempts (pymodbus' own
        retries would keep the link through all of them). Raises pymodbus'
        ConnectionException/ModbusIOException or TimeoutError; the caller turns them into
        qualities.
        """
        timeout = self.timeout if attempt_timeout is None else attempt_timeout
        retries = self.retries if retries is None else retries
        failed = 0
        while True:
            try:
                return await self._attempt(call, args, kwargs, urgent, timeout)
            except (ModbusIOException, TimeoutError):
                failed += 1
                if failed > retries:
                    raise

    async def _attempt(self, call: Callable[..., Awaitable[ModbusPDU]], args: tuple[Any, ...],
                       kwargs: dict[str, Any], urgent: bool, timeout: float) -> ModbusPDU:
        """One attempt in one turn, bounded by ``timeout`` (plus slack)."""
        assert self._turns is not None
        async with self._turns.take(urgent):
            if self.request_delay:
                pause = self._last_request + self.request_delay - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
            if self.client is not None:
                # one request at a time: the client's settings are this request's
                self.client.ctx.comm_params.timeout_connect = timeout
                self.client.ctx.retries = 0
            try:
                async with asyncio.timeout(timeout * 1.5):  # pymodbus' own, plus slack
                    return await call(*args, **kwargs)
            finally:
                self._last_request = time.monotonic()


class _ClientOptions(TypedDict):
    """What every pymodbus client of a link is made with."""

    timeout: float
    retries: int
    reconnect_delay: float
    reconnect_delay_max: float
    trace_connect: Callable[[bool], None]


def _client_options(timeout: float, retries: int,
                    on_connection: Callable[[bool], None]) -> _ClientOptions:
    # reconnect_delay=0 turns pymodbus' reconnect task off; the link supervises instead.
    return {
        "timeout": timeout,
        "retries": retries,
        "reconnect_delay": 0,
        "reconnect_delay_max": 0,
        "trace_connect": on_connection,
    }


class TcpLink(Link):
    """One TCP connection, e.g. to a gateway that serves several unit ids."""

    def __init__(self, settings: TcpSettings) -> None:
        def make(on_connection: Callable[[bool], None]) -> ModbusBaseClient:
            return AsyncModbusTcpClient(
                settings.host,
                port=settings.port,
                name=f"{settings.host}:{settings.port}",
                **_client_options(settings.timeout, settings.retries, on_connection),
            )

        super().__init__(f"{settings.host}:{settings.port}", make, settings)


class SerialLine(Link):
    """One RS-485 line: only one frame may be on the wire, whichever unit it is for."""

    def __init__(self, settings: SerialSettings) -> None:
        def make(on_connection: Callable[[bool], None]) -> ModbusBaseClient:
            return AsyncModbusSerialClient(
                settings.port,
                baudrate=settings.baudrate,
                parity=settings.parity,
                stopbits=settings.stopbits,
                bytesize=settings.bytesize,
                name=settings.port,
                **_client_options(settings.timeout, settings.retries, on_connection),
            )

        super().__init__(settings.port, make, settings)
