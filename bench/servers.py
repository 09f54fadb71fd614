"""The servers under test, and what /proc says about them.

A *design* starts N server processes on one Redis and returns them as
``Server`` objects (pid, ws_url, stop). Every process is a direct child
(no shell, no uvicorn workers), so its /proc entry is the whole server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from switchboard_harness import TEST_JWT_SECRET, GatewayProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class Server:
    pid: int
    ws_url: str
    stop: Callable[[], None]
    log: Callable[[], str]


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"server on {port} not listening within {timeout} s")


def _baseline(module: str, redis_url: str, log_dir: Path, index: int) -> Server:
    port = free_port()
    log_path = log_dir / f"{module.rsplit('.', 1)[1]}-{index}-{port}.log"
    log = open(log_path, "ab")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", module, "--port", str(port), "--redis", redis_url],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def stop() -> None:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()

    try:
        _wait_port(port, proc)
    except Exception:
        stop()
        raise
    return Server(proc.pid, f"ws://127.0.0.1:{port}/ws", stop, lambda: log_path.read_text(errors="replace"))


def start_floor(redis_url: str, n: int, log_dir: Path, tag: str) -> list[Server]:
    return [_baseline("bench.baselines.floor", redis_url, log_dir, i) for i in range(n)]


def start_naive(redis_url: str, n: int, log_dir: Path, tag: str) -> list[Server]:
    return [_baseline("bench.baselines.naive", redis_url, log_dir, i) for i in range(n)]


# The gateway as deployed, with the publish rate limit out of the way (the
# bench publishes faster than a person does). Everything else: defaults.
GATEWAY_ENV = {"PUBLISH_RATE": "1000000", "PUBLISH_BURST": "1000000", "LOG_LEVEL": "warning"}


def start_switchboard(redis_url: str, n: int, log_dir: Path, tag: str) -> list[Server]:
    servers: list[Server] = []
    try:
        for i in range(n):
            gw = GatewayProcess(redis_url, node_id=f"bench-{tag}-{i}", log_dir=str(log_dir),
                                REDIS_PREFIX=f"bench-{tag}", **GATEWAY_ENV)
            gw.start()
            servers.append(Server(gw.pid, gw.ws_url, gw.stop, gw.output))
    except Exception:
        for s in servers:
            s.stop()
        raise
    return servers


DESIGNS: dict[str, Callable[[str, int, Path, str], list[Server]]] = {
    "floor": start_floor,
    "naive": start_naive,
    "switchboard": start_switchboard,
}

# Switchboard checks tokens; the baselines ignore them.
TOKEN_SECRET = TEST_JWT_SECRET
