"""Roles a commissioning needs beyond the basic plant, through the real daemon: a heat
pump's own minimum-off timer (defers a start, never latches), an operator reset of a
latched lockout over MQTT, per-rack power summed and per-rack inlets each visible, and a
network supply setpoint in degC written within its bounds. heatd runs in this process
against a real pymodbus server and a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from heatd.config_loader import ConfigError, load_site, parse_site
from heatd.control.bounds import device_bounds
from heatd.control.events import Cause, Layer
from heatd.control.params import SequencerParams
from heatd.control.sequencer import HpState, SeqState, sequence
from heatd.control.signals import Signal
from heatd.devices import point_limits
from heatd.drivers.modbus import Table
from heatd.drivers.reading import Quality, Reading
from heatd.hil.pointmap import bind_site
from heatd.hil.rig.broker import Mosquitto, Recorder, broker_fixture
from heatd.hil.rig.modbus import SimServer, unit
from heatd.hil.rig.waiting import until
from heatd.points import PointImage
from heatd.role_signals import control_snapshot
from heatd.runtime import Daemon

broker = broker_fixture()

SITE = """\
site: {{id: t}}
poll_groups:
  default: {{interval: 0.1}}
devices:
  plant:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: {port}
    address_base: 0
    timeout: 0.5
    points:
      supply: {{table: input, address: 0, data_type: int16, scale: 0.1, unit: degC}}
      rack_a_power: {{table: input, address: 2, data_type: uint16, scale: 0.1, unit: kW}}
      rack_b_power: {{table: input, address: 3, data_type: uint16, scale: 0.1, unit: kW}}
      rack_a_inlet: {{table: input, address: 4, data_type: int16, scale: 0.1, unit: degC}}
      rack_b_inlet: {{table: input, address: 5, data_type: int16, scale: 0.1, unit: degC}}
      demand: {{table: input, address: 6, data_type: uint16, unit: kW}}
      running: {{table: discrete, address: 0, data_type: bool}}
      fault: {{table: discrete, address: 1, data_type: bool}}
      lockout: {{table: discrete, address: 2, data_type: bool}}
      min_off: {{table: discrete, address: 3, data_type: bool}}
      enable: {{table: coil, address: 0, data_type: bool, writable: true}}
      reset: {{table: coil, address: 1, data_type: bool, writable: true}}
      valve: {{table: holding, address: 0, data_type: uint16, scale: 0.001, writable: true}}
      fan: {{table: holding, address: 1, data_type: uint16, scale: 0.001, writable: true}}
      capacity: {{table: holding, address: 2, data_type: uint16, scale: 0.001, writable: true}}
      heartbeat: {{table: holding, address: 3, data_type: uint16, writable: true}}
      network_setpoint: {{table: holding, address: 4, data_type: int16, scale: 0.1,
                          unit: degC, writable: true, write_min: 40, write_max: 95}}
roles:
  coolant.supply_temp: plant.supply
  it.power: [plant.rack_a_power, plant.rack_b_power]
  rack.inlet_temp: [plant.rack_a_inlet, plant.rack_b_inlet]
  dh.demand: plant.demand
  hp.running: plant.running
  hp.fault: plant.fault
  hp.lockout: plant.lockout
  hp.min_off_active: plant.min_off
  hp.enable: plant.enable
  hp.reset: plant.reset
  valve.recovery: plant.valve
  drycooler.fan: plant.fan
  hp.capacity: plant.capacity
  plc.heartbeat: plant.heartbeat
  dh.supply_setpoint: plant.network_setpoint
setpoints:
  dh.supply_setpoint: {{value: 70, min: 55, max: 80}}
control:
  optimiser: {{start_delay_s: 0, hp_nominal_heat_kw: 100}}
  sequencer: {{min_off_s: 0, reset_pulse_s: 1.0, reset_cooldown_s: 1.0}}
runtime:
  cycle_period: 0.2
mqtt: {{host: 127.0.0.1, port: {mqtt}, reconnect_min: 0.05, reconnect_max: 0.3}}
"""

DISCRETE = {"running": 0, "fault": 1, "lockout": 2, "min_off": 3}


async def reads(read: Awaitable[object], expected: object) -> bool:
    return await read == expected


@dataclass
class Site:
    daemon: Daemon
    server: SimServer
    rec: Recorder
    client: Any

    def control(self) -> dict[str, Any]:
        seen = [m for m in self.rec.seen if m.topic == "heatd/t/control/state"]
        return json.loads(seen[-1].payload) if seen else {}

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.rec.seen if m.topic == "heatd/t/events"]

    async def flag(self, name: str, value: bool) -> None:
        await self.server.set(1, Table.DISCRETE, DISCRETE[name], [value])

    async def coil(self, address: int) -> bool:
        return bool((await self.server.get(1, Table.COIL, address, 1))[0])

    async def holding(self, address: int) -> int:
        return int((await self.server.get(1, Table.HOLDING, address, 1))[0])

    async def command(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        ident = f"{name}-{len(self.rec.seen)}"
        mark = len(self.rec.seen)
        await self.client.publish(f"heatd/t/cmd/{name}", json.dumps({**payload, "id": ident}),
                                  qos=1)
        reply = await self.rec.wait(f"heatd/t/cmd/{name}/response",
                                    lambda m: json.loads(m.payload).get("id") == ident,
                                    after=mark)
        return json.loads(reply.payload)

    async def cycles(self, count: int) -> None:
        """Wait for ``count`` more control cycles of the daemon."""
        target = self.daemon.stats.cycles + count
        await until(lambda: self.daemon.stats.cycles >= target)

    async def until_control(self, check: Callable[[dict[str, Any]], object],
                            timeout: float = 10.0) -> dict[str, Any]:
        await until(lambda: check(self.control()), timeout=timeout)
        return self.control()


@contextlib.asynccontextmanager
async def running(tmp_path: Path, b: Mosquitto) -> AsyncIterator[Site]:
    server = SimServer([unit(1)])
    await server.start()
    # 35 degC supply, racks drawing 30 and 25 kW at 22 and 23 degC inlet, 80 kW wanted
    await server.set(1, Table.INPUT, 0, [350, 0, 300, 250, 220, 230, 80])
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(port=server.port, mqtt=b.port))
    daemon = Daemon(path, load_site(path))
    task: asyncio.Task[int] | None = None
    try:
        async with Recorder(b, "heatd/t/#") as rec, b.client() as client:
            task = asyncio.create_task(daemon.run())
            site = Site(daemon, server, rec, client)
            await site.until_control(lambda c: c.get("hp_state") is not None)
            yield site
    finally:
        daemon.request_stop()
        if task is not None:
            await asyncio.wait_for(task, 10)
        await server.stop()


async def test_min_off_timer_defers_the_start_racks_and_network_setpoint(
        tmp_path: Path, broker: Mosquitto) -> None:
    async with running(tmp_path, broker) as site:
        await site.flag("min_off", True)
        held = await site.until_control(lambda c: any(
            x["name"] == "hp_start" and x["cause"] == Cause.HP_OWN_MIN_OFF
            for x in c.get("limits", [])))
        assert held["hp_state"] == "off"
        assert not await site.coil(0)
        # the racks' power is summed for the controller, each rack shown on its own
        (it_power,) = site.daemon.last_snapshot.signals["it.power"]
        assert it_power.good and it_power.value == pytest.approx(55.0)
        racks = held["racks"]
        assert racks["power"] == {"plant.rack_a_power": 30.0, "plant.rack_b_power": 25.0}
        assert racks["inlet"] == {"plant.rack_a_inlet": 22.0, "plant.rack_b_inlet": 23.0}
        assert racks["over_limit"] == []
        # the network setpoint is written as configured
        await until(lambda: site.server.server is not None)
        await until(lambda: reads(site.holding(4), 700), timeout=10)

        # the timer ran out: the heat pump starts; a timer is neither a trip nor a lockout
        await site.flag("min_off", False)
        await site.until_control(lambda c: c.get("hp_state") == "starting")
        await until(lambda: reads(site.coil(0), True), timeout=10)
        assert not any(e.get("to") in ("tripped", "locked_out") for e in site.events())

        # one rack over its inlet limit is named, with its own temperature
        await site.server.set(1, Table.INPUT, 5, [285])
        hot = await site.until_control(lambda c: c.get("racks", {}).get("over_limit"))
        assert hot["racks"]["over_limit"] == ["plant.rack_b_inlet"]
        assert hot["racks"]["inlet"]["plant.rack_b_inlet"] == 28.5
        await until(lambda: any(e.get("name") == "rack_inlet_over_limit"
                                and e.get("point") == "plant.rack_b_inlet"
                                for e in site.events()))

        # an operator leases another network setpoint, in degC, within its bounds only
        reply = await site.command("override", {"role": "dh.supply_setpoint", "value": 75.5,
                                                "ttl": 60})
        assert reply["accepted"] is True
        await until(lambda: reads(site.holding(4), 755), timeout=10)
        refused = await site.command("override", {"role": "dh.supply_setpoint", "value": 90,
                                                  "ttl": 60})
        assert refused["accepted"] is False
        assert "[55, 80]" in refused["reason"]
        cleared = await site.command("override", {"role": "dh.supply_setpoint", "value": None})
        assert cleared["accepted"] is True
        await until(lambda: reads(site.holding(4), 700), timeout=10)


async def test_reset_lockout_pulses_the_reset_output_and_clears_the_latch(
        tmp_path: Path, broker: Mosquitto) -> None:
    async with running(tmp_path, broker) as site:
        refused = await site.command("reset_lockout", {})
        assert refused["accepted"] is False and "not locked out" in refused["reason"]

        await site.flag("lockout", True)
        await site.until_control(lambda c: c.get("hp_state") == "locked_out")
        # the lockout is latched: it stays when the heat pump's own bit clears
        await site.flag("lockout", False)
        await until(lambda: site.daemon.last_snapshot.signals["hp.lockout"][0].value == 0.0)
        await site.cycles(3)
        assert site.daemon.state.seq.state is HpState.LOCKED_OUT
        assert site.control()["hp_state"] == "locked_out"

        await site.flag("lockout", True)
        reply = await site.command("reset_lockout", {"by": "night shift"})
        assert reply["accepted"] is True and "hp.reset" in reply["reason"]
        # the heat pump sees the reset pulse and clears its lockout bit
        await until(lambda: reads(site.coil(1), True), timeout=10)
        await site.flag("lockout", False)
        await site.until_control(lambda c: c.get("hp_state") in ("off", "starting"))
        await until(lambda: reads(site.coil(1), False), timeout=10)  # the pulse ended
        audit = [e for e in site.events()
                 if e.get("kind") == "command" and e.get("command") == "reset_lockout"]
        assert [e["accepted"] for e in audit] == [False, True]
        assert audit[1]["args"]["by"] == "night shift"


def test_network_setpoint_bounds_are_checked_with_file_line_and_field(tmp_path: Path) -> None:
    text = SITE.format(port=502, mqtt=1883)
    text = text.replace("{value: 70, min: 55, max: 80}\n",
                        "{value: 70, min: 55, max: 80}\n  unknown.output: {value: 1, min: 0, "
                        "max: 2}\n")
    text = text.replace("  dh.supply_setpoint: plant.network_setpoint\n", "")
    with pytest.raises(ConfigError) as caught:
        parse_site(text, "site.yaml")
    problems = [str(p) for p in caught.value.problems]
    assert any(p.startswith("site.yaml:46: setpoints.dh.supply_setpoint: ")
               and "not bound" in p for p in problems), problems
    assert any(p.startswith("site.yaml:47: setpoints.unknown.output: ") for p in problems)

    bound = SITE.format(port=502, mqtt=1883).replace("min: 55", "min: 35")
    with pytest.raises(ConfigError) as caught:
        parse_site(bound, "site.yaml")
    (problem,) = caught.value.problems
    assert str(problem) == ("site.yaml:47: setpoints.dh.supply_setpoint.min: 35 degC is "
                            "below write_min 40 of plant.network_setpoint")

    unset = SITE.format(port=502, mqtt=1883).replace(
        "setpoints:\n  dh.supply_setpoint: {value: 70, min: 55, max: 80}\n", "")
    with pytest.raises(ConfigError) as caught:
        parse_site(unset, "site.yaml")
    assert any("roles.dh.supply_setpoint: dh.supply_setpoint needs setpoints." in str(p)
               for p in caught.value.problems)


def test_rack_power_is_summed_and_unknown_while_a_rack_is(tmp_path: Path) -> None:
    site = parse_site(SITE.format(port=502, mqtt=1883), "site.yaml")
    image = PointImage(point_limits(site))
    image.update("plant.rack_a_power", Reading(30.0, Quality.GOOD, 0.0, heard_at=100.3), 100.3)
    image.update("plant.rack_b_power", Reading(25.5, Quality.GOOD, 0.0, heard_at=100.2), 100.2)
    (power,) = control_snapshot(site, image.snapshot(100.4), 100.4).signals["it.power"]
    assert power == Signal(55.5, True, 100.2)  # as old as the oldest rack
    image.update("plant.rack_b_power", Reading.bad("timeout", 0.0), 100.4)
    (power,) = control_snapshot(site, image.snapshot(100.4), 100.4).signals["it.power"]
    assert not power.good and power.value is None
    assert power.reason == "point 1: bad:timeout"


def test_a_true_false_value_for_a_quantity_is_no_number_to_control(tmp_path: Path) -> None:
    """A driver that hands a flag where a temperature is bound (a Boolean node, a coil
    read by mistake) gives control no 1.0 degC: the signal is bad."""
    site = parse_site(SITE.format(port=502, mqtt=1883), "site.yaml")
    image = PointImage(point_limits(site))
    image.update("plant.supply", Reading(True, Quality.GOOD, 0.0, heard_at=100.3), 100.3)
    (supply,) = control_snapshot(site, image.snapshot(100.4), 100.4).signals[
        "coolant.supply_temp"]
    assert not supply.good and supply.value is None
    assert supply.reason == "a true/false value for a quantity"


def test_a_start_the_heat_pumps_own_timer_holds_is_called_off_not_tripped() -> None:
    params = SequencerParams(start_timeout_s=5.0)
    values = {"hp.running": 0.0, "hp.fault": 0.0}
    st = SeqState.found(False, params, 0.0)
    out = sequence(True, Layer.OPTIMISER, device_bounds(), values, st, params, 1.0)
    assert out.state.state is HpState.STARTING and out.enable
    held = {**values, "hp.min_off_active": 1.0}
    for now in (2.0, 10.0, 100.0):  # far past the start timeout: no trip, no lockout
        out = sequence(True, Layer.OPTIMISER, device_bounds(), held, out.state, params, now)
        assert out.state.state is HpState.OFF and not out.enable
        assert [x.cause for x in out.limits] in ([], [Cause.HP_OWN_MIN_OFF])
    assert out.state.starts == ()  # the start that did not happen is not counted
    out = sequence(True, Layer.OPTIMISER, device_bounds(), values, out.state, params, 101.0)
    assert out.state.state is HpState.STARTING and out.enable


def test_the_simulator_serves_each_rack_meter_a_share_of_the_it_power() -> None:
    site = parse_site(SITE.format(port=502, mqtt=1883), "site.yaml")
    bindings = bind_site(site, set())
    shares = [bindings[ref] for ref in site.role_points("it.power")]
    assert [(b.sensor, b.served(120.0)) for b in shares] == [("it_power", 60.0)] * 2
    assert bindings["plant.supply"].served(35.0) == 35.0
