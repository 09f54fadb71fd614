"""Shared fixtures: a real Redis, real gateway processes, tokens.

Two topologies: every test that uses ``redis_url`` (so every integration and
reliability test, through ``start_gateway``) runs twice, on one
``redis-server`` (``[standalone]``) and on a local Redis Cluster of 3
primaries + 3 replicas (``[cluster]``). ``--topology standalone|cluster``
runs one of them only. A test that is inherently single-node (it restarts
the one redis-server) is marked ``single_redis`` and runs on the standalone
topology only; its cluster counterpart lives in
tests/reliability/test_cluster_faults.py. A test about the cluster itself is
marked ``cluster_only``; browser tests run on the standalone topology only.

One Redis, in this order: ``REDIS_URL`` from the environment; a
testcontainers Redis when a Docker engine runs and the image is present
locally (no registry is reachable, see deploy/prepare-offline.sh); otherwise
a local ``redis-server`` process. The cluster: ``REDIS_CLUSTER_URL`` (seed
URLs, comma-separated) from the environment, else six local
``redis-server --cluster-enabled yes`` processes (``RedisClusterProcess``).
Without them the Redis-backed tests fail loudly: they never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from switchboard.client import make_token
from switchboard_harness import TEST_API_KEY, TEST_JWT_SECRET, GatewayProcess, RedisClusterProcess, RedisProcess

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


TOPOLOGIES = ("standalone", "cluster")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="run the soak test (outside the default suite)")
    parser.addoption("--soak-seconds", type=float, default=60.0, help="soak duration (default 60)")
    parser.addoption(
        "--topology",
        choices=("both", *TOPOLOGIES),
        default="both",
        help="Redis topology for the Redis-backed tests: one server, a cluster, or both (default)",
    )


def _topology_of(item: pytest.Item) -> str | None:
    params = getattr(item, "callspec", None)
    if params is None:
        return None
    # "topology" (redis_url's), or the contract suite's broker kind ("redis-cluster", ...)
    value = params.params.get("topology") or params.params.get("cluster")
    if value in TOPOLOGIES:
        return str(value)
    if isinstance(value, str) and value.startswith("redis-"):
        return value.removeprefix("redis-")
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = config.getoption("--topology")
    keep, drop = [], []
    for item in items:
        topology = _topology_of(item)
        if topology is not None and wanted != "both" and topology != wanted:
            drop.append(item)
        elif topology == "cluster" and "single_redis" in item.keywords:
            drop.append(item)  # restarts the one redis-server: see its cluster counterpart
        elif topology == "cluster" and "browser" in item.keywords:
            drop.append(item)  # the browser client does not see the topology: once is enough
        elif topology == "standalone" and "cluster_only" in item.keywords:
            drop.append(item)  # about the cluster itself (sharding, failover, resharding)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _local_redis_image() -> str | None:
    image = os.environ.get("REDIS_IMAGE")
    env_file = ROOT / "deploy" / "offline.env"
    if image is None and env_file.exists():
        for line in env_file.read_text().splitlines():
            if line.startswith("REDIS_IMAGE="):
                image = line.split("=", 1)[1].strip()
    if image is None:
        return None
    found = subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=20)
    return image if found.returncode == 0 else None


@pytest.fixture(scope="session", params=TOPOLOGIES)
def topology(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def redis_url(topology: str, request: pytest.FixtureRequest) -> str:
    """The Redis of the test's topology (a cluster: its seeds, comma-separated)."""
    return str(request.getfixturevalue(f"{topology}_redis_url"))


@pytest.fixture(scope="session")
def cluster_redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_CLUSTER_URL"):
        yield os.environ["REDIS_CLUSTER_URL"]
        return
    cluster = RedisClusterProcess().start()
    try:
        yield cluster.url
    finally:
        cluster.cleanup()


@pytest.fixture(scope="session")
def standalone_redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    image = _local_redis_image() if docker_available() else None
    if image is not None:
        os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # Ryuk's image cannot be pulled
        from testcontainers.community.redis import RedisContainer

        with RedisContainer(image=image) as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"
        return
    if shutil.which("redis-server") is None:
        pytest.fail("no Redis: set REDIS_URL, run Docker with a local redis image, or install redis-server")
    server = RedisProcess().start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
def redis_prefix() -> str:
    """Each test's own key space on the shared Redis."""
    return f"t{uuid.uuid4().hex[:10]}"


GatewayFactory = Callable[..., GatewayProcess]


@pytest.fixture
def start_gateway(redis_url: str, redis_prefix: str, tmp_path: Path) -> Iterator[GatewayFactory]:
    """Start ``python -m switchboard_gateway`` processes on the test's Redis
    key space; keyword arguments become environment variables."""
    started: list[GatewayProcess] = []

    def start(redis: str | None = None, wait_ready: bool = True, **env: object) -> GatewayProcess:
        env.setdefault("REDIS_PREFIX", redis_prefix)
        node_id = str(env.pop("NODE_ID", f"gw{len(started) + 1}"))
        gateway = GatewayProcess(redis or redis_url, node_id=node_id, log_dir=str(tmp_path), **env)
        started.append(gateway)
        return gateway.start(wait_ready=wait_ready)

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def token() -> Callable[..., str]:
    """``token("alice", rooms=[...], ttl=...)``: a valid HS256 token."""

    def make(sub: str = "alice", **kwargs: object) -> str:
        return make_token(TEST_JWT_SECRET, sub, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def api_key() -> str:
    return TEST_API_KEY
