"""How ``Backplane`` reaches Redis: a ``Commands`` object routes each call by
its key. ``StandaloneCommands`` sends everything to one server through one
auto-pipeline; ``ClusterCommands`` (``cluster.py``) to the primary owning the
key's slot, one auto-pipeline per primary."""

from __future__ import annotations

from typing import Any, Protocol

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff
from redis.retry import Retry

from switchboard.backplane import scripts
from switchboard.backplane.pipeline import AutoPipeline, Durability

# Pool connections per Redis node: the auto-pipeline keeps one busy; the rest
# serve script loading, topology checks and the occasional direct command.
POOL_SIZE = 16


def connection_options() -> dict[str, Any]:
    return dict(
        protocol=2,
        socket_connect_timeout=3,
        socket_timeout=5,
        # No silent retries: a retried publish could be stored twice. The
        # command layer decides what to retry; idempotency keys make it safe.
        retry=Retry(NoBackoff(), 0),
    )


def redis_from_url(url: str, **overrides: Any) -> Redis:
    """A client that owns its (blocking, bounded) pool: ``aclose`` disconnects it."""
    options = {**connection_options(), **overrides}
    return Redis.from_pool(BlockingConnectionPool.from_url(url, max_connections=POOL_SIZE, timeout=5, **options))


async def command(redis: Redis, *args: Any) -> Any:
    """One command outside the auto-pipeline (topology questions)."""
    return await redis.execute_command(*args)  # type: ignore[no-untyped-call]  # untyped in redis-py 8.1


async def open_connection(conn: AbstractConnection) -> None:
    await conn.connect()  # type: ignore[no-untyped-call]  # untyped in redis-py 8.1


async def load_scripts(redis: Redis) -> None:
    for script in scripts.ALL:
        await redis.script_load(script.source)


class Commands(Protocol):
    @property
    def sharded(self) -> bool:
        """True on a cluster: fan-out uses SPUBLISH (the room's shard only)."""

    async def execute(self, key: str, *command: Any, durable: bool = False, idempotent: bool = False) -> Any:
        """Run `command` where `key` lives. ``durable``: confirmed by a replica
        (see ``pipeline``). ``idempotent``: running it twice is harmless, so it
        may be retried after a lost connection."""

    async def close(self) -> None: ...


class StandaloneCommands:
    """One Redis server. Nothing is retried: a lost connection fails the
    calls in flight and the caller answers ``unavailable``."""

    sharded = False

    def __init__(self, redis: Redis, durability: Durability | None = None) -> None:
        self.redis = redis
        self._pipeline = AutoPipeline(redis, load_scripts, durability)

    @classmethod
    def from_url(cls, url: str, durability: Durability | None = None) -> StandaloneCommands:
        return cls(redis_from_url(url), durability)

    async def execute(self, key: str, *command: Any, durable: bool = False, idempotent: bool = False) -> Any:
        return await self._pipeline.call(*command, durable=durable)

    async def close(self) -> None:
        await self.redis.aclose()
