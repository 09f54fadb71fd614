"""``python -m bench.cluster`` run tiny, so that it cannot rot: every
topology (one Redis, 1- and 3-primary clusters, SPUBLISH and classic PUBLISH)
delivers every copy and reports positive Redis CPU per message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cluster_bench_runs_tiny(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cluster", "--messages", "300", "--rooms", "20", "--reps", "1",
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [path] = list(tmp_path.glob("cluster-*.json"))
    doc = json.loads(path.read_text())
    rows = {r["row"]: r for r in doc["summary"]}
    assert set(rows) == {"standalone/PUBLISH", "cluster-1/SPUBLISH", "cluster-3/SPUBLISH", "cluster-3/PUBLISH"}
    assert len(rows["cluster-3/SPUBLISH"]["redis_cpu_us_per_msg_by_node"]) == 3
    for row in rows.values():
        assert row["redis_cpu_us_per_msg"] > 0, row
        assert row["publishes_per_s"] > 0, row
    for result in doc["results"]:
        # every message reached every subscribed gateway: the fan-out really happened
        assert result["deliveries"] == result["messages"] * result["subscribers_per_room"], result


def _exit_and_stderr(*argv: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stderr


def test_bad_arguments_are_refused_with_a_clear_error() -> None:
    code, err = _exit_and_stderr("bench.cluster", "--messages", "0")
    assert code == 2 and "must be at least 1" in err
    # the baselines take one Redis URL: they cannot run on a cluster
    code, err = _exit_and_stderr("bench", "--redis", "cluster", "--designs", "floor,switchboard")
    assert code == 2 and "--redis cluster runs the switchboard designs only" in err
