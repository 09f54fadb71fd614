"""The node: one gateway's rooms, its delivery order, and its maintenance.

Delivery invariant, per room: ``RoomState.last`` is the newest offset handed
to the room's members; a message is fanned out only when its offset is
``last + 1`` under the room's epoch. Anything else is a duplicate (dropped)
or a gap: then the room is *caught up* from history, later live messages
wait in ``backlog`` meanwhile, and members still see every message once, in
order. A new epoch (history lost) sends ``reset`` first.

Joining uses the same stream: a joiner is parked in ``joining`` with a
buffer of live messages while its snapshot is read; after ``joined`` the
buffer's messages newer than the snapshot are sent, and the connection
becomes a member. No gap, no duplicate at the seam.

Pub/sub is at most once, so gaps are also looked for actively: after the
subscription connection comes back (``on_resubscribed``), and every
POSITION_CHECK_INTERVAL by comparing each room's newest offset in the
backplane with ``last``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec

from switchboard.protocol import codec, frames
from switchboard.protocol.codes import CloseCode
from switchboard.roster import PresencePage
from switchboard_gateway.broker import Broker, BrokerUnavailable
from switchboard_gateway.connection import Connection
from switchboard_gateway.metrics import Metrics
from switchboard_gateway.presence_counts import PresenceCounts
from switchboard_gateway.settings import Settings

log = logging.getLogger("switchboard.node")

# A live item: (offset, epoch, frame). frame None marks a reset with no message.
Item = tuple[int, str, str | None]


class RoomState:
    __slots__ = (
        "name",
        "members",
        "joining",
        "epoch",
        "last",
        "ready",
        "filling",
        "backlog",
        "fill_task",
        "fill_requests",
        "lock",
        "subscribed",
        "checked_top",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: dict[Connection, None] = {}  # an ordered set
        self.joining: dict[Connection, list[Item]] = {}
        self.epoch = ""
        self.last = 0
        self.ready = False  # position known
        self.filling = False  # catching up: live items wait in backlog
        self.backlog: list[Item] = []
        self.fill_task: asyncio.Task[None] | None = None
        self.fill_requests = 0  # bumped by every catch-up request, even mid-fill
        self.lock = asyncio.Lock()  # serialises subscribe/unsubscribe
        self.subscribed = False
        self.checked_top = 0  # newest offset seen by the previous position check


class _Ephemeral(msgspec.Struct):
    """What the node reads of an ephemeral frame: its sender, and ``count``
    when it is a presence_join/_leave."""

    user: frames.User
    count: int | None = None


_ephemeral = msgspec.json.Decoder(_Ephemeral)
_user_decoder = msgspec.json.Decoder(frames.User)


def members_of(page: PresencePage) -> list[frames.Member]:
    """The listed users of a presence page, as ``presence`` frames show them."""
    return [frames.Member(_user_decoder.decode(user), connections) for user, connections in page.members]


def _adopts(epoch: str, last: int) -> bool:
    """Reads create no epoch (a read of an unknown room writes nothing), so a
    room is known with the epoch "" until its first publish creates one: that
    one is adopted, not a reset."""
    return epoch == "" and last == 0


class Node:
    def __init__(self, settings: Settings, broker: Broker, metrics: Metrics) -> None:
        self.settings = settings
        self.broker = broker
        self.metrics = metrics
        self.name = settings.node
        self.rooms: dict[str, RoomState] = {}
        self.connections: dict[Connection, None] = {}
        self.draining = False
        self._tasks: list[asyncio.Task[None]] = []
        self.presence_counts = PresenceCounts(self._send_presence_count)

    # --- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        await self.broker.start(self)
        self.metrics.broker_available.set(1 if self.broker.available else 0)
        self._tasks = [
            asyncio.create_task(self._every(self._presence_interval(), self.refresh_presence), name="presence"),
            asyncio.create_task(self._every(self.settings.position_check_s, self.check_positions), name="positions"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.presence_counts.close()
        await self.broker.close()

    @property
    def ready(self) -> bool:
        return self.broker.available and not self.draining

    def _presence_interval(self) -> float:
        # Refresh (and sweep) every TTL/4 while entries live TTL/2 (see
        # broker.create_broker): one late refresh is tolerated, and a dead
        # gateway's entries expire and are swept within 3/4 of PRESENCE_TTL,
        # so its members leave within PRESENCE_TTL as the contract says.
        return max(0.2, self.settings.presence_ttl_s / 4)

    async def _every(self, interval: float, job) -> None:  # type: ignore[no-untyped-def]
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except BrokerUnavailable:
                pass  # readiness already says so; try again next round
            except Exception:
                log.exception("maintenance job %s failed", job.__name__)

    # --- connections -------------------------------------------------------------

    def add_connection(self, conn: Connection) -> None:
        self.connections[conn] = None
        self.metrics.connections.inc()

    async def remove_connection(self, conn: Connection) -> None:
        """The socket is gone: leave every room (presence too)."""
        self.connections.pop(conn, None)
        self.metrics.connections.dec()
        conn.cancel_expiry()
        rooms = list(conn.rooms)
        conn.rooms.clear()
        states = []
        for room in rooms:
            rs = self.rooms.get(room)
            if rs is not None:
                rs.members.pop(conn, None)
                states.append(rs)
        await asyncio.gather(
            *(self.broker.presence_remove(room, [conn.id]) for room in rooms), return_exceptions=True
        )
        for rs in states:
            await self._release(rs)

    async def close_all(self, code: int, reason: str) -> None:
        await asyncio.gather(*(conn.close(code, reason) for conn in list(self.connections)))

    # --- rooms -------------------------------------------------------------------

    async def join(self, conn: Connection, frame: frames.Join) -> None:
        """Join (or re-join) a room and send ``joined``; see the module doc."""
        room = frame.room
        member = room in conn.rooms
        rs = self.rooms[room] if member else await self._attach(room, conn)
        try:
            snapshot, recovered = await self._snapshot(room, frame.since, frame.history)
            presence = await self.broker.presence_upsert(
                room, [(conn.id, conn.user_json)], list_limit=self.settings.presence_list_max
            )
        except BaseException:
            if not member:
                rs.joining.pop(conn, None)
                await self._release(rs)
            raise
        conn.send_text(
            codec.encode(
                frames.Joined(
                    id=frame.id,
                    room=room,
                    offset=snapshot.top,
                    epoch=snapshot.epoch or None,
                    recovered=recovered,
                    messages=[msgspec.Raw(f) for f in snapshot.frames],
                    presence=members_of(presence),
                    presence_count=presence.count,
                )
            )
        )
        if member:
            return
        epoch, last = snapshot.epoch, snapshot.top
        for offset, item_epoch, item in rs.joining.pop(conn, ()):
            if item_epoch != epoch:
                if not _adopts(epoch, last):
                    conn.send_text(codec.encode(frames.Reset(room=room, epoch=item_epoch, offset=0)))
                epoch, last = item_epoch, 0
            if item is not None and offset > last:
                conn.send_text(item)
                last = offset
        rs.members[conn] = None
        conn.rooms.add(room)

    async def _snapshot(
        self, room: str, since: frames.Since | None, history: int | None
    ) -> tuple[object, bool | None]:
        recovered: bool | None = None
        if since is not None:
            snap = await self.broker.read_after(room, since.offset, self.settings.history_size)
            gap_free = since.offset == snap.top or (
                snap.first == since.offset + 1 and snap.first + len(snap.frames) - 1 == snap.top
            )
            recovered = snap.epoch == (since.epoch or "") and since.offset <= snap.top and gap_free
            self.metrics.recoveries.labels(recovered=str(recovered).lower()).inc()
            if recovered:
                return snap, True
        if history:
            return await self.broker.read_last(room, history), recovered
        return await self.broker.position(room), recovered

    async def leave(self, conn: Connection, room: str) -> None:
        conn.rooms.discard(room)
        rs = self.rooms.get(room)
        if rs is not None:
            rs.members.pop(conn, None)
        try:
            await self.broker.presence_remove(room, [conn.id])
        finally:
            if rs is not None:
                await self._release(rs)

    async def publish(
        self, user: frames.User, room: str, text: str, client_msg_id: str | None
    ) -> frames.Ack:
        body = frames.MessageBody(user=user, text=text, ts=int(time.time() * 1000))
        result = await self.broker.publish(room, body, client_msg_id)
        if not result.duplicate:
            self.metrics.messages_published.inc()
        return frames.Ack(room=room, offset=result.offset, epoch=result.epoch)

    async def history(self, room: str, before: int | None, limit: int) -> frames.HistoryPage:
        if before is not None:
            snap = await self.broker.read_before(room, before, limit)
        else:
            snap = await self.broker.read_last(room, limit)
        return frames.HistoryPage(room=room, epoch=snap.epoch or None, messages=[msgspec.Raw(f) for f in snap.frames])

    async def presence(self, room: str, limit: int) -> frames.PresenceList:
        """The user count and up to `limit` users (the ``presence`` reply)."""
        page = await self.broker.presence_members(room, limit)
        return frames.PresenceList(room=room, members=members_of(page), count=page.count)

    async def typing(self, conn: Connection, room: str) -> None:
        await self.broker.publish_ephemeral(room, codec.encode_bytes(frames.TypingNotice(room=room, user=conn.user)))

    # --- subscription lifecycle ------------------------------------------------------

    async def _attach(self, room: str, conn: Connection) -> RoomState:
        """Park `conn` in the room's ``joining``; the first local member
        subscribes the room and learns its position first."""
        while True:
            rs = self.rooms.get(room)
            if rs is None:
                rs = self.rooms[room] = RoomState(room)
                self.metrics.rooms.inc()
            async with rs.lock:
                if self.rooms.get(room) is not rs:
                    continue  # released while we waited for the lock
                if not rs.subscribed:
                    try:
                        await self.broker.subscribe(room)
                        rs.subscribed = True
                        snap = await self.broker.position(room)
                    except BaseException:
                        await self._release_locked(rs)
                        raise
                    rs.epoch, rs.last, rs.ready = snap.epoch, snap.top, True
                    rs.checked_top = snap.top
                    self._drain_backlog(rs)
                rs.joining[conn] = []
                return rs

    async def _release(self, rs: RoomState) -> None:
        if rs.members or rs.joining:
            return
        async with rs.lock:
            await self._release_locked(rs)

    async def _release_locked(self, rs: RoomState) -> None:
        if rs.members or rs.joining or self.rooms.get(rs.name) is not rs:
            return
        del self.rooms[rs.name]
        self.metrics.rooms.dec()
        if rs.fill_task is not None:
            rs.fill_task.cancel()
        if rs.subscribed:
            rs.subscribed = False
            await self.broker.unsubscribe(rs.name)

    # --- delivery (BrokerEvents) -------------------------------------------------------

    def on_message(self, room: str, offset: int, epoch: str, ts: int, frame: str) -> None:
        rs = self.rooms.get(room)
        if rs is None:
            return
        if not rs.ready or rs.filling:
            rs.backlog.append((offset, epoch, frame))
            return
        self._deliver(rs, offset, epoch, frame)
        lag = time.time() - ts / 1000
        if lag >= 0:
            self.metrics.delivery_lag_seconds.observe(lag)

    def _deliver(self, rs: RoomState, offset: int, epoch: str, frame: str | None) -> None:
        if epoch != rs.epoch:
            self._epoch_changed(rs, epoch)
        if frame is None or offset <= rs.last:
            return  # a duplicate (already delivered by a catch-up)
        if offset != rs.last + 1:
            rs.backlog.append((offset, epoch, frame))
            self._catch_up(rs)
            return
        rs.last = offset
        self._fan_out(rs, offset, epoch, frame)

    def _fan_out(self, rs: RoomState, offset: int, epoch: str, frame: str) -> None:
        started = time.perf_counter()
        message = {"type": "websocket.send", "text": frame}  # one dict for every member
        for conn in rs.members:
            conn.out.send(message)
        for buffer in rs.joining.values():
            buffer.append((offset, epoch, frame))
        self.metrics.messages_out.inc(len(rs.members))
        self.metrics.fanout_seconds.observe(time.perf_counter() - started)

    def _epoch_changed(self, rs: RoomState, epoch: str) -> None:
        """A room without history yet adopts the epoch its first publish
        created; any other change of epoch means history was lost."""
        if _adopts(rs.epoch, rs.last):
            rs.epoch = epoch
        else:
            self._reset(rs, epoch)

    def _reset(self, rs: RoomState, epoch: str) -> None:
        log.warning("room %s: history lost, new epoch %s", rs.name, epoch)
        self.metrics.resets.inc()
        rs.epoch, rs.last = epoch, 0
        text = codec.encode(frames.Reset(room=rs.name, epoch=epoch, offset=0))
        for conn in rs.members:
            conn.send_text(text)
        for buffer in rs.joining.values():
            buffer.append((0, epoch, None))

    def _drain_backlog(self, rs: RoomState) -> None:
        items, rs.backlog = rs.backlog, []
        for index, item in enumerate(items):
            if rs.filling:
                rs.backlog.extend(items[index:])
                return
            self._deliver(rs, *item)

    def _catch_up(self, rs: RoomState) -> None:
        rs.filling = True
        rs.fill_requests += 1
        if rs.fill_task is None:
            rs.fill_task = asyncio.create_task(self._fill(rs))

    async def _fill(self, rs: RoomState) -> None:
        """Deliver from history whatever lies between ``last`` and the
        room's newest offset, then the backlog."""
        self.metrics.gap_fills.inc()
        try:
            while rs.filling:
                requests = rs.fill_requests
                # catch_up, not read_after: if history was lost, members learn
                # the new epoch now, not at the next publish.
                snap = await self.broker.catch_up(rs.name, rs.last, self.settings.history_size)
                if self.rooms.get(rs.name) is not rs:
                    return
                if snap.epoch != rs.epoch:
                    self._epoch_changed(rs, snap.epoch)
                    continue
                if snap.top > rs.last and snap.first != rs.last + 1:
                    self._lost_position(rs)
                for index, frame in enumerate(snap.frames):
                    offset = snap.first + index
                    if offset > rs.last:
                        rs.last = offset
                        self._fan_out(rs, offset, rs.epoch, frame.decode())
                if rs.fill_requests != requests:
                    continue  # asked again while reading (e.g. a resubscribe): read again
                rs.filling = False
                self._drain_backlog(rs)
        except BrokerUnavailable:
            rs.filling = False  # the backlog waits; the next check or resubscribe retries
        finally:
            rs.fill_task = None

    def _lost_position(self, rs: RoomState) -> None:
        """More was missed than history keeps: members cannot be made whole.
        They are closed so that they rejoin with ``since``, learn
        ``recovered: false`` and reload."""
        log.warning("room %s: gap older than history; closing its members", rs.name)
        for conn in list(rs.members):
            conn.close_soon(CloseCode.TRY_AGAIN_LATER, "missed messages beyond history; resume")

    def on_ephemeral(self, room: str, frame: str) -> None:
        rs = self.rooms.get(room)
        if rs is None:
            return
        try:
            event = _ephemeral.decode(frame)
        except msgspec.MsgspecError:
            return
        if event.count is not None:  # presence_join/_leave: members learn the count from it
            self.presence_counts.announced(room, event.count)
        sender = event.user.id
        message = {"type": "websocket.send", "text": frame}
        for conn in rs.members:
            if conn.principal.user_id != sender:
                conn.out.send(message)

    def on_presence_count(self, room: str, count: int) -> None:
        if room in self.rooms:
            self.presence_counts.update(room, count)

    def _send_presence_count(self, room: str, count: int) -> None:
        rs = self.rooms.get(room)
        if rs is None:
            return
        message = {"type": "websocket.send", "text": codec.encode(frames.PresenceCount(room=room, count=count))}
        for conn in rs.members:
            conn.out.send(message)

    def on_resubscribed(self) -> None:
        log.info("backplane subscription re-established; catching up %d rooms", len(self.rooms))
        for rs in self.rooms.values():
            if rs.ready:
                self._catch_up(rs)
        asyncio.ensure_future(self._heal_presence())

    async def _heal_presence(self) -> None:
        try:
            await self.refresh_presence()
        except BrokerUnavailable:
            pass

    def on_availability(self, available: bool) -> None:
        log.warning("backplane %s", "available" if available else "UNAVAILABLE")
        self.metrics.broker_available.set(1 if available else 0)

    # --- maintenance ---------------------------------------------------------------------

    async def refresh_presence(self) -> None:
        """Keep this node's members alive in presence (and re-add them if the
        backplane lost them); expire other nodes' dead entries."""
        calls = []
        for rs in list(self.rooms.values()):
            entries = [(conn.id, conn.user_json) for conn in rs.members]
            if entries:
                calls.append(self.broker.presence_upsert(rs.name, entries))
            else:
                calls.append(self.broker.presence_sweep([rs.name]))
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def check_positions(self) -> None:
        """Never deaf silently: a room whose newest offset stayed ahead of
        what we delivered since the previous check is caught up."""
        rooms = [rs for rs in self.rooms.values() if rs.ready and not rs.filling]
        if not rooms:
            return
        positions = await self.broker.positions([rs.name for rs in rooms])
        for rs in rooms:
            epoch, top = positions[rs.name]
            if self.rooms.get(rs.name) is not rs or rs.filling:
                continue
            if (epoch or "") != rs.epoch or rs.backlog:
                self._catch_up(rs)
            elif rs.last < min(top, rs.checked_top):
                self._catch_up(rs)
            rs.checked_top = top
