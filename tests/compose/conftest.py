"""The Compose tier: the offline images (or the public ones), once per session."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from compose_harness import OFFLINE_ENV, PREPARE, ROOT, docker_problem


@pytest.fixture(scope="session")
def compose_env_file() -> list[str]:
    """``--env-file`` arguments: the offline images (after running the
    prepare script) unless SWITCHBOARD_COMPOSE_ONLINE=1."""
    reason = docker_problem()
    if reason:
        pytest.skip(f"needs a Docker engine: {reason}")
    if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("the Docker Compose v2 CLI plugin is missing (deploy/prepare-offline.sh installs it)")
    if os.environ.get("SWITCHBOARD_COMPOSE_ONLINE") == "1":
        return []
    if os.geteuid() == 0:
        started = time.monotonic()
        proc = subprocess.run(["bash", str(PREPARE)], cwd=ROOT, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"deploy/prepare-offline.sh failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        print(f"prepare-offline.sh: {time.monotonic() - started:.1f} s")
    elif not OFFLINE_ENV.exists():
        pytest.skip("deploy/offline.env missing and not root: run deploy/prepare-offline.sh as root first")
    return ["--env-file", str(OFFLINE_ENV)]
