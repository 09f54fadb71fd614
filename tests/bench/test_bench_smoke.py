"""The benchmark, run tiny through its command, so that it cannot rot: every
design starts, W1a delivers, W3 measures memory, the JSON has its keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_runs_tiny(tmp_path: Path) -> None:
    out = tmp_path / "results"
    plot = tmp_path / "plot.png"
    # The benchmark connects all its sockets as one user: lift the per-user
    # connection limit (MAX_CONNECTIONS_PER_USER, docs/security.md) for its
    # gateways, which inherit this environment.
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--scale", "0.02", "--workloads", "w1a,w3",
         "--out", str(out), "--plot", str(plot)],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
        env={**os.environ, "MAX_CONNECTIONS_PER_USER": "0"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [path] = list(out.glob("*.json"))
    doc = json.loads(path.read_text())
    assert {"machine", "versions", "results", "ratios", "scale"} <= doc.keys()
    by = {(r["workload"], r["design"]): r for r in doc["results"]}
    assert set(by) == {(w, d) for w in ("w1a", "w3") for d in ("floor", "naive", "switchboard")}
    for r in doc["results"]:
        assert "failed" not in r, r
        assert r["connected"] == r["connections"], r

    w1a = by[("w1a", "switchboard")]
    for key in ("delivered_fraction", "deliveries_per_s", "latency_ms", "cpu_s_per_1k_deliveries",
                "cpu_us_per_delivery", "server_cpu_s", "redis_cpu_s", "rss_kb_per_conn"):
        assert key in w1a, key
    assert {"p50", "p99", "max"} <= w1a["latency_ms"].keys()
    assert w1a["delivered_fraction"] == 1.0
    assert w1a["expected"] == w1a["messages"] * w1a["connections"] > 0
    assert by[("w1a", "floor")]["delivered_fraction"] == 1.0
    for design in ("floor", "naive", "switchboard"):
        assert by[("w3", design)]["rss_kb_per_conn"] > 0

    assert {"cpu_per_delivery", "p99", "delivered_fraction"} <= doc["ratios"]["switchboard"]["w1a"].keys()
    assert "rss_per_conn" in doc["ratios"]["switchboard"]["w3"]
    assert plot.stat().st_size > 0
    assert "Ratios to the floor" in proc.stdout
