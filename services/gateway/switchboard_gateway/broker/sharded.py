"""Receiving from a Redis Cluster: ``ShardedSubscriber``.

Sharded pub/sub (``SSUBSCRIBE``): a room's channel lives in the room's hash
slot, so its messages travel only inside the shard that owns the room.
This gateway holds at most ONE subscription connection (a ``_Link``) per
shard primary, never one per room, and subscribes a room only while the node
has members there.

- ``subscribe(room)`` returns once the room's primary confirmed it (a read
  made after it cannot miss a message), retrying on ``MOVED``.
- Subscriptions are sent in batches, one ``SSUBSCRIBE`` per slot (Redis
  refuses channels of several slots in one command: CROSSSLOT).
- Each link's reader only decodes and hands over (``BrokerEvents`` calls are
  synchronous): it never blocks. It pings when idle; a missing pong is a dead
  connection.
- Topology changes are handled here, by one reconciler: an unsolicited
  ``sunsubscribe`` (the slot migrated away), a lost link, a map change seen
  by the command layer (``MOVED``) or by the periodic check (a primary
  demoted without telling its subscribers) all mark the affected rooms;
  the reconciler refreshes the slot map, subscribes them on their current
  owner, then calls ``on_resubscribed`` so the node fills the gap by offset.
  Members keep their sockets.
- Availability (``/readyz``) follows ``cluster_state`` from the periodic
  check: with ``cluster-require-full-coverage no`` one shard failing over
  does not make the gateways unready; that shard's rooms answer
  ``unavailable`` meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import MovedError, RedisError, ResponseError
from redis.typing import EncodableT

from switchboard.backplane.cluster import Address, ClusterCommands, slot_of
from switchboard.backplane.commands import open_connection
from switchboard.backplane.keys import room_of_channel
from switchboard_gateway.broker.base import BrokerEvents, BrokerUnavailable
from switchboard_gateway.broker.payload import dispatch

log = logging.getLogger("switchboard.broker")

_BATCH = 512  # channels per SSUBSCRIBE
_CONFIRM_TIMEOUT_S = 5.0
_CONNECT_TIMEOUT_S = 3.0
_BACKOFF_MIN_S = 0.1
_BACKOFF_MAX_S = 1.0


@dataclass
class _Pending:
    """A command sent on a link whose replies have not all arrived."""

    kind: bytes  # b"ssubscribe", b"sunsubscribe" or b"ping"
    channels: set[bytes] = field(default_factory=set)


class _Link:
    """The subscription connection to one shard primary, and its reader."""

    def __init__(self, owner: ShardedSubscriber, address: Address, conn: AbstractConnection) -> None:
        self.owner = owner
        self.address = address
        self.conn = conn
        self.alive = True
        self._pending: deque[_Pending] = deque()
        self._waiters: dict[bytes, asyncio.Future[None]] = {}
        self._outbox: list[bytes] = []
        self._flushing: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self.task = asyncio.create_task(self._read(), name=f"shard-link-{address[0]}:{address[1]}")

    # --- writing ---------------------------------------------------------------------

    def subscribe(self, channels: Iterable[bytes]) -> list[asyncio.Future[None]]:
        """Queue SSUBSCRIBEs; each future resolves on Redis's confirmation
        (or fails with its error, e.g. MovedError)."""
        loop = asyncio.get_running_loop()
        futures = []
        for channel in channels:
            waiter = self._waiters.get(channel)
            if waiter is None or waiter.done():
                waiter = self._waiters[channel] = loop.create_future()
                self._outbox.append(channel)
            futures.append(waiter)
        if not self.alive:
            self._fail(ConnectionError("link closed"))
        elif self._outbox and self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        return futures

    async def _flush(self) -> None:
        try:
            while self._outbox and self.alive:
                batch, self._outbox = self._outbox, []
                by_slot: dict[int, list[bytes]] = {}
                for channel in batch:
                    by_slot.setdefault(slot_of(channel), []).append(channel)
                commands: list[Sequence[EncodableT]] = []
                for channels in by_slot.values():
                    for i in range(0, len(channels), _BATCH):
                        chunk = channels[i : i + _BATCH]
                        commands.append(("SSUBSCRIBE", *chunk))
                        self._pending.append(_Pending(b"ssubscribe", set(chunk)))
                await self._send(commands)
        except Exception as exc:
            self.close(exc)
        finally:
            self._flushing = None

    async def unsubscribe(self, channel: bytes) -> None:
        if not self.alive:
            return
        self._pending.append(_Pending(b"sunsubscribe", {channel}))
        try:
            await self._send([("SUNSUBSCRIBE", channel)])
        except Exception as exc:
            self.close(exc)

    async def _ping(self) -> None:
        self._pending.append(_Pending(b"ping"))
        await self._send([("PING",)])

    async def _send(self, commands: list[Sequence[EncodableT]]) -> None:
        async with self._write_lock:
            await self.conn.send_packed_command(self.conn.pack_commands(commands))

    # --- reading ------------------------------------------------------------------------

    async def _read(self) -> None:
        owner = self.owner
        liveness = owner.liveness_s
        ping_sent = False
        try:
            while True:
                try:
                    reply = await self.conn.read_response(timeout=liveness, disconnect_on_error=False)
                except ResponseError as exc:  # a refused command (MOVED, CROSSSLOT, ...)
                    self._refused(exc)
                    continue
                if reply is None:  # idle: prove the connection is alive
                    if ping_sent:
                        raise ConnectionError("no pong from the shard primary")
                    await self._ping()
                    ping_sent = True
                    continue
                ping_sent = False
                if isinstance(reply, bytes):  # +PONG while subscribed to nothing
                    self._settle(b"ping", None)
                    continue
                kind = reply[0]
                if kind == b"smessage":
                    owner.deliver(self, reply[1], reply[2])
                elif kind == b"ssubscribe":
                    channel = reply[1]
                    self._settle(kind, channel)
                    owner.confirmed(self, channel)
                    waiter = self._waiters.pop(channel, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
                elif kind == b"sunsubscribe":
                    if not self._settle(kind, reply[1]):
                        owner.evicted(self, reply[1])  # unsolicited: the slot left this node
                elif kind == b"pong":
                    self._settle(b"ping", None)
        except asyncio.CancelledError:
            self.close(ConnectionError("link closed"))
            raise
        except Exception as exc:
            self.close(exc)

    def _settle(self, kind: bytes, channel: bytes | None) -> bool:
        """Match a reply with the oldest command awaiting one; False when
        nothing was waiting for it (a push from the server)."""
        if not self._pending or self._pending[0].kind != kind:
            return False
        head = self._pending[0]
        if channel is not None:
            if channel not in head.channels:
                return False
            head.channels.discard(channel)
        if not head.channels:
            self._pending.popleft()
        return True

    def _refused(self, exc: ResponseError) -> None:
        head = self._pending.popleft() if self._pending else None
        log.info("shard %s:%s refused %s: %s", *self.address, head.kind.decode() if head else "?", exc)
        if head is None:
            return
        if isinstance(exc, MovedError):
            self.owner.cluster.slots.patch(exc.slot_id, exc.node_addr)
            self.owner.cluster.request_refresh()
        for channel in head.channels:
            waiter = self._waiters.pop(channel, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)

    # --- teardown --------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(exc)
        self._waiters.clear()
        self._outbox.clear()
        self._pending.clear()

    def close(self, reason: BaseException | None = None) -> None:
        if not self.alive:
            return
        self.alive = False
        if reason is not None:
            log.warning("subscription link to %s:%s lost (%s: %s)", *self.address, type(reason).__name__, reason)
        self._fail(reason or ConnectionError("link closed"))
        if self.task is not asyncio.current_task():
            self.task.cancel()
        asyncio.ensure_future(self.conn.disconnect(nowait=True))
        self.owner.link_lost(self)


class ShardedSubscriber:
    def __init__(
        self,
        cluster: ClusterCommands,
        *,
        prefix: str,
        channel_of: Callable[[str], str],
        liveness_s: float = 2.0,
        check_interval_s: float = 1.0,
        client_name: str | None = None,
    ) -> None:
        self.cluster = cluster
        self._client_name = client_name  # how the links show in CLIENT LIST
        self.liveness_s = liveness_s
        self._prefix = prefix
        self._channel_of = channel_of
        self._check_interval_s = check_interval_s
        self._events: BrokerEvents | None = None
        self._rooms: dict[str, bytes] = {}  # wanted: room -> channel
        self._where: dict[str, _Link] = {}  # room -> the link that delivers it
        self._busy: set[str] = set()  # rooms whose subscribe() is in progress
        self._links: dict[Address, _Link] = {}
        self._connecting: dict[Address, asyncio.Future[_Link]] = {}
        self._dirty = asyncio.Event()
        self._refresh_first = False
        self._available = False
        self._tasks: list[asyncio.Task[None]] = []
        self.resubscribes = 0
        cluster.on_topology_change(self._topology_changed)

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._available

    async def start(self, events: BrokerEvents) -> None:
        self._events = events
        try:
            async with asyncio.timeout(3):
                await self._check()
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("redis cluster not reachable yet (%s); retrying in the background", exc)
        self._tasks = [
            asyncio.create_task(self._reconcile_forever(), name="cluster-reconciler"),
            asyncio.create_task(self._check_forever(), name="cluster-check"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pending in list(self._connecting.values()):
            pending.cancel()
        links = list(self._links.values())
        self._links.clear()
        for link in links:
            link.alive = False
            link.task.cancel()
        await asyncio.gather(*(link.task for link in links), return_exceptions=True)
        await asyncio.gather(*(link.conn.disconnect() for link in links), return_exceptions=True)

    def _set_available(self, available: bool) -> None:
        if available != self._available:
            self._available = available
            if self._events is not None:
                self._events.on_availability(available)

    async def _check(self) -> None:
        """The periodic check: the slot map (a change marks rooms to move)
        and cluster_state (readiness)."""
        await self.cluster.refresh()
        self._set_available(await self.cluster.cluster_ok())

    async def _check_forever(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._check_interval_s)
            try:
                await self._check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                (log.debug if failing else log.warning)("redis cluster check failed: %s", exc)
                failing = True
                self._set_available(False)
                self._mark(refresh=True)
                continue
            if failing:
                log.warning("redis cluster check succeeds again")
            failing = False

    # --- the node's calls ----------------------------------------------------------------------

    async def subscribe(self, room: str) -> None:
        channel = self._channel_of(room).encode()
        self._rooms[room] = channel
        self._busy.add(room)
        try:
            for _ in range(5):
                address = self.cluster.owner(channel)
                if address is None:
                    await self.cluster.refresh()
                    address = self.cluster.owner(channel)
                    if address is None:
                        raise BrokerUnavailable(f"no primary serves room {room!r}")
                link = await self._link(address)
                try:
                    async with asyncio.timeout(_CONFIRM_TIMEOUT_S):
                        await link.subscribe([channel])[0]
                    return
                except MovedError:
                    continue  # the map is patched: try the new owner
            raise BrokerUnavailable(f"room {room!r} kept moving while subscribing")
        except BrokerUnavailable:
            self._forget(room)
            raise
        except (RedisError, OSError, TimeoutError) as exc:
            self._forget(room)
            raise BrokerUnavailable(f"subscribe failed: {exc or type(exc).__name__}") from exc
        except BaseException:
            self._forget(room)
            raise
        finally:
            self._busy.discard(room)

    async def pin(self, room: str) -> None:
        """Subscribe `room` for good (the control channel): if its shard
        cannot confirm it now, the reconciler keeps trying."""
        try:
            await self.subscribe(room)
        except BrokerUnavailable as exc:
            log.warning("subscribing %s failed (%s); the reconciler retries", room, exc)
            self._rooms[room] = self._channel_of(room).encode()
            self._mark(refresh=True)

    def _forget(self, room: str) -> None:
        self._rooms.pop(room, None)
        self._where.pop(room, None)

    async def unsubscribe(self, room: str) -> None:
        channel = self._rooms.pop(room, None)
        link = self._where.pop(room, None)
        if channel is not None and link is not None and link.alive:
            await link.unsubscribe(channel)

    # --- what the links report -------------------------------------------------------------------

    def deliver(self, link: _Link, channel: bytes, data: bytes) -> None:
        room = room_of_channel(self._prefix, channel.decode())
        # While a room moves, its old link may still deliver: one source at a time.
        if self._where.get(room) is link and self._events is not None:
            dispatch(self._events, room, data)

    def confirmed(self, link: _Link, channel: bytes) -> None:
        room = room_of_channel(self._prefix, channel.decode())
        if self._rooms.get(room) != channel:
            # Left while this subscription was on its way (e.g. a move): undo it.
            asyncio.ensure_future(link.unsubscribe(channel))
            return
        old = self._where.get(room)
        self._where[room] = link
        if old is not None and old is not link and old.alive:
            asyncio.ensure_future(old.unsubscribe(channel))

    def evicted(self, link: _Link, channel: bytes) -> None:
        room = room_of_channel(self._prefix, channel.decode())
        if self._where.get(room) is link:
            log.info("room %s: slot moved away from %s:%s; resubscribing", room, *link.address)
            del self._where[room]
            self._mark(refresh=True)

    def link_lost(self, link: _Link) -> None:
        if self._links.get(link.address) is link:
            del self._links[link.address]
        lost = [room for room, where in self._where.items() if where is link]
        for room in lost:
            del self._where[room]
        if lost:
            self._mark(refresh=True)

    def _topology_changed(self) -> None:
        self._mark(refresh=False)

    def _mark(self, refresh: bool) -> None:
        self._refresh_first = self._refresh_first or refresh
        self._dirty.set()

    # --- links ---------------------------------------------------------------------------------------

    async def _link(self, address: Address) -> _Link:
        link = self._links.get(address)
        if link is not None and link.alive:
            return link
        pending = self._connecting.get(address)
        if pending is None:
            pending = self._connecting[address] = asyncio.ensure_future(self._connect(address))
        try:
            return await asyncio.shield(pending)
        finally:
            if pending.done() and self._connecting.get(address) is pending:
                del self._connecting[address]

    async def _connect(self, address: Address) -> _Link:
        pool = self.cluster.node(address).redis.connection_pool
        conn = pool.connection_class(**{**pool.connection_kwargs, "client_name": self._client_name})
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                await open_connection(conn)
        except BaseException as exc:
            await conn.disconnect(nowait=True)
            self.cluster.request_refresh()
            if isinstance(exc, (RedisError, OSError, TimeoutError)):
                raise BrokerUnavailable(f"shard {address[0]}:{address[1]} unreachable: {exc}") from exc
            raise
        link = self._links[address] = _Link(self, address, conn)
        return link

    # --- the reconciler ------------------------------------------------------------------------------

    async def _reconcile_forever(self) -> None:
        backoff = _BACKOFF_MIN_S
        failing = False
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # once per outage: a shard failing over takes seconds of retries
                (log.debug if failing else log.warning)(
                    "resubscribing after a topology change failed (%s: %s); retrying", type(exc).__name__, exc
                )
                failing = True
                self._mark(refresh=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            if failing:
                log.warning("subscriptions restored on the current shard owners")
            failing, backoff = False, _BACKOFF_MIN_S

    async def _reconcile(self) -> None:
        """Subscribe every wanted room on the primary that owns it now."""
        if self._refresh_first:
            self._refresh_first = False
            await self.cluster.refresh()
        moves: dict[Address, list[bytes]] = {}
        unknown = False
        for room, channel in self._rooms.items():
            if room in self._busy:
                continue
            owner = self.cluster.owner(channel)
            if owner is None:
                unknown = True
                continue
            link = self._where.get(room)
            if link is None or not link.alive or link.address != owner:
                moves.setdefault(owner, []).append(channel)
        self._close_stale_links()
        if not moves:
            if unknown:
                raise BrokerUnavailable("some rooms' slots are not served")
            return
        results = await asyncio.gather(
            *(self._move(owner, channels) for owner, channels in moves.items()), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if len(failures) < len(results):
            self.resubscribes += 1
            if self._events is not None:
                self._events.on_resubscribed()  # fill whatever pub/sub lost meanwhile
        if failures or unknown:
            raise failures[0] if failures else BrokerUnavailable("some rooms' slots are not served")

    async def _move(self, owner: Address, channels: list[bytes]) -> None:
        link = await self._link(owner)
        async with asyncio.timeout(_CONFIRM_TIMEOUT_S):
            results = await asyncio.gather(*link.subscribe(channels), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]

    def _close_stale_links(self) -> None:
        """A link to a node that owns no slots any more and delivers no room."""
        primaries = self.cluster.slots.primaries()
        in_use = {id(link) for link in self._where.values()}
        for address, link in list(self._links.items()):
            if address not in primaries and id(link) not in in_use:
                link.close()
