"""Helpers of the broker contract suite: a recording BrokerEvents, a fake
clock, and the two-node cluster the ``cluster`` fixture (conftest.py) builds."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from switchboard.backplane.cluster import ClusterCommands
from switchboard.backplane.connect import is_cluster_node, split_urls


HISTORY_SIZE = 5
PRESENCE_TTL = 30.0
DEADLINE_S = 5.0


class Recorder:
    """A BrokerEvents that records everything and lets a test await a condition."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.messages: list[tuple[str, int, str, int, str]] = []  # room, offset, epoch, ts, frame
        self.ephemeral: list[tuple[str, str]] = []
        self.resubscribed = 0
        self.availability: list[bool] = []
        self._changed = asyncio.Event()

    def on_message(self, room: str, offset: int, epoch: str, ts: int, frame: str) -> None:
        assert isinstance(frame, str)
        self.messages.append((room, offset, epoch, ts, frame))
        self._changed.set()

    def on_ephemeral(self, room: str, frame: str) -> None:
        assert isinstance(frame, str)
        self.ephemeral.append((room, frame))
        self._changed.set()

    def on_resubscribed(self) -> None:
        self.resubscribed += 1
        self._changed.set()

    def on_availability(self, available: bool) -> None:
        self.availability.append(available)
        self._changed.set()

    async def until(self, predicate: Callable[[], bool], timeout: float = DEADLINE_S) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: condition not met within {timeout}s; "
                f"messages={self.messages!r} ephemeral={self.ephemeral!r}"
            ) from None

    # --- views ------------------------------------------------------------------

    def offsets(self, room: str) -> list[int]:
        return [offset for r, offset, *_ in self.messages if r == room]

    def frames(self, room: str) -> list[dict[str, Any]]:
        return [json.loads(frame) for r, _, _, _, frame in self.messages if r == room]

    def events(self, room: str) -> list[dict[str, Any]]:
        return [json.loads(frame) for r, frame in self.ephemeral if r == room]

    def presence(self, room: str, kind: str) -> list[str]:
        """User ids announced with presence_<kind>, in order."""
        return [e["user"]["id"] for e in self.events(room) if e["type"] == f"presence_{kind}"]


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Cluster:
    kind: str
    a: Any  # Broker
    b: Any
    ea: Recorder
    eb: Recorder
    clock: FakeClock
    history_size: int = HISTORY_SIZE
    presence_ttl: float = PRESENCE_TTL
    recorders: list[Recorder] = field(default_factory=list)
    lose_history: Callable[[], Awaitable[None]] | None = None  # like Redis restarting empty

    def __post_init__(self) -> None:
        self.recorders = [self.ea, self.eb]

    async def subscribe_all(self, room: str) -> None:
        await self.a.subscribe(room)
        await self.b.subscribe(room)


async def delete_prefix(url: str, prefix: str) -> None:
    """Delete the test's keys, on one Redis or on every primary of a cluster
    (one DEL per key there: a cluster refuses multi-key commands across slots)."""
    urls = split_urls(url)
    if len(urls) == 1 and not await is_cluster_node(urls[0]):
        redis = Redis.from_url(url)
        try:
            keys = [key async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]
            if keys:
                await redis.delete(*keys)
        finally:
            await redis.aclose()
        return
    commands = ClusterCommands(urls)
    try:
        for address in await commands.primaries():
            node = commands.node(address).redis
            keys = [key async for key in node.scan_iter(match=f"{prefix}:*", count=1000)]
            for key in keys:
                await node.delete(key)
    finally:
        await commands.close()
