"""The daemon with contracts, against the plant simulator and a real broker: it keeps
controlling, publishes its contract totals retained, and comes back after a kill -9 with
its ledger intact."""

from __future__ import annotations

import signal
from pathlib import Path

from ruamel.yaml import YAML

from heatd.billing.ledger import verify
from heatd.hil.rig.daemon import running_stack

CONTRACTS = {
    "heat_purchase": [{"name": "city", "customer": "City heat network",
                       "min_supply_temp_c": 65.0,
                       "committed": [{"hours": [0, 24], "kw": 100.0}]}],
    "cooling_guarantee": {"rack_inlet_class": "A2",
                          "meter": {"fan_power": "drycooler.fan_power"}},
}


def add_contracts(path: Path) -> None:
    yaml = YAML(typ="rt")
    tree = yaml.load(path.read_text())
    tree["contracts"] = CONTRACTS
    with path.open("w") as stream:
        yaml.dump(tree, stream)


async def test_a_daemon_with_contracts_publishes_totals_and_survives_kill_9(
        tmp_path: Path) -> None:
    async with running_stack(tmp_path, start_daemon=False) as stack:
        add_contracts(stack.site_path)
        stack.start_daemon()
        totals_topic = stack.topic("meter/totals")

        def totals() -> dict | None:
            return stack.observer.last.get(totals_topic)

        first = await stack.until(totals, timeout=30, what="retained contract totals")
        assert first["city"] == {"heat_kwh": 0.0}
        assert set(first["cooling"]) == {"it_kwh", "hp_electricity_kwh"}
        await stack.until(lambda: isinstance(stack.control().get("cooling_margin"), float),
                          timeout=30, what="control running with contracts")
        stack.signal(signal.SIGKILL)
        await stack.wait_exit(5)
        del stack.observer.last[totals_topic]
        stack.start_daemon()
        await stack.until(totals, timeout=30, what="totals after the restart")
        stack.signal(signal.SIGTERM)
        assert await stack.wait_exit(10) == 0
        assert "publishing failed" not in stack.daemon_log()
        assert verify(tmp_path / "meter.sqlite")[1] == []
