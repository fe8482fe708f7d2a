"""The benchmark table's plumbing (no benchmark runs here): rows judge their targets,
results files round-trip, ``bench/compare.py`` finds regressions in the right direction
and refuses a file that is not a results file."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPARE = ROOT / "bench" / "compare.py"

_spec = importlib.util.spec_from_file_location("bench_results", ROOT / "bench" / "results.py")
assert _spec is not None and _spec.loader is not None
results = importlib.util.module_from_spec(_spec)
sys.modules["bench_results"] = results
_spec.loader.exec_module(results)
Row, Target = results.Row, results.Target


def rows(poll_ms: float = 10.0, rss: float = 45.0, msgs: float = 4000.0) -> list:
    return [
        Row("poll, 500 points", "ms", poll_ms, 8.0, Target("ratio", "<=", 1.3)),
        Row("RSS, Modbus-only site", "MiB", rss, None, Target("value", "<=", 40.0)),
        Row("MQTT throughput", "msg/s", msgs, 4000.0, Target("ratio", ">=", 0.8),
            better="higher", note="2000 events"),
        Row("import heatd.runtime", "ms", 300.0, 30.0, None),
    ]


def compare(tmp: Path, old: list, new: list, *extra: str) -> subprocess.CompletedProcess[str]:
    results.dump(old, {"commit": "old"}, tmp / "old.json")
    results.dump(new, {"commit": "new"}, tmp / "new.json")
    return subprocess.run([sys.executable, str(COMPARE), str(tmp / "old.json"),
                           str(tmp / "new.json"), *extra],
                          capture_output=True, text=True, timeout=60, check=False)


def test_rows_judge_their_targets_on_value_or_ratio() -> None:
    poll, rss, mqtt, imports = rows()
    assert poll.ratio == pytest.approx(1.25) and poll.passed is True
    assert rss.ratio is None and rss.passed is False
    assert mqtt.passed is True and Row("m", "x", 3000.0, 4000.0, mqtt.target).passed is False
    assert imports.passed is None
    table = results.render(rows())
    assert "FAIL" in table and "pass" in table and "notes:" in table


def test_results_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    results.dump(rows(), {"commit": "abc", "quick": True}, path)
    data = json.loads(path.read_text())
    assert data["schema"] == results.SCHEMA and data["quick"] is True
    assert {"metric", "unit", "heatd", "baseline", "ratio", "target", "pass"} <= set(
        data["rows"][0])
    meta, loaded = results.load(path)
    assert meta == {"commit": "abc", "quick": True}
    assert loaded == rows()


def test_compare_flags_only_changes_beyond_tolerance(tmp_path: Path) -> None:
    same = compare(tmp_path, rows(), rows(poll_ms=10.5))  # +5 % of the ratio
    assert same.returncode == 0, same.stdout
    assert "0 regressions" in same.stdout

    slower = compare(tmp_path, rows(), rows(poll_ms=12.0))  # ratio 1.25 -> 1.5
    assert slower.returncode == 1
    assert "poll, 500 points" in slower.stdout and "REGRESSION" in slower.stdout


def test_compare_follows_each_rows_direction(tmp_path: Path) -> None:
    fewer = compare(tmp_path, rows(), rows(msgs=3000.0))  # throughput down 25 %
    assert fewer.returncode == 1 and "MQTT throughput" in fewer.stdout
    more = compare(tmp_path, rows(), rows(msgs=6000.0, rss=30.0))
    assert more.returncode == 0 and "better" in more.stdout
    loose = compare(tmp_path, rows(), rows(msgs=3000.0), "--tolerance", "0.3")
    assert loose.returncode == 0


def test_compare_refuses_what_is_not_a_results_file(tmp_path: Path) -> None:
    results.dump(rows(), {}, tmp_path / "good.json")
    bad = json.loads((tmp_path / "good.json").read_text())
    bad["rows"][1]["heatd"] = "lots"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    done = subprocess.run([sys.executable, str(COMPARE), str(tmp_path / "good.json"),
                           str(tmp_path / "bad.json")], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert f"{tmp_path / 'bad.json'}: rows[1]" in done.stderr
