"""The dispatcher's access to the events streams: every Redis command it
sends, behind one small interface (``EventSource``).

Two implementations: ``StandaloneSource`` (one Redis, one stream, blocking
reads) and ``ClusterSource`` (one plain connection pool per primary, found
with ``CLUSTER SLOTS``; one stream per slot that holds rooms, found by
checking the stream keys of each primary's slots). Both speak to Redis
through ``Node`` (one ``redis.asyncio.Redis``) so a cluster command layer can
replace the routing later without touching the dispatcher.

Attempt counting lives in Redis, so it survives a dispatcher's death: the
group's delivery counter of an entry is raised by XREADGROUP (the first
attempt), by every XCLAIM before a retry, and by XAUTOCLAIM when another
dispatcher takes it over. ``Item.attempts`` is that counter: the number of
the attempt about to be made.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse, urlunparse

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from switchboard.backplane.events import EVENT_FIELD, WEBHOOK_GROUP, EventsLayout, with_id
from switchboard.backplane.slots import SLOTS, key_slot

log = logging.getLogger("switchboard.webhooks.source")


class _Head(msgspec.Struct):
    """What the dispatcher checks of an event before sending it on."""

    type: str
    room: str
    ts: int


_head_decoder = msgspec.json.Decoder(_Head)


@dataclass(slots=True)
class Item:
    """One pending event held by this dispatcher."""

    stream: str
    entry_id: str
    body: bytes  # the event JSON with "id" (what the receiver gets), or the raw entry when malformed
    attempts: int  # the group's delivery counter: the attempt about to be made
    ts_ms: int | None  # the event's ts; None when malformed
    malformed: str | None = None  # why the entry is not an event


@dataclass(frozen=True, slots=True)
class Backlog:
    lag: int  # entries the group has not read yet
    pending: int  # read by some dispatcher, not acknowledged


def make_item(layout: EventsLayout, stream: str, entry_id: str, fields: dict[bytes, bytes], attempts: int) -> Item:
    stored = fields.get(EVENT_FIELD)
    if stored is None:
        raw = msgspec.json.encode({k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()})
        return Item(stream, entry_id, raw, attempts, None, "no field 'e'")
    try:
        head = _head_decoder.decode(stored)
        body = with_id(layout.event_id(stream, entry_id), stored)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        return Item(stream, entry_id, stored, attempts, None, f"not an event: {exc}")
    return Item(stream, entry_id, body, attempts, head.ts, None)


def by_stream(items: Iterable[Item]) -> dict[str, list[Item]]:
    grouped: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        grouped[item.stream].append(item)
    return grouped


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Node:
    """The stream commands, on one Redis server (a standalone Redis or one
    cluster primary). Multi-stream calls are pipelined: on a cluster each
    stream has its own slot, so no command may name two of them."""

    def __init__(self, redis: Redis, layout: EventsLayout) -> None:
        self.redis = redis
        self.layout = layout

    async def close(self) -> None:
        await self.redis.aclose()

    async def ensure_groups(self, streams: list[str]) -> None:
        """Create the webhooks group where it is missing, from the start of
        the stream: events written before the first dispatcher ran are sent."""
        pipe = self.redis.pipeline(transaction=False)
        for stream in streams:
            pipe.xgroup_create(stream, WEBHOOK_GROUP, id="0", mkstream=True)
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, Exception) and "BUSYGROUP" not in str(result):
                raise result

    async def existing(self, streams: list[str]) -> list[str]:
        pipe = self.redis.pipeline(transaction=False)
        for stream in streams:
            pipe.exists(stream)
        return [s for s, n in zip(streams, await pipe.execute(), strict=False) if n]

    async def read_new(self, consumer: str, streams: list[str], count: int, block_ms: int | None) -> list[Item]:
        if len(streams) == 1:
            replies = [await self._xreadgroup(consumer, streams[0], count, block_ms)]
        else:
            pipe = self.redis.pipeline(transaction=False)
            for stream in streams:
                pipe.xreadgroup(WEBHOOK_GROUP, consumer, {stream: ">"}, count=count)
            replies = await pipe.execute(raise_on_error=False)
        items: list[Item] = []
        missing_groups = []
        error: Exception | None = None
        for stream, reply in zip(streams, replies, strict=False):
            if isinstance(reply, ResponseError) and "NOGROUP" in str(reply):
                missing_groups.append(stream)  # the stream was deleted (or Redis lost it)
            elif isinstance(reply, Exception):
                error = reply  # e.g. MOVED: that slot left this primary
            else:
                for _, entries in reply or []:
                    items += [make_item(self.layout, stream, _text(eid), fields, 1) for eid, fields in entries]
        if missing_groups:
            await self.ensure_groups(missing_groups)
        if error is not None:
            # What the other streams gave is pending for us now: deliver it.
            # The failing streams are read again after the caller's refresh
            # (or the periodic one, when others keep giving events).
            if not items:
                raise error
            log.warning("reading some events streams failed: %s", error)
        return items

    async def _xreadgroup(self, consumer: str, stream: str, count: int, block_ms: int | None) -> Any:
        try:
            return await self.redis.xreadgroup(WEBHOOK_GROUP, consumer, {stream: ">"}, count=count, block=block_ms)
        except ResponseError as exc:
            return exc

    async def claim_abandoned(
        self, consumer: str, stream: str, min_idle_ms: int, count: int
    ) -> tuple[list[Item], int]:
        """Take over up to `count` entries idle for `min_idle_ms` (their
        dispatcher died or hung); returns them and how many pending entries
        had been trimmed away before anyone delivered them."""
        try:
            reply = await self.redis.xautoclaim(stream, WEBHOOK_GROUP, consumer, min_idle_ms, "0-0", count=count)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return [], 0
            raise
        entries, deleted = reply[1], reply[2] if len(reply) > 2 else []
        if not entries:
            return [], len(deleted)
        counts = await self._delivery_counts(consumer, stream, [_text(eid) for eid, _ in entries])
        items = [
            make_item(self.layout, stream, _text(eid), fields, counts.get(_text(eid), 1)) for eid, fields in entries
        ]
        return items, len(deleted)

    async def _delivery_counts(self, consumer: str, stream: str, ids: list[str]) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        for eid in ids:
            pipe.xpending_range(stream, WEBHOOK_GROUP, eid, eid, 1, consumername=consumer)
        counts = {}
        for rows in await pipe.execute():
            for row in rows:
                counts[_text(row["message_id"])] = int(row["times_delivered"])
        return counts

    async def reclaim(self, consumer: str, grouped: dict[str, list[Item]], min_idle_ms: int) -> set[tuple[str, str]]:
        """XCLAIM our own entries again before a retry: raises their delivery
        counter and resets their idle time. Entries idle for less than
        `min_idle_ms` were taken over by another dispatcher meanwhile, and
        trimmed ones are gone: neither is returned. Returns (stream, id) kept."""
        pipe = self.redis.pipeline(transaction=False)
        order = list(grouped)
        for stream in order:
            pipe.xclaim(stream, WEBHOOK_GROUP, consumer, min_idle_ms, [i.entry_id for i in grouped[stream]], justid=False)
        kept = set()
        for stream, entries in zip(order, await pipe.execute(), strict=False):
            kept |= {(stream, _text(eid)) for eid, _ in entries}
        return kept

    async def release(self, consumer: str, grouped: dict[str, list[Item]], min_idle_ms: int, idle_ms: int) -> None:
        """Mark our entries as idle for `idle_ms`, so the next claim round of
        any dispatcher takes them at once (JUSTID: no attempt is counted)."""
        pipe = self.redis.pipeline(transaction=False)
        for stream, items in grouped.items():
            pipe.xclaim(stream, WEBHOOK_GROUP, consumer, min_idle_ms, [i.entry_id for i in items], idle=idle_ms, justid=True)
        await pipe.execute()

    async def ack(self, grouped: dict[str, list[Item]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for stream, items in grouped.items():
            pipe.xack(stream, WEBHOOK_GROUP, *[i.entry_id for i in items])
        await pipe.execute()

    async def prune_consumers(self, stream: str, keep: str, idle_ms: int) -> int:
        """Forget consumers (dispatchers that stopped) idle for `idle_ms`
        with nothing pending: nothing is lost, a live one is re-created by
        its next read. Returns how many were removed."""
        try:
            consumers = await self.redis.xinfo_consumers(stream, WEBHOOK_GROUP)
        except ResponseError:
            return 0  # no group (yet)
        gone = [
            c["name"] for c in consumers
            if int(c["pending"]) == 0 and int(c["idle"]) > idle_ms and _text(c["name"]) != keep
        ]
        for name in gone:
            await self.redis.xgroup_delconsumer(stream, WEBHOOK_GROUP, name)
        return len(gone)

    async def backlog(self, streams: list[str]) -> dict[str, Backlog]:
        """The webhooks group's backlog in each of `streams`."""
        pipe = self.redis.pipeline(transaction=False)
        for stream in streams:
            pipe.xinfo_groups(stream)
        out = {}
        for stream, result in zip(streams, await pipe.execute(raise_on_error=False), strict=False):
            if isinstance(result, Exception):
                continue  # the stream went away: nothing to count
            for group in result:
                if _text(group["name"]) == WEBHOOK_GROUP:
                    # lag is null when Redis cannot tell (entries deleted
                    # inside the range): counted as 0.
                    out[stream] = Backlog(int(group.get("lag") or 0), int(group.get("pending") or 0))
        return out


class EventSource(ABC):
    """The events streams of one deployment, as the dispatcher sees them."""

    def __init__(self, layout: EventsLayout, dead_letter_maxlen: int) -> None:
        self.layout = layout
        self.dead_letter_maxlen = dead_letter_maxlen

    @abstractmethod
    async def open(self) -> None:
        """Connect, find the streams, create the group where it is missing."""

    @abstractmethod
    async def refresh(self) -> None:
        """Find streams (and on a cluster primaries) that appeared since."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def streams(self) -> list[str]: ...

    @abstractmethod
    def _node(self, stream: str) -> Node: ...

    @abstractmethod
    async def read_new(self, consumer: str, count: int, block_s: float) -> list[Item]:
        """Entries never delivered to the group, now pending for `consumer`;
        waits up to `block_s` when there are none."""

    async def ping(self) -> None:
        await asyncio.gather(*(node.redis.ping() for node in self._nodes()))

    @abstractmethod
    def _nodes(self) -> list[Node]: ...

    def _grouped_by_node(self, items: Iterable[Item]) -> list[tuple[Node, dict[str, list[Item]]]]:
        nodes: dict[int, tuple[Node, dict[str, list[Item]]]] = {}
        for stream, stream_items in by_stream(items).items():
            node = self._node(stream)
            nodes.setdefault(id(node), (node, {}))[1][stream] = stream_items
        return list(nodes.values())

    async def claim_abandoned(self, consumer: str, stream: str, min_idle_ms: int, count: int) -> tuple[list[Item], int]:
        return await self._node(stream).claim_abandoned(consumer, stream, min_idle_ms, count)

    async def prune_consumers(self, keep: str, idle_ms: int) -> int:
        removed = 0
        for stream in self.streams():
            removed += await self._node(stream).prune_consumers(stream, keep, idle_ms)
        return removed

    async def reclaim(self, consumer: str, items: list[Item], min_idle_ms: int) -> list[Item]:
        """The items still ours, each with one more attempt counted."""
        kept: set[tuple[str, str]] = set()
        for node, grouped in self._grouped_by_node(items):
            kept |= await node.reclaim(consumer, grouped, min_idle_ms)
        out = [i for i in items if (i.stream, i.entry_id) in kept]
        for item in out:
            item.attempts += 1
        return out

    async def release(self, consumer: str, items: list[Item], min_idle_ms: int, idle_ms: int) -> None:
        for node, grouped in self._grouped_by_node(items):
            await node.release(consumer, grouped, min_idle_ms, idle_ms)

    async def ack(self, items: list[Item]) -> None:
        for node, grouped in self._grouped_by_node(items):
            await node.ack(grouped)

    async def dead_letter(self, items: list[Item], reason: str) -> None:
        """Append the items to the dead-letter stream, then acknowledge them.
        Not atomic (on a cluster the two streams live on different slots): a
        crash in between dead-letters them twice, never loses them."""
        node = self._node(self.layout.dead_letter)
        pipe = node.redis.pipeline(transaction=False)
        now_ms = int(time.time() * 1000)
        for item in items:
            fields: dict[str, bytes | str | int] = {
                "e": item.body,
                "stream": item.stream,
                "entry": item.entry_id,
                "attempts": item.attempts,
                "reason": item.malformed or reason,
                "at": now_ms,
            }
            pipe.xadd(self.layout.dead_letter, fields, maxlen=self.dead_letter_maxlen, approximate=True)  # type: ignore[arg-type]
        await pipe.execute()
        await self.ack(items)

    async def backlog(self) -> dict[str, Backlog]:
        """Per stream: events not yet read by the group, and read but not
        acknowledged."""
        out: dict[str, Backlog] = {}
        for node in self._nodes():
            streams = [s for s in self.streams() if self._node(s) is node]
            if streams:
                out.update(await node.backlog(streams))
        return out


class StandaloneSource(EventSource):
    def __init__(self, url: str, layout: EventsLayout, dead_letter_maxlen: int) -> None:
        super().__init__(layout, dead_letter_maxlen)
        self.node = Node(Redis.from_url(url), layout)
        self._streams = layout.all_streams()

    async def open(self) -> None:
        await self.node.ensure_groups(self._streams)

    async def refresh(self) -> None:
        pass  # one stream, always there (NOGROUP on a read re-creates the group)

    async def close(self) -> None:
        await self.node.close()

    def streams(self) -> list[str]:
        return self._streams

    def _node(self, stream: str) -> Node:
        return self.node

    def _nodes(self) -> list[Node]:
        return [self.node]

    async def read_new(self, consumer: str, count: int, block_s: float) -> list[Item]:
        return await self.node.read_new(consumer, self._streams, count, max(1, int(block_s * 1000)))


def _node_url(seed: str, host: str, port: int) -> str:
    """`seed` with its host and port replaced: same scheme and credentials."""
    parsed = urlparse(seed)
    auth = ""
    if parsed.username or parsed.password:
        auth = f"{parsed.username or ''}:{parsed.password or ''}@"
    netloc = f"{auth}[{host}]:{port}" if ":" in host else f"{auth}{host}:{port}"
    return urlunparse((parsed.scheme, netloc, "/0", "", parsed.query, ""))


class ClusterSource(EventSource):
    """A Redis Cluster: one plain ``Redis`` per primary, routed by slot.

    Reads cannot block (one XREADGROUP per stream, on different slots), so
    each primary's live streams are polled with one pipeline, at most every
    ``poll_s`` while they are quiet. A MOVED reply or a lost connection makes
    the next ``refresh`` reload the slot map.
    """

    def __init__(self, seeds: tuple[str, ...], layout: EventsLayout, dead_letter_maxlen: int, poll_s: float = 0.2) -> None:
        super().__init__(layout, dead_letter_maxlen)
        self.seeds = seeds
        self.poll_s = poll_s
        self._by_address: dict[tuple[str, int], Node] = {}
        self._slot_owner: list[Node | None] = [None] * SLOTS
        self._live: dict[str, Node] = {}  # stream -> node owning its slot

    async def open(self) -> None:
        await self.refresh()

    async def _slot_map(self) -> list[Any]:
        """CLUSTER SLOTS from a known primary, else from a seed."""
        last: Exception | None = None
        for node in list(self._by_address.values()):
            try:
                known: list[Any] = await node.redis.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
                return known
            except (RedisError, OSError) as exc:
                last = exc
        for seed in self.seeds:
            redis = Redis.from_url(seed)
            try:
                seeded: list[Any] = await redis.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
                return seeded
            except (RedisError, OSError) as exc:
                last = exc
            finally:
                await redis.aclose()
        raise RedisError(f"no cluster node answers CLUSTER SLOTS: {last}")

    async def refresh(self) -> None:
        owners: list[Node | None] = [None] * SLOTS
        seen: set[tuple[str, int]] = set()
        for start, end, primary, *_ in await self._slot_map():
            address = (_text(primary[0]), int(primary[1]))
            seen.add(address)
            node = self._by_address.get(address)
            if node is None:
                node = Node(Redis.from_url(_node_url(self.seeds[0], *address)), self.layout)
                self._by_address[address] = node
            for slot in range(int(start), int(end) + 1):
                owners[slot] = node
        for address in set(self._by_address) - seen:  # no longer a primary
            await self._by_address.pop(address).close()
        self._slot_owner = owners
        live: dict[str, Node] = {}
        for node in self._nodes():
            slots = [s for s in range(SLOTS) if owners[s] is node]
            found = await node.existing(self.layout.streams_of_slots(slots))
            new = [s for s in found if s not in self._live]
            if new:
                await node.ensure_groups(new)
            live.update((s, node) for s in found)
        if len(live) != len(self._live):
            log.info("events streams: %d on %d primaries", len(live), len(self._by_address))
        self._live = live

    async def close(self) -> None:
        for node in self._by_address.values():
            await node.close()
        self._by_address.clear()

    def streams(self) -> list[str]:
        return list(self._live)

    def _nodes(self) -> list[Node]:
        return list(self._by_address.values())

    def _node(self, stream: str) -> Node:
        node = self._live.get(stream) or self._slot_owner[key_slot(stream)]
        if node is None:
            raise RedisError(f"no primary known for {stream}")
        return node

    async def read_new(self, consumer: str, count: int, block_s: float) -> list[Item]:
        deadline = time.monotonic() + block_s
        while True:
            by_node: dict[int, tuple[Node, list[str]]] = {}
            for stream, node in self._live.items():
                by_node.setdefault(id(node), (node, []))[1].append(stream)
            items: list[Item] = []
            for node, streams in by_node.values():
                # Each stream may return up to its share; what is read is ours
                # to deliver, so the total stays near `count`.
                share = max(1, count // len(self._live))
                items += await node.read_new(consumer, streams, share, None)
            if items or time.monotonic() >= deadline:
                return items
            await asyncio.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))


async def is_cluster(url: str) -> bool:
    """Whether `url` is a Redis Cluster node (``INFO cluster``)."""
    redis = Redis.from_url(url)
    try:
        info = await redis.info("cluster")
        return bool(int(info.get("cluster_enabled", 0)))
    finally:
        await redis.aclose()


async def connect(urls: tuple[str, ...], cluster: bool | None, prefix: str, dead_letter_maxlen: int) -> EventSource:
    """The source for REDIS_URL / REDIS_CLUSTER (None: detect), opened."""
    if cluster is None:
        cluster = await is_cluster(urls[0])
    source: EventSource
    if cluster:
        source = ClusterSource(urls, EventsLayout(prefix, cluster=True), dead_letter_maxlen)
    else:
        source = StandaloneSource(urls[0], EventsLayout(prefix, cluster=False), dead_letter_maxlen)
    try:
        await source.open()
    except BaseException:
        await source.close()
        raise
    return source
