"""An operator's lease on the heat pump's enable, as heatd carries it out: in this process
against a real Modbus server (a heat pump whose running feedback follows its enable) and
a real mosquitto, watched on the site's topics as an integrator would."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heatd.config_loader import load_site
from heatd.control.sequencer import HpState
from heatd.drivers.modbus import Table
from heatd.hil.rig.broker import Mosquitto, Recorder, broker_fixture
from heatd.hil.rig.modbus import SimServer, unit
from heatd.hil.rig.waiting import until
from heatd.runtime import Daemon

broker = broker_fixture()

BASE = "heatd/hl"
MIN_ON_S = 6.0
ENABLE, RUNNING = 1, 0
"""Coils of the heat pump's unit: its enable (written by heatd) and running feedback."""

SITE = """\
site: {{id: hl}}
runtime: {{cycle_period: 0.1}}
control: {{sequencer: {{min_on_s: {min_on}, min_off_s: 0}}}}
poll_groups:
  default: {{interval: 0.1}}
devices:
  plant:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {port}
    unit_id: 1
    address_base: 0
    timeout: 0.5
    points:
      valve: {{table: holding, address: 1, data_type: uint16, unit: "%", scale: 0.1,
               writable: true, write_min: 0, write_max: 100}}
      fan: {{table: holding, address: 2, data_type: uint16, unit: "%", scale: 0.1,
             writable: true, write_min: 0, write_max: 100}}
      supply: {{table: holding, address: 10, data_type: int16, scale: 0.1, unit: degC}}
      flow: {{table: holding, address: 11, data_type: uint16, scale: 0.1, unit: "m3/h"}}
      running: {{table: coil, address: {running}, data_type: bool}}
      enable: {{table: coil, address: {enable}, data_type: bool, writable: true}}
      fault: {{table: coil, address: 2, data_type: bool}}
roles:
  valve.recovery: plant.valve
  drycooler.fan: plant.fan
  coolant.supply_temp: plant.supply
  coolant.flow: plant.flow
  hp.running: plant.running
  hp.enable: plant.enable
  hp.fault: plant.fault
mqtt: {{host: 127.0.0.1, port: {mqtt}, reconnect_min: 0.05, reconnect_max: 0.3}}
"""


@dataclass
class Site:
    server: SimServer
    daemon: Daemon
    rec: Recorder

    async def command(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Send an override with an id and wait for its answer."""
        mark = self.rec.mark()
        await self.rec.client.publish(f"{BASE}/cmd/override", json.dumps(payload), qos=1)
        reply = await self.rec.wait(
            f"{BASE}/cmd/override/response",
            lambda m: json.loads(m.payload).get("id") == payload["id"], after=mark)
        return json.loads(reply.payload)  # type: ignore[no-any-return]

    def transitions(self) -> list[dict[str, Any]]:
        events = (json.loads(m.payload) for m in self.rec.on(f"{BASE}/events"))
        return [e for e in events if e.get("kind") == "transition"]

    async def enabled(self) -> bool:
        return bool((await self.server.get(1, Table.COIL, ENABLE, 1))[0])


async def _heat_pump(server: SimServer) -> None:
    """The heat pump: runs while it is enabled."""
    while True:
        enable = (await server.get(1, Table.COIL, ENABLE, 1))[0]
        await server.set(1, Table.COIL, RUNNING, [enable])
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_site(tmp: Path, mosquitto: Mosquitto) -> AsyncIterator[Site]:
    server = SimServer([unit(1, size=100)])
    await server.start()
    await server.set(1, Table.HOLDING, 10, [350, 200])  # 35.0 degC, 20 m3/h
    path = tmp / "site.yaml"
    path.write_text(SITE.format(port=server.port, mqtt=mosquitto.port, min_on=MIN_ON_S,
                                running=RUNNING, enable=ENABLE))
    daemon = Daemon(path, load_site(path))
    plant = asyncio.create_task(_heat_pump(server))
    try:
        async with Recorder(mosquitto, f"{BASE}/#") as rec:
            task = asyncio.create_task(daemon.run())
            try:
                await rec.wait(f"{BASE}/control/state", timeout=15)
                yield Site(server, daemon, rec)
            finally:
                daemon.request_stop()
                await asyncio.wait_for(task, 15)
    finally:
        plant.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await plant
        await server.stop()


async def test_a_stop_the_minimum_on_time_defers_says_so_and_when_it_acts(
        tmp_path: Path, broker: Mosquitto) -> None:
    """The heat pump was started a moment ago: a stop lease shorter than what is left of
    its minimum on time is refused (it was accepted and never carried out); a longer one
    is accepted with the seconds the stop is deferred by, and the stop, when the minimum
    on time has passed, is an event that names the lease."""
    async with running_site(tmp_path, broker) as site:
        start = await site.command({"role": "hp.enable", "value": True, "ttl": 60, "id": "on"})
        assert start["accepted"] is True and "deferred_s" not in start["detail"]
        await until(lambda: site.daemon.state.seq.state is HpState.RUNNING, timeout=10,
                    what="the heat pump running")

        short = await site.command({"role": "hp.enable", "value": False, "ttl": 1,
                                    "id": "short"})
        long = await site.command({"role": "hp.enable", "value": False, "ttl": 30,
                                   "id": "long"})
        await until(lambda: not site.daemon.state.seq.enabled, timeout=15,
                    what="the heat pump stopped")
        await until(lambda: any(e["change"] == "hp_state" and e["to"] == "stopping"
                                for e in site.transitions()), timeout=5, what="the stop event")
    assert short["accepted"] is False
    assert "minimum on time defers the stop by" in short["reason"]
    assert "beyond this lease of 1 s" in short["reason"]
    assert short["detail"]["deferred_by"] == "min_on_time"
    assert 1 < short["detail"]["deferred_s"] <= MIN_ON_S

    assert long["accepted"] is True
    assert "minimum on time defers the stop by" in long["reason"], long["reason"]
    deferred = long["detail"]["deferred_s"]
    assert long["detail"]["deferred_by"] == "min_on_time" and 0 < deferred <= MIN_ON_S
    assert abs(long["detail"]["deferred_until"] - (long["ts"] + deferred * 1000)) < 1000

    told = site.transitions()
    leases = [e for e in told if e["change"] == "lease" and e["cause"] == "set"]
    assert [(e["to"], "defers the stop" in e["reason"]) for e in leases] == [
        (True, False), (False, True)]
    stop = next(e for e in told if e["change"] == "hp_state" and e["to"] == "stopping")
    assert (stop["layer"], stop["cause"], stop["reason"]) == (
        "operator", "lease", "operator lease on hp.enable")
    # it acted once the minimum on time had passed, not before
    assert stop["ts"] >= long["ts"] + deferred * 1000 - 300


async def test_transition_events_carry_json_values_of_their_type(
        tmp_path: Path, broker: Mosquitto) -> None:
    """A stop lease of the heat pump is false in its lease, limit and expiry events, a fan
    share 0.9 in its own: they were "0", "0.0" and "0.9", strings a consumer could not
    compare; no transition carries a number or a flag as text."""
    async with running_site(tmp_path, broker) as site:
        for role, value, id_ in (("hp.enable", False, "a"), ("drycooler.fan", 0.9, "b")):
            answer = await site.command({"role": role, "value": value, "ttl": 2, "id": id_})
            assert answer["accepted"] is True
        await until(lambda: len([e for e in site.transitions()
                                 if e["change"] == "lease" and e["cause"] == "expired"]) == 2,
                    timeout=10, what="both leases expired")
    told = site.transitions()
    mine = {(e["change"], e["subject"], e["cause"]): (e["from"], e["to"]) for e in told
            if e["subject"].removeprefix("override:") in ("hp.enable", "drycooler.fan")
            and e["change"] in ("lease", "limit")}
    assert mine == {
        ("lease", "hp.enable", "set"): (None, False),
        ("limit", "override:hp.enable", "lease"): (None, False),
        ("lease", "hp.enable", "expired"): (False, None),
        ("lease", "drycooler.fan", "set"): (None, 0.9),
        ("limit", "override:drycooler.fan", "lease"): (None, 0.9),
        ("lease", "drycooler.fan", "expired"): (0.9, None),
    }
    texts = [e[k] for e in told for k in ("from", "to") if isinstance(e[k], str)]
    assert not [t for t in texts if t in ("True", "False") or _number(t)], texts


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
