"""The Compose tier: the offline images (or the public ones), once per session."""

from __future__ import annotations

import os
import subprocess
import time

from collections.abc import Callable

import pytest
from compose_harness import OFFLINE_ENV, PREPARE, ROOT, docker_problem


def _engine_problem(docker: str) -> str | None:
    return docker_problem()


def _compose_plugin_problem(docker: str) -> str | None:
    try:
        if subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
            return None
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "the Docker Compose v2 CLI plugin is missing (deploy/prepare-offline.sh installs it)"


@pytest.fixture(scope="session")
def compose_env_file(require_tool: Callable[..., str]) -> list[str]:
    """``--env-file`` arguments: the offline images (after running the
    prepare script) unless SWITCHBOARD_COMPOSE_ONLINE=1. A missing engine or
    plugin skips outside CI and fails with ``CI=true`` (``require_tool``)."""
    require_tool("docker", "the compose tier runs the shipped stack", probe=_engine_problem)
    if os.environ.get("SWITCHBOARD_COMPOSE_ONLINE") == "1":
        require_tool("docker", "the compose tier needs the Compose v2 plugin", probe=_compose_plugin_problem)
        return []
    if os.geteuid() == 0:
        # The prepare script installs the Compose plugin when it is missing,
        # so the plugin is checked after it, not before.
        started = time.monotonic()
        proc = subprocess.run(["bash", str(PREPARE)], cwd=ROOT, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"deploy/prepare-offline.sh failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        print(f"prepare-offline.sh: {time.monotonic() - started:.1f} s")
        require_tool("docker", "the compose tier needs the Compose v2 plugin", probe=_compose_plugin_problem)
    elif not OFFLINE_ENV.exists():
        require_tool(
            "docker", "the compose tier needs the offline images",
            probe=lambda _: "deploy/offline.env missing and not root: run deploy/prepare-offline.sh as root first",
        )
    else:
        require_tool("docker", "the compose tier needs the Compose v2 plugin", probe=_compose_plugin_problem)
    return ["--env-file", str(OFFLINE_ENV)]
