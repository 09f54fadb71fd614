"""Browser end-to-end fixtures: the system Chromium driven by Playwright
(async API), and a real HAProxy process in front of real gateway processes.

Nothing is downloaded: Chromium is Debian's (``playwright install`` is never
run), HAProxy is Debian's ``haproxy`` binary. Without either, the tests that
need it skip with the reason.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from switchboard.harness import GatewayProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
DOCS_IMG = ROOT / "docs" / "img"

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """``CHROMIUM`` from the environment, else Debian's binary (the real one
    under /usr/lib first: /usr/bin/chromium is a wrapper script)."""
    override = os.environ.get("CHROMIUM")
    if override:
        return override if os.access(override, os.X_OK) else None
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    """A headless system Chromium for one test (launch takes about 1 s)."""
    executable = chromium_path()
    if executable is None:
        pytest.skip(f"no Chromium binary (looked for {', '.join(CHROMIUM_CANDIDATES)}; set CHROMIUM=...)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            await instance.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# ------------------------------------------------------------------ HAProxy


class HAProxyProcess:
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
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "-f", str(self.config_path), "-db"], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}:\n{self.output()}")
            if self._frontend_healthy() and all(s == "UP" for s in self.server_states().values()):
                return self
            time.sleep(0.05)
        raise TimeoutError(f"haproxy not ready within {timeout} s:\n{self.output()}")

    def _frontend_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

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

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if getattr(self, "_log", None) is not None:
            self._log.close()


HAProxyFactory = Callable[[list[GatewayProcess]], HAProxyProcess]


@pytest.fixture
def start_haproxy(tmp_path: Path) -> Iterator[HAProxyFactory]:
    """``start_haproxy([gw_a, gw_b])`` → a started HAProxy in front of them,
    answering ``/healthz`` through its frontend with every server UP."""
    binary = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)), None
    )
    if binary is None:
        pytest.skip("no haproxy binary (apt-get install haproxy)")
    started: list[HAProxyProcess] = []

    def start(gateways: list[GatewayProcess]) -> HAProxyProcess:
        proxy = HAProxyProcess(binary, gateways, tmp_path)
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.stop()
