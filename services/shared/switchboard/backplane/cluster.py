"""``ClusterCommands``: our own small Redis Cluster command layer.

Why not redis-py's ``RedisCluster``: in 8.1 it closes the connections of
EVERY node during a failover (on CLUSTERDOWN, on a failed map refresh, on
every 5th MOVED), so publishes to healthy shards failed too (about 1 run in
4 when we measured), and its async sharded pub/sub can stay deaf after a
slot migration. This layer keeps shards independent:

- a slot map from ``CLUSTER SLOTS``, asked of any reachable node (the known
  primaries, then the seeds), one refresh at a time;
- one ordinary ``redis.asyncio`` pool and one ``AutoPipeline`` per primary,
  so concurrent calls still batch, per node;
- ``MOVED`` patches the map at once (and refreshes it in the background:
  a failover moves whole ranges); ``ASK`` retries once on the target with
  ``ASKING`` in front, without touching the map;
- ``TRYAGAIN`` / ``CLUSTERDOWN`` (a slot mid-migration, a shard failing
  over) are retried for ``retry_window_s``; then the caller gets the error
  and answers ``unavailable``;
- a lost connection refreshes the map; the call is retried on the (new)
  owner only when the caller says running it twice is harmless.

Listeners registered with ``on_topology_change`` hear of every change of the
map (the sharded subscriber moves its subscriptions with it).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, MovedError, RedisError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from switchboard.backplane.commands import command, load_scripts, redis_from_url
from switchboard.backplane.pipeline import AutoPipeline, Durability, WriteOutcomeUnknown

log = logging.getLogger("switchboard.cluster")

SLOTS = 16384
Address = tuple[str, int]

_MAX_REDIRECTS = 16
_REFRESH_TIMEOUT_S = 1.0
_MIN_REFRESH_GAP_S = 0.1
_RETIRE_AFTER_S = 5.0


def slot_of(key: str | bytes) -> int:
    return key_slot(key.encode() if isinstance(key, str) else key)


def parse_cluster_slots(reply: list[Any], queried: Address) -> list[tuple[int, int, Address]]:
    """``CLUSTER SLOTS`` → (first slot, last slot, primary address) ranges.
    An empty or ``?`` host means "the node you asked" (Redis docs)."""
    ranges = []
    for entry in reply:
        start, end, primary = int(entry[0]), int(entry[1]), entry[2]
        host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
        if host in ("", "?"):
            host = queried[0]
        ranges.append((start, end, (host, int(primary[1]))))
    return ranges


class SlotMap:
    """slot → the address of the primary serving it (None: unknown/uncovered)."""

    def __init__(self) -> None:
        self._owners: list[Address | None] = [None] * SLOTS
        self.loaded = False

    def owner(self, slot: int) -> Address | None:
        return self._owners[slot]

    def primaries(self) -> set[Address]:
        return {a for a in self._owners if a is not None}

    def load(self, ranges: list[tuple[int, int, Address]]) -> bool:
        owners: list[Address | None] = [None] * SLOTS
        for start, end, address in ranges:
            owners[start : end + 1] = [address] * (end - start + 1)
        changed = owners != self._owners
        self._owners = owners
        self.loaded = True
        return changed

    def patch(self, slot: int, address: Address) -> bool:
        if self._owners[slot] == address:
            return False
        self._owners[slot] = address
        return True


class ClusterNode:
    """One primary: its pool and its auto-pipeline."""

    def __init__(self, address: Address, url: str, durability: Durability | None) -> None:
        self.address = address
        self.url = url
        self.redis = redis_from_url(url)
        self.pipeline = AutoPipeline(self.redis, load_scripts, durability)

    async def close(self) -> None:
        await self.redis.aclose()


def _url_for(template: str, address: Address) -> str:
    """The seed URL's scheme, credentials and options, with another host:port."""
    parts = urlsplit(template)
    userinfo = parts.netloc.rpartition("@")[0]
    host = f"[{address[0]}]" if ":" in address[0] else address[0]
    netloc = f"{userinfo}@{host}:{address[1]}" if userinfo else f"{host}:{address[1]}"
    return urlunsplit((parts.scheme, netloc, "/0", parts.query, ""))


def _address_of(url: str) -> Address:
    parts = urlsplit(url)
    return (parts.hostname or "localhost", parts.port or 6379)


class ClusterCommands:
    sharded = True

    def __init__(
        self,
        seeds: list[str],
        durability: Durability | None = None,
        retry_window_s: float = 1.5,
    ) -> None:
        if not seeds:
            raise ValueError("a cluster needs at least one seed URL")
        self._template = seeds[0]
        self._seeds = [_address_of(url) for url in seeds]
        self._durability = durability
        self.retry_window_s = retry_window_s
        self.slots = SlotMap()
        self._nodes: dict[Address, ClusterNode] = {}
        self._listeners: list[Callable[[], None]] = []
        self._refreshing: asyncio.Future[None] | None = None
        self._last_refresh = 0.0
        self._retiring: dict[Address, asyncio.TimerHandle] = {}
        self._closed = False

    # --- nodes and the map ------------------------------------------------------------

    def node(self, address: Address) -> ClusterNode:
        node = self._nodes.get(address)
        if node is None:
            node = self._nodes[address] = ClusterNode(address, _url_for(self._template, address), self._durability)
        return node

    def owner(self, key: str | bytes) -> Address | None:
        return self.slots.owner(slot_of(key))

    def on_topology_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    async def refresh(self) -> None:
        """Reload the slot map (one refresh at a time; callers share it).
        Raises ConnectionError when no node answers."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())
        await asyncio.shield(self._refreshing)

    def request_refresh(self) -> None:
        """A refresh in the background, unless one ran a moment ago."""
        if self._closed or (self._refreshing is not None and not self._refreshing.done()):
            return
        if time.monotonic() - self._last_refresh < _MIN_REFRESH_GAP_S:
            return
        self._refreshing = asyncio.ensure_future(self._refresh())
        self._refreshing.add_done_callback(_consume)

    async def _refresh(self) -> None:
        known = list(self.slots.primaries())
        random.shuffle(known)
        candidates = known + [a for a in self._seeds if a not in known]
        errors = []
        for address in candidates:
            node = self.node(address)
            try:
                async with asyncio.timeout(_REFRESH_TIMEOUT_S):
                    reply = await command(node.redis, "CLUSTER", "SLOTS")
            except (RedisError, OSError, TimeoutError) as exc:
                errors.append(f"{address[0]}:{address[1]}: {exc or type(exc).__name__}")
                continue
            ranges = parse_cluster_slots(reply, address)
            if not ranges:
                errors.append(f"{address[0]}:{address[1]}: no slots assigned")
                continue
            self._last_refresh = time.monotonic()
            if self.slots.load(ranges):
                self._retire_stale()
                self._changed()
            return
        self._last_refresh = time.monotonic()
        raise RedisConnectionError("no Redis Cluster node answered CLUSTER SLOTS: " + "; ".join(errors))

    def _retire_stale(self) -> None:
        """Close the pools of nodes that no longer own slots (a failed or
        demoted primary), after a grace period for calls in flight."""
        primaries = self.slots.primaries()
        loop = asyncio.get_running_loop()
        for address in list(self._nodes):
            if address in primaries:
                handle = self._retiring.pop(address, None)
                if handle is not None:
                    handle.cancel()
            elif address not in self._retiring and address not in self._seeds:
                self._retiring[address] = loop.call_later(_RETIRE_AFTER_S, self._retire, address)

    def _retire(self, address: Address) -> None:
        self._retiring.pop(address, None)
        if address in self.slots.primaries():
            return
        node = self._nodes.pop(address, None)
        if node is not None:
            asyncio.ensure_future(node.close()).add_done_callback(_consume)

    # --- commands ------------------------------------------------------------------------

    async def execute(self, key: str, *command: Any, durable: bool = False, idempotent: bool = False) -> Any:
        slot = slot_of(key)
        deadline = time.monotonic() + self.retry_window_s
        asking: Address | None = None
        backoff = 0.02
        sent = False  # a try went out and its answer was lost
        for _ in range(_MAX_REDIRECTS):
            address = asking or self.slots.owner(slot)
            if address is None:
                await self.refresh()
                address = self.slots.owner(slot)
                if address is None:
                    raise ClusterDownError(f"slot {slot} is not served by any node")
            try:
                return await self.node(address).pipeline.call(*command, durable=durable, asking=asking is not None)
            except MovedError as moved:
                asking = None
                if self.slots.patch(moved.slot_id, moved.node_addr):
                    self._changed()
                self.request_refresh()
                continue
            except AskError as ask:
                asking = ask.node_addr
                continue
            except (TryAgainError, ClusterDownError):
                # mid-migration keys, or a shard failing over: wait a little
                asking = None
                if time.monotonic() + backoff > deadline:
                    raise
                self.request_refresh()
            except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as exc:
                asking = None
                self.request_refresh()
                # Once a try was sent and not answered, a later failure to
                # connect does not make the outcome known again.
                sent = sent or isinstance(exc, WriteOutcomeUnknown)
                if not idempotent or time.monotonic() + backoff > deadline:
                    if sent and not isinstance(exc, WriteOutcomeUnknown):
                        raise WriteOutcomeUnknown(str(exc) or type(exc).__name__) from exc
                    raise
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 0.25)
            if self._refreshing is not None and not self._refreshing.done():
                try:
                    await asyncio.shield(self._refreshing)
                except Exception:
                    pass  # nothing reachable yet: the next try tells
        raise ClusterDownError(f"too many redirects for slot {slot}")

    async def cluster_ok(self) -> bool:
        """``cluster_state:ok`` as the first reachable primary sees it (with
        ``cluster-require-full-coverage no`` it stays ok while one shard
        fails over). Raises ConnectionError when no node answers."""
        known = list(self.slots.primaries()) or list(self._seeds)
        random.shuffle(known)
        for address in known:
            try:
                async with asyncio.timeout(_REFRESH_TIMEOUT_S):
                    info = await command(self.node(address).redis, "CLUSTER", "INFO")
            except (RedisError, OSError, TimeoutError):
                continue
            text = info.decode() if isinstance(info, bytes) else str(info)
            return "cluster_state:ok" in text
        raise RedisConnectionError("no Redis Cluster node answered CLUSTER INFO")

    async def primaries(self) -> list[Address]:
        if not self.slots.loaded:
            await self.refresh()
        return sorted(self.slots.primaries())

    async def close(self) -> None:
        self._closed = True
        for handle in self._retiring.values():
            handle.cancel()
        self._retiring.clear()
        if self._refreshing is not None and not self._refreshing.done():
            self._refreshing.cancel()
            await asyncio.gather(self._refreshing, return_exceptions=True)
        nodes, self._nodes = list(self._nodes.values()), {}
        await asyncio.gather(*(node.close() for node in nodes), return_exceptions=True)


def _consume(future: asyncio.Future[Any]) -> None:
    """Background refreshes report through their callers; silence the rest."""
    if not future.cancelled():
        exc = future.exception()
        if exc is not None:
            log.debug("background cluster refresh failed: %s", exc)
