"""The benchmark command: for every workload, for every design, start fresh
server processes on a shared Redis, drive the workload from separate client
processes, measure, stop; then print the table, write the JSON and the plot.

What is measured (per workload and design):

- deliveries: ``message`` frames received by the clients whose text carries
  a bench send time; delivered fraction = deliveries / (messages x members);
- latency p50/p99/max: receive wall time - the send time in the text (all
  processes on one host, one clock);
- deliveries/s: deliveries / (last delivery - start of the schedule);
- server CPU: utime+stime from /proc/<pid>/stat of every server process,
  before ``go`` and after the last client reported, per delivery; Redis CPU
  the same way; client CPU and whole-machine busy share for context;
- memory: VmRSS of the server processes (and Redis) right after start and
  after every connection joined, divided by the connections.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

from switchboard.client import make_token
from switchboard_harness import RedisProcess

from bench import report
from bench.client import raise_nofile, worker_main
from bench.servers import DESIGNS, ROOT, TOKEN_SECRET, Server, cpu_seconds, rss_kb
from bench.workloads import DEFAULT, WORKLOADS, Workload

PAD = "lorem ipsum dolor sit amet, consectetur adipiscing"  # a chat-sized text (~90 chars in all)


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine (/proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def settle(limit_s: float = 15.0, idle_share: float = 0.85) -> float:
    """Wait (bounded) until the machine is mostly idle again: what a previous
    run left behind (sockets closing, Redis freeing clients) must not be
    charged to the next one. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        busy0, total0 = machine_busy()
        time.sleep(0.25)
        busy1, total1 = machine_busy()
        if total1 > total0 and 1 - (busy1 - busy0) / (total1 - total0) >= idle_share:
            break
    return time.monotonic() - started


def _percentile(sorted_values: array, q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


class ClientPool:
    """The client processes of one run, each with a duplex pipe."""

    def __init__(self, specs: list[dict[str, Any]]) -> None:
        ctx = mp.get_context("spawn")
        self.pipes = []
        self.procs = []
        for spec in specs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(spec, child), daemon=True)
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)

    def gather(self, kind: str, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        out = []
        for pipe, proc in zip(self.pipes, self.procs):
            while not pipe.poll(0.1):
                if not proc.is_alive():
                    raise RuntimeError(f"client process {proc.pid} died (exit {proc.exitcode})")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"client process {proc.pid}: no {kind!r} within {timeout} s")
            message = pipe.recv()
            if message[0] != kind:
                raise RuntimeError(f"client process {proc.pid}: expected {kind!r}, got {message[0]!r}")
            out.append(message[1])
        return out

    def send(self, command: tuple[Any, ...]) -> None:
        for pipe in self.pipes:
            pipe.send(command)

    def cpu(self) -> float:
        total = 0.0
        for proc in self.procs:
            try:
                total += cpu_seconds(proc.pid)
            except OSError:
                pass
        return total

    def close(self) -> None:
        for pipe, proc in zip(self.pipes, self.procs):
            try:
                if proc.is_alive():
                    pipe.send(("exit",))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(15)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for pipe in self.pipes:
            pipe.close()


def plan(w: Workload, servers: list[Server], procs: int, token: str | None) -> list[dict[str, Any]]:
    """One spec per client process (see ``bench.client.Worker``)."""
    room_of = w.room_of_conn()
    per_room = w.messages_per_room()
    members = dict(w.rooms)
    specs = [{"conns": [], "publish": [], "expected": 0, "token": token, "pad": PAD,
              "deadline_s": w.deadline_s, "stall_s": w.stall_s, "concurrency": 64} for _ in range(procs)]
    where: list[tuple[int, int]] = []
    for conn, room in enumerate(room_of):
        worker = (conn // w.servers) % procs
        spec = specs[worker]
        where.append((worker, len(spec["conns"])))
        spec["conns"].append((servers[w.server_of_conn(conn)].ws_url, room))
        spec["expected"] += per_room[room]
    for offset, conn, tag in w.publish:
        worker, index = where[conn]
        specs[worker]["publish"].append((offset, index, tag))
    assert sum(s["expected"] for s in specs) == sum(members[r] * n for r, n in per_room.items())
    return [s for s in specs if s["conns"]]


def run_one(design: str, w: Workload, redis: RedisProcess, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    servers = DESIGNS[design](redis.url, w.servers, log_dir, f"{w.key}-{int(time.time())}")
    pids = [s.pid for s in servers]
    redis_pid = redis.proc.pid  # type: ignore[union-attr]
    token = make_token(TOKEN_SECRET, "bench", name="bench", ttl=3600) if design == "switchboard" else None
    result: dict[str, Any] = {"workload": w.key, "design": design, "title": w.title, "servers": len(servers),
                              "connections": w.connections}
    pool = None
    try:
        rss_before = sum(rss_kb(p) for p in pids)
        redis_rss_before = rss_kb(redis_pid)
        specs = plan(w, servers, args.client_procs, token)
        started = time.monotonic()
        pool = ClientPool(specs)
        ready = pool.gather("ready", timeout=180)
        connected = sum(r["connected"] for r in ready)
        failures: dict[str, int] = {}
        for r in ready:
            for k, v in r["failures"].items():
                failures[k] = failures.get(k, 0) + v
        rss_after = sum(rss_kb(p) for p in pids)
        result.update(connected=connected, connect_failures=failures, setup_s=round(time.monotonic() - started, 2),
                      rss_before_kb=rss_before, rss_after_kb=rss_after,
                      rss_kb_per_conn=round((rss_after - rss_before) / max(1, connected), 2),
                      redis_rss_kb_per_conn=round((rss_kb(redis_pid) - redis_rss_before) / max(1, connected), 2))
        if w.idle:
            return result
        print(f"   {connected}/{w.connections} joined in {result['setup_s']} s", flush=True)
        cpu0 = [cpu_seconds(p) for p in pids]
        redis_cpu0 = cpu_seconds(redis_pid)
        client_cpu0 = pool.cpu()
        busy0 = machine_busy()
        t0 = time.time() + 0.5
        pool.send(("go", t0))
        done = pool.gather("done", timeout=w.deadline_s + 60)
        cpu1 = [cpu_seconds(p) for p in pids]
        redis_cpu1 = cpu_seconds(redis_pid)
        client_cpu1 = pool.cpu()
        busy1 = machine_busy()
        received = sum(d["received"] for d in done)
        expected = sum(d["expected"] for d in done)
        lat = array("d")
        for d in done:
            lat.frombytes(d["latencies"])
        lat = array("d", sorted(lat))
        last = max((d["last_recv"] for d in done if d["received"]), default=t0)
        errors: dict[str, int] = {}
        closes: dict[str, int] = {}
        for d in done:
            for k, v in d["errors"].items():
                errors[k] = errors.get(k, 0) + v
            for k, v in d["closes"].items():
                closes[str(k)] = closes.get(str(k), 0) + v
        server_cpu = sum(cpu1) - sum(cpu0)
        elapsed = max(1e-9, last - t0)
        result.update(
            messages=len(w.publish),
            expected=expected,
            delivered=received,
            delivered_fraction=round(received / expected, 6) if expected else None,
            elapsed_s=round(elapsed, 3),
            deliveries_per_s=round(received / elapsed, 1),
            latency_ms={"p50": round(_percentile(lat, 50), 3), "p99": round(_percentile(lat, 99), 3),
                        "max": round(lat[-1], 3) if lat else None},
            server_cpu_s=round(server_cpu, 3),
            server_cpu_per_process_s=[round(b - a, 3) for a, b in zip(cpu0, cpu1)],
            cpu_s_per_1k_deliveries=round(server_cpu / received * 1000, 5) if received else None,
            cpu_us_per_delivery=round(server_cpu / received * 1e6, 2) if received else None,
            redis_cpu_s=round(redis_cpu1 - redis_cpu0, 3),
            client_cpu_s=round(client_cpu1 - client_cpu0, 3),
            machine_busy=round((busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 3),
            errors=errors,
            closes=closes,
            open_after=sum(d["open"] for d in done),
        )
        return result
    finally:
        for s in servers:  # the servers go first: no disconnect storm to clean up
            s.stop()
        if pool is not None:
            pool.close()


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for name in ("websockets", "uvicorn", "starlette", "redis", "hiredis", "msgspec"):
        try:
            out[name] = version(name)
        except Exception:
            pass
    try:
        out["redis-server"] = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                                             timeout=5).stdout.split()[2].removeprefix("v=")
    except Exception:
        pass
    return out


def _machine() -> dict[str, Any]:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "mem_mb": mem, "kernel": platform.release()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Switchboard vs the floor and the naive design.")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies connections and messages (default 1)")
    parser.add_argument("--workloads", default=",".join(DEFAULT), help=f"comma-separated, of {','.join(WORKLOADS)}")
    parser.add_argument("--w4", action="store_true", help="add W4 (10,000 connections over 4 servers) to --workloads")
    parser.add_argument("--designs", default="floor,naive,switchboard")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="directory for <timestamp>.json")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "perf" / "latency_cpu.png"),
                        help="PNG path for the plot, or 'none'")
    parser.add_argument("--logs", default=None, help="directory for server logs (default: a temp dir)")
    parser.add_argument("--replot", metavar="JSON", default=None,
                        help="run nothing: print the table and draw the plot of a saved result")
    args = parser.parse_args(argv)
    args.workloads = [k.strip().lower() for k in args.workloads.split(",") if k.strip()]
    if args.w4 and "w4" not in args.workloads:
        args.workloads.append("w4")
    args.designs = [d.strip().lower() for d in args.designs.split(",") if d.strip()]
    for k in args.workloads:
        if k not in WORKLOADS:
            parser.error(f"unknown workload {k!r}")
    for d in args.designs:
        if d not in DESIGNS:
            parser.error(f"unknown design {d!r}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.replot:
        doc = json.loads(Path(args.replot).read_text())
        doc["ratios"] = report.ratios(doc["results"])
        print(report.table(doc))
        if args.plot.lower() != "none":
            report.plot(doc, Path(args.plot))
            print(f"plot: {args.plot}")
        return doc
    nofile = raise_nofile()
    log_dir = Path(args.logs or tempfile.mkdtemp(prefix="switchboard-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    doc: dict[str, Any] = {
        "started": stamp,
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "scale": args.scale,
        "client_procs": args.client_procs,
        "nofile": nofile,
        "machine": _machine(),
        "versions": _versions(),
        "results": [],
    }
    redis = RedisProcess().start()
    try:
        redis.command("CONFIG", "SET", "maxclients", str(max(1000, nofile - 64)))
        for key in args.workloads:
            w = WORKLOADS[key](args.scale)
            for design in args.designs:
                print(f"-- {w.title} :: {design}", flush=True)
                settle()
                t = time.monotonic()
                try:
                    r = run_one(design, w, redis, args, log_dir)
                except Exception as exc:
                    r = {"workload": w.key, "design": design, "title": w.title, "failed": f"{type(exc).__name__}: {exc}"}
                r["wall_s"] = round(time.monotonic() - t, 1)
                print("   " + report.summary_line(r), flush=True)
                doc["results"].append(r)
    finally:
        redis.cleanup()
    doc["wall_s"] = round(time.time() - started, 1)
    doc["ratios"] = report.ratios(doc["results"])
    print()
    print(report.table(doc))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stamp}.json"
    path.write_text(json.dumps(doc, indent=2))
    doc["json_path"] = str(path)
    print(f"\nJSON: {path}")
    if args.plot.lower() != "none":
        report.plot(doc, Path(args.plot))
        print(f"plot: {args.plot}")
    if not args.logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    return doc
