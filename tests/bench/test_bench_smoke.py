"""The benchmark, run tiny through its command, so that it cannot rot: every
design starts on the chosen event loop, the rounds interleave, W1a delivers,
W3 measures memory, the big-room workloads fill, join and deliver, and the
JSON has its summary and ratios."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench(tmp_path: Path, *args: str, timeout: float = 120) -> tuple[dict[str, Any], str]:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--out", str(out), "--settle", "0.5", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [path] = list(out.glob("*.json"))
    return json.loads(path.read_text()), proc.stdout


def test_bench_runs_tiny(tmp_path: Path) -> None:
    plot = tmp_path / "plot.png"
    doc, stdout = _bench(tmp_path, "--scale", "0.02", "--workloads", "w1a,w3", "--reps", "2", "--warmup", "0",
                         "--plot", str(plot))
    assert {"machine", "versions", "results", "summary", "ratios", "targets", "scale", "loop"} <= doc.keys()
    measured = [r for r in doc["results"] if "skipped" not in r]
    designs = ["floor", "naive", "switchboard", "switchboard-nofast"]
    # A B C D, A B C D: every round runs every design, in the same order.
    w1a = [(r["round"], r["design"]) for r in measured if r["workload"] == "w1a"]
    assert w1a == [(rnd, d) for rnd in (0, 1) for d in designs]
    for r in measured:
        assert "failed" not in r, r
        assert r["connected"] == r["connections"], r
        assert r["uvloop"] is True, r  # the default: every design on uvloop
    # W3 has no fan-out: the no-fast-path variant is not run there.
    assert {r["design"] for r in measured if r["workload"] == "w3"} == set(designs[:3])

    run = next(r for r in measured if r["workload"] == "w1a" and r["design"] == "switchboard")
    for key in ("delivered_fraction", "deliveries_per_s", "latency_ms", "cpu_us_per_delivery", "server_cpu_s",
                "redis_cpu_s", "rss_kb_per_conn", "setup_s", "setup_cpu_ms_per_conn", "closes"):
        assert key in run, key
    assert run["delivered_fraction"] == 1.0
    assert run["expected"] == run["messages"] * run["connections"] > 0

    summary = doc["summary"]["w1a"]["switchboard"]
    assert summary["runs"] == 2 and summary["delivered_fraction"]["n"] == 2
    assert summary["cpu_us_per_delivery"]["min"] <= summary["cpu_us_per_delivery"]["median"] \
        <= summary["cpu_us_per_delivery"]["max"]
    assert {"cpu_us_per_delivery", "p99_ms"} <= doc["ratios"]["w1a"]["switchboard"].keys()
    assert "rss_kb_per_conn" in doc["ratios"]["w3"]["switchboard"]
    assert plot.stat().st_size > 0
    assert "Ratios to the floor" in stdout


def test_bench_big_rooms_tiny(tmp_path: Path) -> None:
    """The issue-11 workloads at a tiny size, on the stdlib loop this time."""
    doc, stdout = _bench(tmp_path, "--scale", "0.002", "--workloads", "room5k,join10,join10k,big20k",
                         "--designs", "floor,switchboard", "--reps", "1", "--warmup", "0", "--loop", "asyncio",
                         "--plot", "none")
    by = {(r["workload"], r["design"]): r for r in doc["results"] if "skipped" not in r}
    assert set(by) == {(w, d) for w in ("room5k", "join10", "join10k", "big20k") for d in ("floor", "switchboard")}
    for r in by.values():
        assert "failed" not in r, r
        assert r["connected"] == r["connections"], r
        assert r["uvloop"] is False, r
        assert r["setup_s"] > 0 and r["rss_kb_per_conn"] is not None
    for key in ("join10", "join10k"):
        r = by[(key, "switchboard")]
        assert r["joins"] == r["probes"] > 0 and r["join_failures"] == {}, r
        assert r["join_ms"]["p99"] > 0
    big = by[("big20k", "switchboard")]
    assert big["delivered_fraction"] == 1.0 and big["servers"] == 4
    assert "Joins in the measured phase" in stdout



def test_bench_on_a_redis_cluster_tiny(tmp_path: Path) -> None:
    """``--redis cluster``: the gateways on a 3-primary cluster deliver
    everything, and the Redis CPU counted is that of every node."""
    doc, _ = _bench(tmp_path, "--redis", "cluster", "--scale", "0.02", "--workloads", "w1a,w2",
                    "--designs", "switchboard", "--reps", "1", "--warmup", "0", "--plot", "none")
    assert doc["redis"] == "cluster"
    runs = [r for r in doc["results"] if "skipped" not in r]
    assert {r["workload"] for r in runs} == {"w1a", "w2"}
    for r in runs:
        assert "failed" not in r, r
        assert r["delivered_fraction"] == 1.0, r
        # Counted on every primary (a tiny run may use less than /proc's 10 ms tick: >= 0).
        assert r["redis_processes"] == 3 and r["redis_cpu_s"] >= 0, r
