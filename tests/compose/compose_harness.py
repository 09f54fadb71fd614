"""What the Compose tier's modules share: running docker/compose commands,
one ``Stack`` (a compose project on a free port), readiness, connecting
through the load balancer."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from switchboard.client import Client

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
PREPARE = ROOT / "deploy" / "prepare-offline.sh"
OFFLINE_ENV = ROOT / "deploy" / "offline.env"


def docker_problem() -> str | None:
    """None when a Docker engine answers, else why not."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"'docker info' failed: {exc}"
    if info.returncode != 0:
        return "'docker info' failed: " + (info.stderr.strip().splitlines() or ["no engine"])[-1]
    return None


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None, check: bool = True) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
            f"--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


@dataclass
class Stack:
    project: str
    port: int
    env: dict[str, str]
    compose: list[str] = field(default_factory=list)
    down_done: bool = False

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def dc(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        return run([*self.compose, *args], timeout, self.env, check)

    def ids(self, service: str) -> list[str]:
        return self.dc("ps", "-q", service).split()

    def gateway_ids(self) -> list[str]:
        return self.ids("gateway")

    def inspect(self, ids: list[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        return json.loads(run(["docker", "inspect", *ids], 30))

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        return {
            kind: run(["docker", kind, "ls", "-q", "--filter", label] + (["-a"] if kind == "container" else []), 30).split()
            for kind in ("container", "volume", "network")
        }

    def down(self) -> None:
        if not self.down_done:
            self.dc("down", "-v", "--remove-orphans", "--timeout", "30", timeout=180)
            self.down_done = True

    def save_logs(self) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        logs = self.dc("logs", "--no-color", "--timestamps", timeout=60, check=False)
        (ARTIFACTS / f"compose-{self.project}.log").write_text(logs)


def wait_ready(s: Stack, gateways: int, deadline: float) -> None:
    """LB answers /readyz 200 and all gateways report healthy."""
    last = "nothing yet"
    while time.monotonic() < deadline:
        try:
            ids = s.gateway_ids()
            health = [c["State"].get("Health", {}).get("Status") for c in s.inspect(ids)]
            code = httpx.get(s.http + "/readyz", timeout=2).status_code
            last = f"gateway health {health}, lb /readyz {code}"
            if code == 200 and health.count("healthy") == gateways:
                return
        except (httpx.HTTPError, AssertionError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    raise AssertionError(f"stack not ready within the deadline: {last}")


async def connect(s: Stack, token: str, deadline: float) -> Client:
    """Connect through the LB, retrying while a draining gateway still gets
    the upgrade (it closes at once with 1012) or the LB has no server."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return await Client.connect(s.ws, token, timeout=5)
        except Exception as exc:  # ClientClosed(1012), refused, 503 from the LB, timeout
            last = exc
            await asyncio.sleep(0.2)
    raise AssertionError(f"could not connect through the LB before the deadline: {last!r}")
