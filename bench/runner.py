"""The benchmark command.

For every workload: a warm-up round (every design once at a tenth of the
size, discarded), then ``--reps`` rounds in which every design runs once, in
the same order (floor, naive, switchboard, ...: A B C, A B C, ...). Every
run starts fresh server processes on the shared Redis, drives the workload
from separate client processes, measures and stops them; the runner waits
(bounded) for the machine to be idle between runs. Then the summary
(median and min-max over the rounds), the ratios to the floor, the JSON and
the plot.

What is measured (per run):

- deliveries: ``message`` frames received by the clients whose text carries
  a bench send time; delivered fraction = deliveries / (messages x members);
- latency p50/p99/max: receive wall time - the send time in the text (all
  processes on one host, one clock);
- deliveries/s: deliveries / (last delivery - start of the schedule);
- server CPU: utime+stime from /proc/<pid>/stat of every server process,
  before ``go`` and after the last client reported, per delivery (or per
  probe join); Redis CPU the same way; client CPU and whole-machine busy
  share for context;
- setup: fill time (connect + join every connection) and the server CPU it
  took, per connection (= CPU per join, handshake included);
- memory: VmRSS of the server processes (and Redis) right after start and
  after every connection joined, divided by the connections;
- closes seen by the clients, by code: 1011 (keepalive) apart from 1013
  (slow consumer).
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
from switchboard_harness.cluster import RedisClusterProcess

from bench import report
from bench.client import raise_nofile, worker_main
from bench.launch import LOOPS
from bench.servers import (
    CLK_TCK,
    DESIGNS,
    ROOT,
    TOKEN_SECRET,
    Options,
    Server,
    cpu_seconds,
    recorded_path,
    rss_kb,
    source_info,
)
from bench.workloads import DEFAULT, WORKLOADS, Workload

PAD = "lorem ipsum dolor sit amet, consectetur adipiscing"  # a chat-sized text (~90 chars in all)
WARMUP_SCALE = 0.1

Redis = RedisProcess | RedisClusterProcess


def redis_pids(redis: Redis) -> list[int]:
    """Every redis-server process of the run (one, or every cluster node)."""
    if isinstance(redis, RedisClusterProcess):
        return list(redis.pids().values())
    assert redis.proc is not None
    return [redis.proc.pid]


def start_redis(kind: str, maxclients: int) -> Redis:
    """``standalone``: one redis-server. ``cluster``: 3 primaries, no replicas
    (docs/performance.md, "Redis Cluster"); the gateways get every primary as
    a seed in REDIS_URL."""
    if kind == "cluster":
        cluster = RedisClusterProcess(primaries=3, replicas=0).start()
        for port in cluster.primary_ports():
            cluster.command(port, "CONFIG", "SET", "maxclients", str(maxclients))
        return cluster
    single = RedisProcess().start()
    single.command("CONFIG", "SET", "maxclients", str(maxclients))
    return single


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


def plan(w: Workload, servers: list[Server], procs: int, token: str | None, loop: str) -> list[dict[str, Any]]:
    """One spec per client process (see ``bench.client.Worker``)."""
    room_of = w.room_of_conn()
    per_room = w.messages_per_room()
    members = dict(w.rooms)
    specs: list[dict[str, Any]] = [
        {"conns": [], "probes": [], "publish": [], "expected": 0, "token": token, "pad": PAD, "loop": loop,
         "deadline_s": w.deadline_s, "stall_s": w.stall_s, "concurrency": 64, "probe_concurrency": 8}
        for _ in range(procs)
    ]
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
    for i, room in enumerate(w.probes):
        specs[i % procs]["probes"].append((servers[i % w.servers].ws_url, room))
    assert sum(s["expected"] for s in specs) == sum(members[r] * n for r, n in per_room.items())
    return [s for s in specs if s["conns"] or s["probes"]]


def _sum_counts(items: list[dict[str, Any]], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in items:
        for k, v in d.get(key, {}).items():
            out[str(k)] = out.get(str(k), 0) + v
    return out


def run_one(design: str, w: Workload, redis: Redis, opts: Options, client_procs: int) -> dict[str, Any]:
    servers = DESIGNS[design](opts, w.servers, f"{w.key}-{int(time.time() * 1000)}")
    pids = [s.pid for s in servers]
    redis_pid_list = redis_pids(redis)
    token = make_token(TOKEN_SECRET, "bench", name="bench", ttl=3600) if design.startswith("switchboard") else None
    result: dict[str, Any] = {"workload": w.key, "design": design, "title": w.title, "servers": len(servers),
                              "connections": w.connections, "probes": len(w.probes), "uvloop": all(s.uvloop for s in servers),
                              "origin": recorded_path(servers[0].origin) if servers else None,
                              "redis_processes": len(redis_pid_list)}
    pool = None
    try:
        rss_before = sum(rss_kb(p) for p in pids)
        redis_rss_before = sum(rss_kb(p) for p in redis_pid_list)
        specs = plan(w, servers, client_procs, token, opts.loop)
        setup_cpu0 = sum(cpu_seconds(p) for p in pids)
        started = time.monotonic()
        pool = ClientPool(specs)
        ready = pool.gather("ready", timeout=w.setup_timeout_s)
        setup_s = time.monotonic() - started
        setup_cpu = sum(cpu_seconds(p) for p in pids) - setup_cpu0
        connected = sum(r["connected"] for r in ready)
        failures = _sum_counts(ready, "failures")
        rss_after = sum(rss_kb(p) for p in pids)
        result.update(connected=connected, connect_failures=failures, setup_s=round(setup_s, 2),
                      setup_cpu_s=round(setup_cpu, 3),
                      setup_cpu_ms_per_conn=round(setup_cpu / max(1, connected) * 1000, 4),
                      rss_before_kb=rss_before, rss_after_kb=rss_after,
                      rss_kb_per_conn=round((rss_after - rss_before) / max(1, connected), 2),
                      redis_rss_kb_per_conn=round((sum(rss_kb(p) for p in redis_pid_list) - redis_rss_before) / max(1, connected), 2))
        if connected < w.connections:
            raise RuntimeError(f"only {connected} of {w.connections} connected ({failures}): not the workload")
        if w.kind == "idle":
            return result
        print(f"   {connected}/{w.connections} connected in {result['setup_s']} s", flush=True)
        cpu0 = [cpu_seconds(p) for p in pids]
        redis_cpu0 = sum(cpu_seconds(p) for p in redis_pid_list)
        client_cpu0 = pool.cpu()
        busy0 = machine_busy()
        t0 = time.time() + 0.5
        if w.kind == "probe":
            pool.send(("probe",))
            done = pool.gather("done", timeout=w.setup_timeout_s)
        else:
            pool.send(("go", t0))
            done = pool.gather("done", timeout=w.deadline_s + 60)
        cpu1 = [cpu_seconds(p) for p in pids]
        server_cpu = sum(cpu1) - sum(cpu0)
        busy1 = machine_busy()
        redis_cpu = sum(cpu_seconds(p) for p in redis_pid_list) - redis_cpu0
        client_cpu = pool.cpu() - client_cpu0
        busy_s = (busy1[0] - busy0[0]) / CLK_TCK
        result.update(
            server_cpu_s=round(server_cpu, 3),
            server_cpu_per_process_s=[round(b - a, 3) for a, b in zip(cpu0, cpu1)],
            redis_cpu_s=round(redis_cpu, 3),
            client_cpu_s=round(client_cpu, 3),
            machine_busy=round((busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 3),
            # CPU the machine spent outside this run's processes (other users: noise).
            other_cpu_s=round(max(0.0, busy_s - server_cpu - redis_cpu - client_cpu), 2),
            errors=_sum_counts(done, "errors"),
            closes=_sum_counts(done, "closes"),
            close_reasons=_sum_counts(done, "close_reasons"),
            open_after=sum(d["open"] for d in done),
        )
        if w.kind == "probe":
            joins = sum(d["joins"] for d in done)
            times = array("d")
            for d in done:
                times.frombytes(d["join_ms"])
            times = array("d", sorted(times))
            result.update(
                joins=joins,
                join_failures=_sum_counts(done, "failures"),
                cpu_ms_per_join=round(server_cpu / joins * 1000, 4) if joins else None,
                join_ms={"p50": round(_percentile(times, 50), 3), "p99": round(_percentile(times, 99), 3)},
            )
            return result
        received = sum(d["received"] for d in done)
        expected = sum(d["expected"] for d in done)
        lat = array("d")
        for d in done:
            lat.frombytes(d["latencies"])
        lat = array("d", sorted(lat))
        last = max((d["last_recv"] for d in done if d["received"]), default=t0)
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
            cpu_s_per_1k_deliveries=round(server_cpu / received * 1000, 5) if received else None,
            cpu_us_per_delivery=round(server_cpu / received * 1e6, 2) if received else None,
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
    for name in ("websockets", "uvicorn", "uvloop", "starlette", "redis", "hiredis", "msgspec"):
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
    return {"cpu": model, "cores": os.cpu_count(), "mem_mb": mem, "kernel": platform.release(),
            "loadavg_at_start": os.getloadavg()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description="Switchboard vs the floor and the naive design (see docs/performance.md).")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies connections and messages (default 1)")
    parser.add_argument("--workloads", default=",".join(DEFAULT), help=f"comma-separated, of {','.join(WORKLOADS)}")
    parser.add_argument("--designs", default="floor,naive,switchboard,switchboard-nofast",
                        help=f"comma-separated, in the order each round runs them, of {','.join(DESIGNS)}")
    parser.add_argument("--reps", type=int, default=3, help="measured rounds per workload (default 3)")
    parser.add_argument("--warmup", type=int, default=1,
                        help=f"warm-up rounds per workload at {WARMUP_SCALE:g}x the size, discarded (default 1)")
    parser.add_argument("--loop", choices=LOOPS, default="uvloop",
                        help="the event loop of every server and client process (default uvloop)")
    parser.add_argument("--switchboard-src", type=Path, default=None, metavar="DIR",
                        help="run the Switchboard designs from this checkout (e.g. ../switchboard-before)")
    parser.add_argument("--redis", choices=("standalone", "cluster"), default="standalone",
                        help="one redis-server, or a local 3-primary Redis Cluster (switchboard designs only)")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--settle", type=float, default=15.0, metavar="S",
                        help="before each run, wait up to S seconds for the machine to be 85%% idle (default 15)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="directory for <timestamp>.json")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "perf" / "latency_cpu.png"),
                        help="PNG path for the plot, or 'none'")
    parser.add_argument("--logs", default=None, help="directory for server logs (default: a temp dir, removed)")
    parser.add_argument("--replot", metavar="JSON", default=None,
                        help="run nothing: print the tables and draw the plot of a saved result")
    args = parser.parse_args(argv)
    args.workloads = [k.strip().lower() for k in args.workloads.split(",") if k.strip()]
    args.designs = [d.strip().lower() for d in args.designs.split(",") if d.strip()]
    for k in args.workloads:
        if k not in WORKLOADS:
            parser.error(f"unknown workload {k!r}")
    for d in args.designs:
        if d not in DESIGNS:
            parser.error(f"unknown design {d!r}")
    if args.redis == "cluster" and any(not d.startswith("switchboard") for d in args.designs):
        parser.error("--redis cluster runs the switchboard designs only (the baselines take one Redis URL)")
    if args.reps < 1 or args.warmup < 0:
        parser.error("--reps must be at least 1 and --warmup at least 0")
    if args.switchboard_src is not None:
        args.switchboard_src = args.switchboard_src.resolve()
        if not (args.switchboard_src / "services" / "gateway" / "switchboard_gateway").is_dir():
            parser.error(f"--switchboard-src {args.switchboard_src}: no services/gateway/switchboard_gateway there")
    return args


def designs_for(w: Workload, designs: list[str]) -> list[str]:
    """The designs that run on `w`: those it does not skip; the no-fast-path
    variant only where messages are fanned out."""
    return [d for d in designs if d not in w.skip and (w.fanout or d != "switchboard-nofast")]


def _measure(design: str, w: Workload, redis: Redis, opts: Options, args: argparse.Namespace,
             label: str) -> dict[str, Any]:
    print(f"-- {label} {w.title} :: {design}", flush=True)
    waited = settle(args.settle)
    load_before = os.getloadavg()[0]
    t = time.monotonic()
    try:
        r = run_one(design, w, redis, opts, args.client_procs)
    except Exception as exc:
        r = {"workload": w.key, "design": design, "title": w.title, "failed": f"{type(exc).__name__}: {exc}"}
    r["wall_s"] = round(time.monotonic() - t, 1)
    r["settle_s"] = round(waited, 1)
    r["loadavg_1m_before"] = round(load_before, 2)
    print("   " + report.summary_line(r), flush=True)
    return r


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.replot:
        doc = json.loads(Path(args.replot).read_text())
        report.summarise(doc)
        print(report.tables(doc))
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
        "reps": args.reps,
        "warmup": args.warmup,
        "loop": args.loop,
        "designs": args.designs,
        "client_procs": args.client_procs,
        "redis": args.redis,
        "nofile": nofile,
        "switchboard_source": source_info(args.switchboard_src),
        "machine": _machine(),
        "versions": _versions(),
        "results": [],
    }
    redis = start_redis(args.redis, max(1000, nofile - 64))
    try:
        opts = Options(redis.url, args.loop, log_dir, args.switchboard_src)
        for key in args.workloads:
            w = WORKLOADS[key](args.scale)
            designs = designs_for(w, args.designs)
            for design in args.designs:
                if design not in designs:
                    doc["results"].append({"workload": w.key, "design": design, "title": w.title,
                                           "skipped": w.skip.get(design, "no fan-out in this workload")})
            for warm in range(args.warmup):
                small = WORKLOADS[key](args.scale * WARMUP_SCALE)
                for design in designs:
                    _measure(design, small, redis, opts, args, f"[warm-up {warm + 1}]")
            for rep in range(args.reps):
                for design in designs:
                    r = _measure(design, w, redis, opts, args, f"[round {rep + 1}/{args.reps}]")
                    r["round"] = rep
                    doc["results"].append(r)
    finally:
        redis.cleanup()
    doc["wall_s"] = round(time.time() - started, 1)
    doc["machine"]["loadavg_at_end"] = os.getloadavg()
    report.summarise(doc)
    print()
    print(report.tables(doc))
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
