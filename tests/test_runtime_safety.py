"""The daemon's safety paths, in-process against a real Modbus server: a failing control
step, the flow_min worst case and a clean stop all put the safe state on the device
(clamped to the write bounds, whatever the caches say); overruns are counted; a wall-clock
step cannot keep a dead sensor good, and the core's own staleness rule fires on the
reading time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import heatd.runtime
from heatd.drivers.modbus import Table
from heatd.drivers.reading import Quality
from heatd.hil.rig.heartbeat import PLC, SENSORS, VALVE_ADDRESS, Rig, running
from heatd.hil.rig.waiting import until

FAN_ADDRESS = 2


async def registers(rig: Rig) -> list[int]:
    """Heartbeat, valve (0.1 %) and fan (0.1 %) as the device holds them."""
    return await rig.server.get(PLC, Table.HOLDING, 0, 3)


async def wait_for(rig: Rig, valve: int, fan: int, timeout: float = 10.0) -> None:
    """Until the device holds this valve and fan (0.1 %)."""
    async def held() -> bool:
        return (await registers(rig))[1:] == [valve, fan]

    await until(held, timeout, what=f"valve {valve}, fan {fan} on the device")


async def test_an_exception_in_the_control_step_writes_the_safe_state(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("a bug in the control core")

    monkeypatch.setattr(heatd.runtime, "step", broken)
    async with running(tmp_path, serial=False, fan_max=80) as rig:
        await rig.server.set(PLC, Table.HOLDING, VALVE_ADDRESS, [500, 0])  # 50 %, fans off
        # valve to the dry-cooler side, fans at their highest allowed speed (80 %, not 100)
        await wait_for(rig, valve=0, fan=800)
        assert not any(name == "setpoint_out_of_bounds" for name, _ in rig.daemon.alarms)


async def test_flow_below_flow_min_is_the_worst_case(tmp_path: Path) -> None:
    async with running(tmp_path, serial=False, fan_max=80,
                       control="{envelope: {flow_min: 5.0}}") as rig:
        await rig.server.set(SENSORS, Table.HOLDING, 1, [20])  # 2.0 m3/h
        await rig.server.set(PLC, Table.HOLDING, VALVE_ADDRESS, [500, 0])

        def flow_limit() -> bool:
            decision = rig.daemon.last_decision
            return decision is not None and any(
                x.reason == "coolant flow below minimum" for x in decision.limits)

        await until(flow_limit, timeout=10)
        await wait_for(rig, valve=0, fan=800)


async def test_a_clean_stop_sends_the_safe_state_the_device_already_holds(
        tmp_path: Path) -> None:
    async with running(tmp_path, serial=False) as rig:
        # starting up is the worst case: the safe state goes out and is verified
        await until(lambda: all(s["verified"] for s in rig.daemon.writer.status().values()),
                    timeout=10)
        stopped_at = time.monotonic()
        await rig.stop()
        for address in (VALVE_ADDRESS, FAN_ADDRESS):
            assert any(r.at > stopped_at for r in rig.server.writes(PLC, address)), address


async def test_overruns_are_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = heatd.runtime.step
    cycle = 0.2

    def slow(*args: object) -> object:
        time.sleep(cycle * 1.5)  # longer than the period, on any machine
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(heatd.runtime, "step", slow)
    async with running(tmp_path, serial=False, cycle=cycle) as rig:
        await until(lambda: rig.daemon.stats.cycles >= 3, timeout=10)
        summary = rig.daemon.stats.summary()
        assert summary["overruns"] == summary["cycles"] >= 3


async def test_a_wall_clock_step_back_does_not_keep_a_dead_sensor_good(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path, serial=False, max_age=1.0) as rig:
        daemon = rig.daemon
        await until(lambda: daemon.last_points is not None
                    and daemon.last_points["sensors.supply"].quality is Quality.GOOD, timeout=10)
        await daemon.acquisition.stop()  # nothing is heard from the sensor any more
        wall = time.time
        monkeypatch.setattr(time, "time", lambda: wall() - 3600.0)  # NTP steps back an hour
        await until(lambda: daemon.last_points is not None
                    and daemon.last_points["sensors.supply"].quality is Quality.STALE,
                    timeout=10)


async def test_the_cores_staleness_rule_sees_the_reading_time(tmp_path: Path) -> None:
    # the point itself may be 30 s old; the control core allows its inputs 1 s
    async with running(tmp_path, serial=False, max_age=30.0,
                       control="{validation: {stale_after_s: 1.0}}") as rig:
        daemon = rig.daemon
        await until(lambda: daemon.last_points is not None
                    and daemon.last_points["sensors.supply"].quality is Quality.GOOD, timeout=10)
        await daemon.acquisition.stop()

        def judged_stale() -> bool:
            decision = daemon.last_decision
            return decision is not None and "coolant.supply_temp" in decision.invalid

        await until(judged_stale, timeout=10)
        assert daemon.last_points is not None
        assert daemon.last_points["sensors.supply"].quality is Quality.GOOD
