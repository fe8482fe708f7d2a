"""``make demo`` in short: the whole chain runs, heatd stops cleanly, KPIs and a plot come
out, and nothing overheats."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "heatd.hil.demo", "--seconds", "20", "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    text = run.stdout
    assert "mosquitto_sub -p" in text
    assert "heatd stopped with exit code 0" in text
    over_limit = re.search(r"supply over its limit\s+([\d.]+) s", text)
    assert over_limit is not None and float(over_limit.group(1)) == 0.0
    assert re.search(r"IT heat reused\s+\d+ kWh", text)
    assert re.search(r"heat delivered\s+\d+ kWh", text)
    decisions = text.split("with heatd's reasons:\n", 1)[1].splitlines()
    for line in decisions[:int(re.findall(r"heat-pump decisions \((\d+)\)", text)[0])]:
        assert re.fullmatch(r"\s+[\d.]+ h  heat pump (\w+ -> \w+|reset): .+ \(\w+\)", line)
    png = out / "demo.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    log = (out / "heatd.log").read_text()
    assert "heatd running" in log
    assert "write_mismatch" not in log  # every setpoint read back as written
    assert "safe state not confirmed" not in log  # the simulator took the safe state
