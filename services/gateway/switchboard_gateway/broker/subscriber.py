"""Receiving from one Redis server: ``StandaloneSubscriber``.

ONE dedicated pub/sub connection per gateway process, driven directly (not
through redis-py's ``PubSub``) so that liveness, resubscription and
confirmations are ours:

- ``subscribe(room)`` returns once Redis confirmed the subscription, so a
  read made after it cannot miss a message published in between.
- The reader pings when the connection is idle and treats a missing pong as
  a dead connection (a half-open TCP connection otherwise looks idle forever).
- On any failure it reconnects with capped, jittered backoff, resubscribes
  every room, waits for the confirmations, then calls ``on_resubscribed`` so
  the node can fill what pub/sub lost meanwhile (Redis pub/sub is at most once).

The Redis Cluster counterpart is ``sharded.ShardedSubscriber``; both hand
payloads to ``payload.dispatch``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from switchboard.backplane.commands import connection_options, open_connection
from switchboard.backplane.keys import room_of_channel
from switchboard_gateway.broker.base import BrokerEvents, BrokerUnavailable
from switchboard_gateway.broker.payload import dispatch

log = logging.getLogger("switchboard.broker")

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0


class StandaloneSubscriber:
    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        channel_of: Callable[[str], str],
        on_connect: Callable[[], Awaitable[None]],
        liveness_s: float = 2.0,
        client_name: str | None = None,
    ) -> None:
        # client_name: how the connection shows in CLIENT LIST (which gateway holds it)
        self._pool = ConnectionPool.from_url(url, **connection_options(), client_name=client_name)
        self._prefix = prefix
        self._channel_of = channel_of
        self._on_connect = on_connect
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
        await self._pool.disconnect()

    def _set_available(self, available: bool) -> None:
        if available != self._available:
            self._available = available
            if self._events is not None:
                self._events.on_availability(available)

    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        first = True
        while True:
            try:
                await self._connect()
                backoff = BACKOFF_MIN_S
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
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _connect(self) -> None:
        conn = self._pool.connection_class(**self._pool.connection_kwargs)
        await open_connection(conn)
        await self._on_connect()  # e.g. Redis may have restarted without the scripts
        self._conn = conn

    async def _read_forever(self, resync: bool) -> None:
        conn = self._conn
        assert conn is not None
        channels = [self._channel_of(room).encode() for room in self._rooms]
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
                dispatch(events, room_of_channel(prefix, reply[1].decode()), reply[2])
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
        channel = self._channel_of(room).encode()
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
                await conn.send_command("UNSUBSCRIBE", self._channel_of(room))
        except (RedisError, OSError):
            pass  # the reader notices the broken connection

    async def pin(self, room: str) -> None:
        """Subscribe `room` for good (the control channel): if Redis cannot
        confirm it now, the next (re)connect subscribes it with the rest."""
        try:
            await self.subscribe(room)
        except BrokerUnavailable as exc:
            log.warning("subscribing %s failed (%s); retried on reconnect", room, exc)
            self._rooms.add(room)
