"""``RedisBroker``: the production broker, on one Redis or a Redis Cluster.

Two halves, each with one job:

- commands (publish, reads, presence) go through
  ``switchboard.backplane.Backplane``, routed by a ``Commands`` object: one
  server (``StandaloneCommands``) or the primary owning the room's slot
  (``ClusterCommands``), batched per node by an auto-pipeline;
- receiving goes through a subscriber: ``StandaloneSubscriber`` (one
  ``SUBSCRIBE`` connection per gateway) or ``ShardedSubscriber`` (sharded
  pub/sub, one connection per shard primary).

The topology comes from ``REDIS_URL`` and ``REDIS_CLUSTER`` (``auto`` asks
the server, see ``switchboard.backplane.connect``). When Redis cannot be
reached at start, the gateway starts unready and keeps trying.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable
from typing import TypeVar

from redis.exceptions import RedisError

from switchboard.backplane import Backplane, control, directs
from switchboard.backplane.cluster import ClusterCommands
from switchboard.backplane.commands import Commands, StandaloneCommands, load_scripts
from switchboard.backplane.connect import ClusterMode, detect_cluster, split_urls
from switchboard.backplane.pipeline import Durability, WriteOutcomeUnknown
from switchboard.directs import DirectEntry
from switchboard.protocol.frames import MessageBody, User
from switchboard.roomlog import Heard, JoinReply, PublishResult, ReadMode, ReadState, Snapshot
from switchboard.roster import PresencePage
from switchboard_gateway.broker.base import BrokerEvents, BrokerOutcomeUnknown, BrokerUnavailable
from switchboard_gateway.broker.janitor import sweep_abandoned_rooms_forever
from switchboard_gateway.broker.sharded import ShardedSubscriber
from switchboard_gateway.broker.subscriber import BACKOFF_MAX_S, BACKOFF_MIN_S, StandaloneSubscriber

log = logging.getLogger("switchboard.broker")

T = TypeVar("T")


def _now_ms() -> int:
    return int(time.time() * 1000)


class RedisBroker:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "sb",
        history_size: int = 1000,
        history_ttl_s: int = 86400,
        idempotency_window_s: int = 120,
        presence_ttl_s: float = 30.0,
        presence_events_max: int = 200,
        events_maxlen: int = 0,
        liveness_s: float = 2.0,
        cluster: ClusterMode = "auto",
        durability: Durability | None = None,
        client_name: str | None = None,
    ) -> None:
        self._urls = split_urls(url)
        if not self._urls:
            raise ValueError("no Redis URL given")
        self._cluster_mode: ClusterMode = cluster
        self._durability = durability
        self._prefix = prefix
        self._liveness_s = liveness_s
        self._client_name = client_name
        self._history_size = history_size
        self._history_ttl_s = history_ttl_s
        self._idempotency_window_s = idempotency_window_s
        self._presence_ttl_s = presence_ttl_s
        self._presence_events_max = presence_events_max
        self._events_maxlen = events_maxlen
        self._backplane: Backplane | None = None
        self._subscriber: StandaloneSubscriber | ShardedSubscriber | None = None
        self._setup_task: asyncio.Task[None] | None = None
        self._janitor_task: asyncio.Task[None] | None = None

    # --- lifecycle -----------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._subscriber is not None and self._subscriber.available

    @property
    def backplane(self) -> Backplane:
        if self._backplane is None:
            raise BrokerUnavailable("redis has not been reached yet")
        return self._backplane

    async def start(self, events: BrokerEvents) -> None:
        if self._cluster_mode != "auto":
            await self._build(events, self._cluster_mode == "true")
            return
        try:
            async with asyncio.timeout(3):
                cluster = await detect_cluster(self._urls)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("redis not reachable yet (%s); retrying in the background", exc)
            self._setup_task = asyncio.create_task(self._detect_forever(events), name="redis-detect")
            return
        await self._build(events, cluster)

    async def _detect_forever(self, events: BrokerEvents) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            await asyncio.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, BACKOFF_MAX_S)
            try:
                cluster = await detect_cluster(self._urls)
            except (RedisError, OSError) as exc:
                log.debug("redis still unreachable: %s", exc)
                continue
            await self._build(events, cluster)
            return

    async def _build(self, events: BrokerEvents, cluster: bool) -> None:
        if not cluster and len(self._urls) > 1:
            raise ValueError("REDIS_URL lists several nodes, which only a Redis Cluster accepts")
        commands: Commands
        if cluster:
            commands = ClusterCommands(self._urls, self._durability)
        else:
            commands = StandaloneCommands.from_url(self._urls[0], self._durability)
        backplane = Backplane(
            commands,
            prefix=self._prefix,
            history_size=self._history_size,
            history_ttl=self._history_ttl_s,
            idempotency_window=self._idempotency_window_s,
            presence_ttl=self._presence_ttl_s,
            presence_events_max=self._presence_events_max,
            events_maxlen=self._events_maxlen,
            durable=self._durability is not None,
        )

        def channel_of(room: str) -> str:
            return backplane.keys(room).channel

        subscriber: StandaloneSubscriber | ShardedSubscriber
        if isinstance(commands, ClusterCommands):
            subscriber = ShardedSubscriber(
                commands,
                prefix=self._prefix,
                channel_of=channel_of,
                liveness_s=self._liveness_s,
                client_name=self._client_name,
            )
        else:
            redis = commands.redis
            subscriber = StandaloneSubscriber(
                self._urls[0],
                prefix=self._prefix,
                channel_of=channel_of,
                on_connect=lambda: load_scripts(redis),
                liveness_s=self._liveness_s,
                client_name=self._client_name,
            )
        self._backplane, self._subscriber = backplane, subscriber
        if self._events_maxlen > 0:  # crash expiry of rooms no gateway serves any more (janitor.py)
            self._janitor_task = asyncio.create_task(
                sweep_abandoned_rooms_forever(backplane, max(0.1, self._presence_ttl_s / 2)), name="events-janitor"
            )
        log.info("backplane: %s", "redis cluster (sharded pub/sub)" if cluster else "one redis server")
        await subscriber.start(events)
        await subscriber.pin(control.CONTROL_ROOM)  # user control commands (control.py)

    async def close(self) -> None:
        for task in (self._setup_task, self._janitor_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._subscriber is not None:
            await self._subscriber.close()
        if self._backplane is not None:
            await self._backplane.commands.close()

    # --- subscriptions -------------------------------------------------------------

    async def subscribe(self, room: str) -> None:
        if self._subscriber is None:
            raise BrokerUnavailable("redis has not been reached yet")
        await self._subscriber.subscribe(room)

    async def unsubscribe(self, room: str) -> None:
        if self._subscriber is not None:
            await self._subscriber.unsubscribe(room)

    # --- commands ------------------------------------------------------------------

    async def publish(
        self,
        room: str,
        body: MessageBody,
        client_msg_id: str | None,
        heard: Heard | None = None,
        moderator: bool = False,
    ) -> PublishResult:
        try:
            return await _guard(
                self.backplane.publish(room, body, client_msg_id=client_msg_id, heard=heard, moderator=moderator)
            )
        except BrokerUnavailable as exc:
            if isinstance(exc.__cause__, WriteOutcomeUnknown):
                raise BrokerOutcomeUnknown(str(exc)) from exc.__cause__
            raise

    async def read_state(self, room: str, user_id: str, epoch: str, top: int, peer_id: str | None = None) -> ReadState:
        return await _guard(self.backplane.read_state(room, user_id, epoch, top, peer_id))

    async def mark_read(self, room: str, user: User, epoch: str, offset: int) -> bool:
        return await _guard(self.backplane.mark_read(room, user, epoch, offset))

    async def position(self, room: str) -> Snapshot:
        return await _guard(self.backplane.position(room))

    async def catch_up(self, room: str, offset: int, count: int) -> Snapshot:
        return await _guard(self.backplane.catch_up(room, offset, count))

    async def read_after(self, room: str, offset: int, count: int) -> Snapshot:
        return await _guard(self.backplane.read_after(room, offset, count))

    async def read_before(self, room: str, offset: int, count: int) -> Snapshot:
        return await _guard(self.backplane.read_before(room, offset, count))

    async def read_last(self, room: str, count: int) -> Snapshot:
        return await _guard(self.backplane.read_last(room, count))

    async def positions(self, rooms: list[str]) -> dict[str, tuple[str | None, int]]:
        return await _guard(self.backplane.positions(rooms))

    async def renew_epoch(self, room: str, stale_epoch: str) -> Snapshot:
        return await _guard(self.backplane.renew_epoch(room, stale_epoch))

    async def publish_ephemeral(self, room: str, frame: bytes) -> None:
        await _guard(self.backplane.publish_ephemeral(room, frame))

    async def presence_upsert(
        self, room: str, entries: list[tuple[str, bytes]], list_limit: int = 0
    ) -> PresencePage:
        return await _guard(self.backplane.presence_upsert(room, entries, _now_ms(), list_limit))

    async def join(
        self,
        room: str,
        conn: str,
        user: bytes,
        user_id: str,
        list_limit: int,
        mode: ReadMode = "none",
        offset: int = 0,
        count: int = 0,
    ) -> JoinReply:
        return await _guard(
            self.backplane.join(room, conn, user, user_id, _now_ms(), list_limit, mode, offset, count)
        )

    async def presence_remove(self, room: str, conns: list[str]) -> None:
        await _guard(self.backplane.presence_remove(room, conns, _now_ms()))

    async def presence_members(self, room: str, limit: int) -> PresencePage:
        return await _guard(self.backplane.presence_members(room, _now_ms(), limit))

    async def presence_sweep(self, rooms: list[str]) -> None:
        await _guard(self.backplane.presence_sweep(rooms, _now_ms()))

    async def take_tokens(self, subject: str, action: str, rate: float, burst: int, want: int = 1) -> tuple[int, float]:
        return await _guard(self.backplane.take_tokens(subject, action, rate, burst, want))

    async def claim_slot(self, subject: str, slot: str, limit: int, lifetime_s: float) -> bool:
        return await _guard(self.backplane.claim_slot(subject, slot, limit, lifetime_s))

    async def refresh_slots(self, subject: str, slots: list[str], lifetime_s: float) -> None:
        await _guard(self.backplane.refresh_slots(subject, slots, lifetime_s))

    async def release_slot(self, subject: str, slot: str) -> None:
        await _guard(self.backplane.release_slot(subject, slot))

    # --- user control -------------------------------------------------------------

    async def publish_control(self, command: bytes) -> None:
        bp = self.backplane
        channel = control.control_channel(self._prefix)
        payload = control.CONTROL_PAYLOAD + command
        # Running it twice is harmless (a second kick finds nobody), so a
        # failover may retry it.
        await _guard(bp.commands.execute(channel, bp.publish_command, channel, payload, idempotent=True))

    async def ban(self, user_id: str, seconds: float, room: str | None = None) -> None:
        key = self._ban_key(user_id, room)
        ms = max(1, round(seconds * 1000))
        await _guard(self.backplane.commands.execute(key, "SET", key, b"1", "PX", ms, idempotent=True))

    async def banned(self, user_id: str, room: str | None = None) -> float:
        key = self._ban_key(user_id, room)
        left_ms = await _guard(self.backplane.commands.execute(key, "PTTL", key, idempotent=True))
        return int(left_ms) / 1000 if int(left_ms) > 0 else 0.0

    def _ban_key(self, user_id: str, room: str | None) -> str:
        if room is None:
            return control.user_ban_key(self._prefix, user_id)
        return control.room_ban_key(self._prefix, room, user_id)

    async def active_rooms(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        bp = self.backplane
        commands = bp.commands
        if isinstance(commands, ClusterCommands):
            servers = [commands.node(address).redis for address in await _guard(commands.primaries())]
        else:
            assert isinstance(commands, StandaloneCommands)
            servers = [commands.redis]
        names = await _guard(control.scan_room_names(servers, self._prefix, prefix))
        out: list[tuple[str, int]] = []
        # A room's hash may still hold users of a dead gateway: the members
        # script sweeps them first, so the counts are the live ones.
        for room in sorted(names):
            page = await _guard(bp.presence_members(room, _now_ms(), 0))
            if page.count > 0:
                out.append((room, page.count))
                if len(out) >= limit:
                    break
        return out

    # --- a user's direct rooms -----------------------------------------------------

    async def touch_direct(self, user_id: str, room: str, peer: bytes, ts_ms: int, *, overwrite: bool) -> bool:
        return await _guard(directs.touch(self.backplane, user_id, room, peer, ts_ms, overwrite=overwrite))

    async def direct_rooms(self, user_id: str, limit: int) -> list[DirectEntry]:
        return await _guard(directs.listing(self.backplane, user_id, limit))


async def _guard(call: Awaitable[T]) -> T:
    """Map every way Redis can be unreachable onto ``BrokerUnavailable``."""
    try:
        return await call
    except (RedisError, OSError, TimeoutError) as exc:
        raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc
