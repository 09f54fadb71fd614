"""From ``REDIS_URL`` to a ``Commands`` object: one Redis, or a Redis Cluster.

``REDIS_URL`` is one URL, or for a cluster one or more seed node URLs
separated by commas (any reachable node is enough). ``REDIS_CLUSTER``:
``auto`` asks the first reachable seed ``INFO cluster`` (``cluster_enabled:1``
means a cluster node); ``true`` / ``false`` force the mode.
"""

from __future__ import annotations

from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from switchboard.backplane.cluster import ClusterCommands
from switchboard.backplane.commands import Commands, StandaloneCommands, command, connection_options
from switchboard.backplane.pipeline import Durability
from switchboard.backplane.store import Backplane

ClusterMode = Literal["auto", "true", "false"]


def split_urls(raw: str) -> list[str]:
    return [url.strip() for url in raw.split(",") if url.strip()]


async def is_cluster_node(url: str) -> bool:
    """Whether the server at `url` runs with ``cluster-enabled yes``."""
    redis = Redis.from_url(url, **connection_options())
    try:
        info = await command(redis, "INFO", "cluster")
    finally:
        await redis.aclose()
    if isinstance(info, dict):
        return int(info.get("cluster_enabled", 0)) == 1
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_enabled:1" in text


async def detect_cluster(urls: list[str], mode: ClusterMode = "auto") -> bool:
    """True for a cluster. ``auto`` asks the seeds in turn; raises
    ConnectionError when none answers (the caller retries later)."""
    if mode != "auto":
        return mode == "true"
    errors = []
    for url in urls:
        try:
            return await is_cluster_node(url)
        except (RedisError, OSError) as exc:
            errors.append(str(exc) or type(exc).__name__)
    raise RedisConnectionError("no Redis node reachable to detect the topology: " + "; ".join(errors))


async def open_commands(
    url: str, *, cluster: ClusterMode = "auto", durability: Durability | None = None
) -> Commands:
    urls = split_urls(url)
    if await detect_cluster(urls, cluster):
        return ClusterCommands(urls, durability)
    if len(urls) > 1:
        raise ValueError("REDIS_URL lists several nodes but they are not a Redis Cluster")
    return StandaloneCommands.from_url(urls[0], durability)


async def open_backplane(
    url: str, *, cluster: ClusterMode = "auto", durability: Durability | None = None, **options: Any
) -> Backplane:
    """A ``Backplane`` on one Redis or a cluster (tests and tools; the
    gateway builds its own through ``RedisBroker``). Close it with
    ``await backplane.commands.close()``."""
    commands = await open_commands(url, cluster=cluster, durability=durability)
    return Backplane(commands, durable=durability is not None, **options)
