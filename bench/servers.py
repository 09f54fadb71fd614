"""The servers under test, and what /proc says about them.

A *design* starts N server processes on one Redis and returns them as
``Server`` objects (pid, ws_url, stop). Every process is a direct child
started through ``bench.launch`` (no shell, no uvicorn workers), so its /proc
entry is the whole server, and every design runs on the same event loop.

Designs:

- ``floor``: ``bench.baselines.floor`` (raw ``websockets`` + ``broadcast()``);
- ``naive``: ``bench.baselines.naive`` (Starlette, a Redis subscription per socket);
- ``switchboard``: ``python -m switchboard_gateway`` with its defaults;
- ``switchboard-nofast``: the same with ``WS_FAST_PATH=false`` (the fan-out
  through the ASGI ``send`` of every member instead of one prebuilt frame).

``--switchboard-src DIR`` runs both Switchboard designs from another checkout
(its ``services/gateway`` and ``services/shared`` go first on PYTHONPATH):
the same bench code measures two versions of the gateway.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from switchboard_harness import TEST_JWT_SECRET, free_port

from bench.launch import origin_in, uses_uvloop

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
    uvloop: bool = False
    origin: str | None = None  # the file of the module it runs


@dataclass
class Options:
    """How every design is started in this run."""

    redis_url: str
    loop: str  # "uvloop" | "asyncio"
    log_dir: Path
    switchboard_src: Path | None = None


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _spawn(
    opts: Options, name: str, argv: list[str], env: dict[str, str], port: int, ready: Callable[[], bool],
    timeout: float = 30.0,
) -> Server:
    """Start ``python -m bench.launch --loop L <argv>`` and wait until `ready`."""
    log_path = opts.log_dir / f"{name}-{port}.log"
    log = open(log_path, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "bench.launch", "--loop", opts.loop, *argv],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def stop() -> None:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()

    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {log_path.read_text(errors='replace')[-800:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} on port {port} not ready within {timeout} s")
            time.sleep(0.05)
        loaded = uses_uvloop(proc.pid)
        if loaded != (opts.loop == "uvloop"):
            raise RuntimeError(f"{name} runs on the wrong event loop (uvloop loaded: {loaded}, wanted {opts.loop})")
        origin = origin_in(log_path.read_text(errors="replace"))
        src = opts.switchboard_src
        if name.startswith("gateway") and src is not None and not (origin or "").startswith(str(src) + os.sep):
            raise RuntimeError(f"{name} runs {origin}, not the code under {src}")
    except Exception:
        stop()
        raise
    return Server(proc.pid, f"ws://127.0.0.1:{port}/ws", stop, lambda: log_path.read_text(errors="replace"),
                  loaded, origin)


def _pythonpath(*first: Path) -> str:
    parts = [str(p) for p in first] + [str(ROOT)]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)


def _baseline(module: str, opts: Options, index: int) -> Server:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    return _spawn(opts, f"{module.rsplit('.', 1)[1]}-{index}", [module, "--port", str(port), "--redis", opts.redis_url],
                  env, port, lambda: _port_open(port))


def start_floor(opts: Options, n: int, tag: str) -> list[Server]:
    return _start_each(n, lambda i: _baseline("bench.baselines.floor", opts, i))


def start_naive(opts: Options, n: int, tag: str) -> list[Server]:
    return _start_each(n, lambda i: _baseline("bench.baselines.naive", opts, i))


# The gateway as deployed, with the publish rate limit out of the way (the
# bench publishes faster than a person does). Everything else: defaults.
# The bench measures fan-out, not the abuse limits (docs/security.md): every
# client connects from 127.0.0.1, often as one user, so those limits are lifted.
# (A checkout that predates them ignores the extra variables.)
GATEWAY_ENV = {
    "PUBLISH_RATE": "1000000",
    "PUBLISH_BURST": "1000000",
    "FRAME_RATE": "1000000",
    "FRAME_BURST": "1000000",
    "MAX_CONNECTIONS": "100000",
    "MAX_CONNECTIONS_PER_IP": "100000",
    "MAX_CONNECTIONS_PER_USER": "0",
    "LOG_LEVEL": "warning",
}


def _gateway(opts: Options, index: int, tag: str, extra: dict[str, str]) -> Server:
    port = free_port()
    src = opts.switchboard_src
    first = [src / "services" / "gateway", src / "services" / "shared"] if src else []
    env = {
        **os.environ,
        "PYTHONPATH": _pythonpath(*first),
        "REDIS_URL": opts.redis_url,
        "JWT_SECRET": TEST_JWT_SECRET,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "NODE_ID": f"bench-{tag}-{index}",
        "REDIS_PREFIX": f"bench-{tag}",
        **GATEWAY_ENV,
        **extra,
    }
    return _spawn(opts, f"gateway-{index}", ["switchboard_gateway"], env, port,
                  lambda: _http_ok(f"http://127.0.0.1:{port}/readyz"))


def start_switchboard(opts: Options, n: int, tag: str) -> list[Server]:
    return _start_each(n, lambda i: _gateway(opts, i, tag, {}))


def start_switchboard_nofast(opts: Options, n: int, tag: str) -> list[Server]:
    return _start_each(n, lambda i: _gateway(opts, i, tag, {"WS_FAST_PATH": "false"}))


def _start_each(n: int, start: Callable[[int], Server]) -> list[Server]:
    servers: list[Server] = []
    try:
        for i in range(n):
            servers.append(start(i))
    except Exception:
        for s in servers:
            s.stop()
        raise
    return servers


DESIGNS: dict[str, Callable[[Options, int, str], list[Server]]] = {
    "floor": start_floor,
    "naive": start_naive,
    "switchboard": start_switchboard,
    "switchboard-nofast": start_switchboard_nofast,
}

# Switchboard checks tokens; the baselines ignore them.
TOKEN_SECRET = TEST_JWT_SECRET


def recorded_path(path: str | Path | None) -> str | None:
    """A path as the result JSON records it: under this checkout, as
    ``<repo>/...``, so a committed record names no machine's directories."""
    if path is None:
        return None
    text = str(path)
    root = str(ROOT)
    if text == root or text.startswith(root + os.sep):
        return "<repo>" + text[len(root):]
    return text


def source_info(src: Path | None) -> dict[str, object]:
    """Which gateway code the Switchboard designs run: the checkout and commit."""
    where = src or ROOT
    info: dict[str, object] = {"path": recorded_path(where)}
    try:
        info["commit"] = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True,
                                        text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--", "services"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        info["services_dirty"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    return info
