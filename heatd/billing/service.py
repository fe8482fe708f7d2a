"""The contracts' meters inside the daemon: fed from the point image once per cycle,
their closed hours chained into the ledger by a worker thread, which also keeps the
interval meter's records (``meter/energy``) for the broker.

The cycle only reads the snapshot and does arithmetic; every SQLite transaction (with its
fsync) runs in ``asyncio.to_thread`` from the writer task, so a slow disk never delays
control. A counter's reading enters the meter once, stamped with the wall-clock time it
was heard, so a counter that was not re-read since the last cycle is not a zero delta.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from heatd.billing.contracts import CoolingGuarantee, HeatPurchase
from heatd.billing.hourly import Hour, HourlyMeter, Level
from heatd.billing.inputs import ChannelReader
from heatd.billing.ledger import Ledger
from heatd.billing.points import Channel, cooling_channels, heat_channels
from heatd.billing.records import cooling_record, heat_record
from heatd.config import SiteConfig
from heatd.meter_health import Wrote
from heatd.meter_store import METER
from heatd.points import PointSnapshot

log = structlog.get_logger(__name__)

COUNTERS = frozenset({"energy", "it_energy"})
POWERS = ("power", "it_power", "hp_power", "fan_power")
RETRY_S = 5.0

HEAT_TOTALS = ("heat_kwh",)
COOLING_TOTALS = ("it_kwh", "hp_electricity_kwh")
"""The energies kept as running totals per contract (for Home Assistant's energy view)."""


@dataclass
class _Contract:
    contract: HeatPurchase | CoolingGuarantee
    channels: dict[str, Channel]
    meter: HourlyMeter

    @property
    def totals(self) -> tuple[str, ...]:
        return HEAT_TOTALS if isinstance(self.contract, HeatPurchase) else COOLING_TOTALS

    def record(self, site: SiteConfig, hour: Hour) -> dict[str, Any]:
        if isinstance(self.contract, HeatPurchase):
            return heat_record(site.site.id, self.contract, hour, site.site.timezone,
                               "energy" in self.channels)
        return cooling_record(site.site.id, self.contract, hour, "it_energy" in self.channels)


def build_meters(site: SiteConfig, ledger: Ledger) -> list[_Contract]:
    """One hourly meter per contract, resumed where its stored records end."""
    contracts = site.contracts
    if contracts is None:
        return []
    out = []
    agreed: list[HeatPurchase | CoolingGuarantee] = [
        *contracts.heat_purchase, *filter(None, [contracts.cooling_guarantee])]
    for contract in agreed:
        if isinstance(contract, HeatPurchase):
            channels = heat_channels(site, contract)
            levels = {"supply_temp": Level(below=contract.min_supply_temp_c),
                      "return_temp": Level()}
        else:
            channels = cooling_channels(site, contract)
            levels = {"rack_inlet": Level(above=contract.rack_inlet_limit_c),
                      "supply_temp": Level(above=contract.supply_limit_c)}
        counters = {n: c.modulus for n, c in channels.items() if n in COUNTERS}
        meter = HourlyMeter(counters, tuple(n for n in channels if n in POWERS),
                            {n: v for n, v in levels.items() if n in channels},
                            ledger.resume(contract.name, counters))
        out.append(_Contract(contract, channels, meter))
    return out


class Billing:
    """Every contract's meter, and the writer that keeps their records and the interval
    meter's (a site without contracts has only the latter)."""

    def __init__(self, site: SiteConfig, path: str, wake: Callable[[], None],
                 on_totals: Callable[[dict[str, dict[str, float]]], None] | None = None,
                 wrote: Wrote | None = None) -> None:
        """``wrote`` hears how each write of records went (``heatd.meter_health``)."""
        self.site = site
        self._wrote = wrote
        self.ledger = Ledger(path, threaded=True)
        self._contracts = build_meters(site, self.ledger)
        kept = self.ledger.totals((*HEAT_TOTALS, *COOLING_TOTALS))
        self.totals = {e.contract.name: {f: kept.get(e.contract.name, {}).get(f, 0.0)
                                         for f in e.totals} for e in self._contracts}
        """contract -> energy field -> kWh over every record kept."""
        self._on_totals = on_totals
        self._reader = ChannelReader()
        self._closed: list[dict[str, Any]] = []
        self._intervals: list[dict[str, Any]] = []
        self._ready = asyncio.Event()
        self._wake = wake
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def observe(self, wall: float, points: PointSnapshot | None) -> None:
        """Once per cycle (no I/O): feed the meters, queue the hours they closed."""
        if points is None:
            return
        for entry in self._contracts:
            counters, good, values = self._reader.read(entry.channels, COUNTERS, wall, points)
            for hour in entry.meter.observe(wall, counters=counters, counters_good=good,
                                            powers=values, levels=values):
                self._closed.append(entry.record(self.site, hour))
        if self._closed:
            self._ready.set()

    def keep_interval(self, record: dict[str, Any]) -> None:
        """An interval meter record, to be kept until the broker has it (off the cycle)."""
        self._intervals.append(record)
        self._ready.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="records writer")

    async def stop(self) -> None:
        """Write what is queued and end the writer. It is never cancelled: a cancelled
        wait would leave its SQLite transaction running in the worker thread."""
        self._stopping = True
        self._ready.set()
        if self._task is not None:
            await self._task
            self._task = None
        else:
            await self.flush()

    async def _run(self) -> None:
        """Write closed records as they come, off the cycle, until stopped."""
        while not self._stopping:
            await self._ready.wait()
            await self.flush()
        await self.flush()

    async def flush(self) -> None:
        self._ready.clear()
        batch, self._closed = self._closed, []
        intervals, self._intervals = self._intervals, []
        if not batch and not intervals:
            return
        started = time.monotonic()
        try:
            chained = await asyncio.to_thread(self._write, batch, intervals)
        except sqlite3.Error as exc:  # disk full, locked: keep them and try again
            log.error("records not kept yet", count=len(batch) + len(intervals),
                      error=str(exc))
            if self._wrote is not None:
                self._wrote(exc, time.monotonic() - started)
            self._closed[:0] = batch
            self._intervals[:0] = intervals
            if self._stopping:  # contract hours are made again from the counters at the
                return          # next start (as downtime); interval records are lost
            await asyncio.sleep(RETRY_S)
            self._ready.set()
            return
        log.debug("records kept", count=len(batch), seconds=time.monotonic() - started)
        if self._wrote is not None:
            self._wrote(None, time.monotonic() - started)
        self._wake()
        for record in chained:
            for name, total in self.totals.get(record["contract"], {}).items():
                self.totals[record["contract"]][name] = total + (record.get(name) or 0.0)
        if self._on_totals is not None and chained:
            self._on_totals(self.totals)

    def _write(self, batch: list[dict[str, Any]], intervals: list[dict[str, Any]]
               ) -> list[dict[str, Any]]:
        """In the worker thread, one transaction: contract records chained, interval
        records queued."""
        return self.ledger.append(batch, also=[(METER, json.dumps(r)) for r in intervals])

    def close(self) -> None:
        self.ledger.close()

