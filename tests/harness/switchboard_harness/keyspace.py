"""A test's keys, on one Redis or on every primary of a Redis Cluster."""

from __future__ import annotations

from redis.asyncio import Redis

from switchboard.backplane.cluster import ClusterCommands
from switchboard.backplane.connect import is_cluster_node, split_urls


async def keys_with_prefix(redis_url: str, prefix: str) -> list[bytes]:
    """Every key under `prefix` (one SCAN per primary on a cluster)."""
    urls = split_urls(redis_url)
    if len(urls) == 1 and not await is_cluster_node(urls[0]):
        redis = Redis.from_url(redis_url)
        try:
            return [key async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]
        finally:
            await redis.aclose()
    commands = ClusterCommands(urls)
    try:
        keys: list[bytes] = []
        for address in await commands.primaries():
            keys += [key async for key in commands.node(address).redis.scan_iter(match=f"{prefix}:*", count=1000)]
        return keys
    finally:
        await commands.close()
