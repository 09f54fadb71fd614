"""Real processes on loopback, for tests, the benchmark and tools: a
``redis-server`` and ``python -m switchboard_gateway`` workers.

Nothing here is mocked: each is a separate OS process, started on a free
port and awaited until it answers (never a fixed sleep).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

TEST_JWT_SECRET = "switchboard-test-secret-0123456789abcdef"
TEST_API_KEY = "switchboard-test-api-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _wait_until(check: Any, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not ready within {timeout} s")


class RedisProcess:
    """A private ``redis-server`` on a free port, without persistence, that a
    test may stop, kill and start again (empty: history lost)."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="switchboard-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisProcess:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--protected-mode", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_until(self.ping, timeout, f"redis on {self.port}", self.proc)
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """One raw command, for fault injection (e.g. CLIENT KILL TYPE pubsub)."""
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"".join(parts))
            return s.recv(65536)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class LoggedProcess:
    """A child process whose output goes to a log file."""

    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        return self.proc

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill()
        if getattr(self, "_log", None) is not None:
            self._log.close()


class GatewayProcess(LoggedProcess):
    """``python -m switchboard_gateway`` on a free port."""

    def __init__(self, redis_url: str, *, node_id: str, log_dir: str | None = None, **env: Any) -> None:
        self.port = free_port()
        self.node_id = node_id
        self.env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "JWT_SECRET": TEST_JWT_SECRET,
            "API_KEY": TEST_API_KEY,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "NODE_ID": node_id,
            "LOG_LEVEL": "warning",
            **{k: str(v) for k, v in env.items()},
        }
        self.log_path = Path(log_dir or tempfile.gettempdir()) / f"gateway-{node_id}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def status(self, path: str) -> int | None:
        return http_status(self.http_url + path)

    def start(self, timeout: float = 20.0, wait_ready: bool = True) -> GatewayProcess:
        self._spawn([sys.executable, "-m", "switchboard_gateway"], self.env)
        if wait_ready:
            self.wait_status("/readyz", 200, timeout)
        return self

    def wait_status(self, path: str, status: int, timeout: float = 20.0) -> None:
        _wait_until(lambda: self.status(path) == status, timeout, f"gateway {self.node_id} {path} == {status}",
                    self.proc if status == 200 else None)

    async def wait_status_async(self, path: str, status: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await asyncio.to_thread(self.status, path) == status:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"gateway {self.node_id} {path} != {status} after {timeout} s")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    async def wait_async(self, timeout: float) -> int:
        return await asyncio.to_thread(self.wait, timeout)


class HAProxyProcess(LoggedProcess):
    """``haproxy -f <cfg> -db`` on a free loopback port, balancing
    ``leastconn`` over the given gateways, health-checking ``/readyz``, with
    an admin socket for runtime commands (``set server ... state maint``)."""

    BACKEND = "gateways"

    def __init__(self, binary: str, gateways: list[GatewayProcess], workdir: Path) -> None:
        self.binary = binary
        self.gateways = gateways
        self.port = free_port()
        self.workdir = workdir
        self.config_path = workdir / "haproxy.cfg"
        self.socket_path = workdir / "haproxy.sock"
        self.log_path = workdir / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        servers = "\n".join(
            f"    server {gw.node_id} 127.0.0.1:{gw.port} check" for gw in self.gateways
        )
        return f"""\
global
    stats socket {self.socket_path} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout queue 5s
    # After the WebSocket upgrade the stream is a tunnel.
    timeout tunnel 1h
    timeout client-fin 5s
    timeout server-fin 5s
    retries 2
    option redispatch

frontend fe_http
    bind 127.0.0.1:{self.port}
    default_backend {self.BACKEND}

backend {self.BACKEND}
    # WebSockets are long sessions: a new one goes to the gateway holding the
    # fewest, so a second browser lands on the other gateway than the first.
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 300ms fall 1 rise 1
{servers}
"""

    def start(self, timeout: float = 10.0) -> HAProxyProcess:
        self.config_path.write_text(self.config())
        self._spawn([self.binary, "-f", str(self.config_path), "-db"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}:\n{self.output()}")
            if http_status(self.url + "/healthz") == 200 and all(s == "UP" for s in self.server_states().values()):
                return self
            time.sleep(0.05)
        raise TimeoutError(f"haproxy not ready within {timeout} s:\n{self.output()}")

    def admin(self, command: str) -> str:
        """One command on the admin socket (non-interactive: it closes after)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(self.socket_path))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def server_states(self) -> dict[str, str]:
        """svname -> status ("UP", "DOWN", "MAINT", ...) of the backend's servers."""
        try:
            raw = self.admin("show stat")
        except OSError:
            return {}
        lines = [line for line in raw.splitlines() if line.strip()]
        if not lines or not lines[0].startswith("# "):
            return {}
        header = lines[0][2:].split(",")
        px, sv, st = header.index("pxname"), header.index("svname"), header.index("status")
        states = {}
        for line in lines[1:]:
            fields = line.split(",")
            if fields[px] == self.BACKEND and fields[sv] not in ("FRONTEND", "BACKEND"):
                states[fields[sv]] = fields[st].split(" ")[0]
        return states

    async def wait_server_state(self, name: str, state: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = await asyncio.to_thread(self.server_states)
            if current.get(name) == state:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"haproxy server {name} not {state} after {timeout} s: {self.server_states()}")

    def set_server_state(self, name: str, state: str) -> None:
        """``state`` is ready, drain or maint. Existing tunnels survive maint:
        only new connections stop going to that server."""
        reply = self.admin(f"set server {self.BACKEND}/{name} state {state}").strip()
        if reply:
            raise RuntimeError(f"haproxy: set server {name} state {state}: {reply}")



from switchboard_harness.cluster import RedisClusterProcess as RedisClusterProcess  # noqa: E402  (needs free_port)
