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


class GatewayProcess:
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
        try:
            with urllib.request.urlopen(self.http_url + path, timeout=1) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def start(self, timeout: float = 20.0, wait_ready: bool = True) -> GatewayProcess:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "switchboard_gateway"], env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
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

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    async def wait_async(self, timeout: float) -> int:
        return await asyncio.to_thread(self.wait, timeout)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        self.kill()
        if getattr(self, "_log", None) is not None:
            self._log.close()
