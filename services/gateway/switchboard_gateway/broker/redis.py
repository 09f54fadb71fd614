"""``RedisBroker``: the production broker.

Publishing and reads go through ``switchboard.backplane.Backplane`` (one
auto-pipelined connection at a time). Receiving uses ONE dedicated pub/sub
connection per gateway process, driven here directly (not through redis-py's
``PubSub``) so that liveness, resubscription and confirmations are ours:

- ``subscribe(room)`` returns once Redis confirmed the subscription, so a
  read made after it cannot miss a message published in between.
- The reader pings when the connection is idle and treats a missing pong as
  a dead connection (a half-open TCP connection otherwise looks idle forever).
- On any failure it reconnects with capped, jittered backoff, resubscribes
  every room, waits for the confirmations, then calls ``on_resubscribed`` so
  the node can fill what pub/sub lost meanwhile (Redis pub/sub is at most once).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from switchboard.backplane import Backplane
from switchboard.backplane.keys import room_of_channel
from switchboard.backplane.store import WriteOutcomeUnknown, load_scripts
from switchboard.protocol.frames import MessageBody
from switchboard.roomlog import PublishResult, Snapshot
from switchboard.roster import PresencePage
from switchboard_gateway.broker.base import BrokerEvents, BrokerOutcomeUnknown, BrokerUnavailable

log = logging.getLogger("switchboard.broker")

_BACKOFF_MIN_S = 0.1
_BACKOFF_MAX_S = 5.0


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
        liveness_s: float = 2.0,
    ) -> None:
        options = dict(
            protocol=2,
            socket_connect_timeout=3,
            socket_timeout=5,
            # No silent retries: a retried publish could be stored twice. The
            # node decides what to retry; idempotency keys make retries safe.
            retry=Retry(NoBackoff(), 0),
        )
        # from_pool: the client owns the pool, so close() (aclose) disconnects it too.
        self._redis = Redis.from_pool(BlockingConnectionPool.from_url(url, max_connections=16, timeout=5, **options))
        self._sub_pool = ConnectionPool.from_url(url, **options)
        self.backplane = Backplane(
            self._redis,
            prefix=prefix,
            history_size=history_size,
            history_ttl=history_ttl_s,
            idempotency_window=idempotency_window_s,
            presence_ttl=presence_ttl_s,
            presence_events_max=presence_events_max,
        )
        self._prefix = prefix
        self._liveness_s = liveness_s
        self._events: BrokerEvents | None = None
        self._rooms: set[str] = set()
        self._confirmations: dict[bytes, asyncio.Future[None]] = {}
        self._conn: AbstractConnection | None = None
        self._write_lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._available = False
        self.reconnects = 0

    # --- lifecycle -----------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._available

    async def start(self, events: BrokerEvents) -> None:
        self._events = events
        self._task = asyncio.create_task(self._run(), name="redis-subscriber")
        # Give a reachable Redis a moment, so the gateway starts ready; an
        # unreachable one is not fatal: the reader keeps trying.
        try:
            async with asyncio.timeout(3):
                await self._connected.wait()
        except TimeoutError:
            log.warning("redis not reachable yet; retrying in the background")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._conn is not None:
            await self._conn.disconnect()
        await self._redis.aclose()
        await self._sub_pool.disconnect()

    def _set_available(self, available: bool) -> None:
        if available != self._available:
            self._available = available
            if self._events is not None:
                self._events.on_availability(available)

    # --- the subscription connection ----------------------------------------------

    async def _run(self) -> None:
        backoff = _BACKOFF_MIN_S
        first = True
        while True:
            try:
                await self._connect()
                backoff = _BACKOFF_MIN_S
                await self._read_forever(resync=not first)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("redis subscription lost (%s: %s); reconnecting", type(exc).__name__, exc)
            first = False
            self._connected.clear()
            self._set_available(False)
            self._fail_confirmations(BrokerUnavailable("redis subscription lost"))
            if self._conn is not None:
                await self._conn.disconnect(nowait=True)
                self._conn = None
            self.reconnects += 1
            await asyncio.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, _BACKOFF_MAX_S)

    async def _connect(self) -> None:
        conn = self._sub_pool.make_connection()
        await conn.connect()
        await load_scripts(self._redis)  # Redis may have restarted without them
        self._conn = conn

    async def _read_forever(self, resync: bool) -> None:
        conn = self._conn
        assert conn is not None
        channels = [self.backplane.keys(room).channel.encode() for room in self._rooms]
        awaiting = set(channels)
        if channels:
            async with self._write_lock:
                await conn.send_command("SUBSCRIBE", *channels)
        else:
            await self._ping(conn)
        self._connected.set()
        if not awaiting:
            self._back_online(resync)
        ping_sent = False
        events = self._events
        assert events is not None
        prefix = self._prefix
        while True:
            reply = await conn.read_response(timeout=self._liveness_s, disconnect_on_error=False)
            if reply is None:  # idle: prove the connection is alive
                if ping_sent:
                    raise ConnectionError("no pong from redis")
                await self._ping(conn)
                ping_sent = True
                continue
            ping_sent = False
            kind = reply[0]
            if kind == b"message":
                data: bytes = reply[2]
                room = room_of_channel(prefix, reply[1].decode())
                if data[:1] == b"m":  # m<offset> <epoch> <ts> <frame>
                    offset, epoch, ts, frame = data[1:].split(b" ", 3)
                    events.on_message(room, int(offset), epoch.decode(), int(ts), frame.decode())
                elif data[:1] == b"e":
                    events.on_ephemeral(room, data[1:].decode())
                elif data[:1] == b"c":  # c<count>: presence count above the events threshold
                    events.on_presence_count(room, int(data[1:]))
            elif kind == b"subscribe":
                waiter = self._confirmations.pop(reply[1], None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
                if awaiting:
                    awaiting.discard(reply[1])
                    if not awaiting:
                        self._back_online(resync)

    def _back_online(self, resync: bool) -> None:
        self._set_available(True)
        if resync and self._events is not None:
            self._events.on_resubscribed()

    async def _ping(self, conn: AbstractConnection) -> None:
        async with self._write_lock:
            await conn.send_command("PING")

    def _fail_confirmations(self, exc: Exception) -> None:
        for waiter in self._confirmations.values():
            if not waiter.done():
                waiter.set_exception(exc)
        self._confirmations.clear()

    async def subscribe(self, room: str) -> None:
        self._rooms.add(room)
        conn = self._conn
        if conn is None or not self._connected.is_set():
            self._rooms.discard(room)
            raise BrokerUnavailable("redis is not connected")
        channel = self.backplane.keys(room).channel.encode()
        waiter = self._confirmations.get(channel)
        if waiter is None:
            waiter = self._confirmations[channel] = asyncio.get_running_loop().create_future()
        try:
            async with self._write_lock:
                await conn.send_command("SUBSCRIBE", channel)
            async with asyncio.timeout(5):
                await asyncio.shield(waiter)
        except (RedisError, OSError, TimeoutError) as exc:
            self._rooms.discard(room)
            raise BrokerUnavailable(f"subscribe failed: {exc}") from exc
        except BrokerUnavailable:
            self._rooms.discard(room)
            raise

    async def unsubscribe(self, room: str) -> None:
        self._rooms.discard(room)
        conn = self._conn
        if conn is None or not self._connected.is_set():
            return  # nothing to undo: a reconnect subscribes only current rooms
        try:
            async with self._write_lock:
                await conn.send_command("UNSUBSCRIBE", self.backplane.keys(room).channel)
        except (RedisError, OSError):
            pass  # the reader notices the broken connection

    # --- commands ------------------------------------------------------------------

    async def publish(self, room: str, body: MessageBody, client_msg_id: str | None) -> PublishResult:
        try:
            return await _guard(self.backplane.publish(room, body, client_msg_id=client_msg_id))
        except BrokerUnavailable as exc:
            if isinstance(exc.__cause__, WriteOutcomeUnknown):
                raise BrokerOutcomeUnknown(str(exc)) from exc.__cause__
            raise

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

    async def publish_ephemeral(self, room: str, frame: bytes) -> None:
        await _guard(self.backplane.publish_ephemeral(room, frame))

    async def presence_upsert(
        self, room: str, entries: list[tuple[str, bytes]], list_limit: int = 0
    ) -> PresencePage:
        return await _guard(self.backplane.presence_upsert(room, entries, _now_ms(), list_limit))

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


async def _guard(call):  # type: ignore[no-untyped-def]
    """Map every way Redis can be unreachable onto ``BrokerUnavailable``."""
    try:
        return await call
    except (RedisError, OSError, TimeoutError) as exc:
        raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc

