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
from switchboard_harness.keyspace import keys_with_prefix  # noqa: F401  (re-exported for the tests)

HISTORY_SIZE = 5
PRESENCE_TTL = 30.0
PRESENCE_EVENTS_MAX = 3  # small, so the suite crosses it with a handful of users
DEADLINE_S = 5.0


class Recorder:
    """A BrokerEvents that records everything and lets a test await a condition."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.messages: list[tuple[str, int, str, int, str]] = []  # room, offset, epoch, ts, frame
        self.ephemeral: list[tuple[str, str]] = []
        self.counts: list[tuple[str, int]] = []  # on_presence_count
        self.resubscribed = 0
        self.availability: list[bool] = []
        self.controls: list[bytes] = []  # on_control (user control commands)
        self._changed = asyncio.Event()

    def on_message(self, room: str, offset: int, epoch: str, ts: int, frame: str) -> None:
        assert isinstance(frame, str)
        self.messages.append((room, offset, epoch, ts, frame))
        self._changed.set()

    def on_ephemeral(self, room: str, frame: str) -> None:
        assert isinstance(frame, str)
        self.ephemeral.append((room, frame))
        self._changed.set()

    def on_presence_count(self, room: str, count: int) -> None:
        assert isinstance(count, int)
        self.counts.append((room, count))
        self._changed.set()

    def on_resubscribed(self) -> None:
        self.resubscribed += 1
        self._changed.set()

    def on_availability(self, available: bool) -> None:
        self.availability.append(available)
        self._changed.set()

    def on_control(self, command: bytes) -> None:
        assert isinstance(command, bytes)
        self.controls.append(command)
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
                f"messages={self.messages!r} ephemeral={self.ephemeral!r} counts={self.counts!r}"
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

    def announced_counts(self, room: str) -> list[int]:
        """The ``count`` of every presence_join/_leave, in order."""
        return [e["count"] for e in self.events(room) if e["type"].startswith("presence_")]

    def room_counts(self, room: str) -> list[int]:
        """Counts reported by on_presence_count, in order."""
        return [count for r, count in self.counts if r == room]


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
    presence_events_max: int = PRESENCE_EVENTS_MAX
    recorders: list[Recorder] = field(default_factory=list)
    lose_history: Callable[[], Awaitable[None]] | None = None  # like Redis restarting empty

    def __post_init__(self) -> None:
        self.recorders = [self.ea, self.eb]

    async def subscribe_all(self, room: str) -> None:
        await self.a.subscribe(room)
        await self.b.subscribe(room)


def user_json(user: Any) -> bytes:
    """A user's JSON as a gateway stores it in presence (``{"id","name"}``)."""
    return json.dumps({"id": user.id, "name": user.name}, separators=(",", ":")).encode()


async def ephemeral_barrier(c: Cluster, room: str) -> None:
    """Publish a marker through publish_ephemeral on `room` and wait until both
    brokers saw it: every announcement or count published on the room's
    channel before it has been delivered by then."""
    marker = '{"type":"typing","room":"%s","user":{"id":"marker","name":"m"}}' % room
    seen = [sum(1 for e in r.ephemeral if e == (room, marker)) for r in c.recorders]
    await c.b.publish_ephemeral(room, marker.encode())
    for rec, n in zip(c.recorders, seen):
        await rec.until(lambda rec=rec, n=n: sum(1 for e in rec.ephemeral if e == (room, marker)) > n)


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
