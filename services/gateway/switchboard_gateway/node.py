"""The node: one gateway's connections and rooms, and the backplane calls
behind them.

- Connections: the registry ``close_all`` walks at a drain.
- Rooms: a room is subscribed while it has a local member or joiner
  (``_attach`` / ``_release``, serialised per room by a lock); its delivery
  order lives in a ``room.Room`` (sans-I/O), whose output is the room's
  ``_RoomLink``: it fans frames out to the sockets, and performs the reads
  and epoch renewals the room asks for in a supervised task that retries
  with backoff.
- Requests: join, leave, publish and the changes of protocol §11 (edit,
  delete, react, unreact: log entries, like messages), history (the log, or
  its ``latest`` view), presence, typing, read (coalesced by ``readmarks``).
- Maintenance, supervised (supervision.py): the presence refresh
  (presence.py), and the position check: pub/sub is at most once, so every
  POSITION_CHECK_INTERVAL each room's newest offset in the backplane is
  compared with what was delivered (``Room.on_position``), and after the
  subscription connection comes back every room is caught up.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Collection

import msgspec

from switchboard import latest
from switchboard.protocol import codec, frames
from switchboard.protocol.codes import CloseCode, ErrorCode
from switchboard.protocol.errors import ProtocolError
from switchboard.protocol.names import direct_members
from switchboard.roomlog import MAX_EMOJI_PER_MESSAGE, PublishResult, ReadMode, ReadState, Snapshot
from switchboard.roster import PresencePage
from switchboard_gateway import presence
from switchboard_gateway.broker import Broker, BrokerUnavailable
from switchboard_gateway.connection import Connection
from switchboard_gateway.control import UserControl
from switchboard_gateway.directs import DirectRooms
from switchboard_gateway.metrics import Metrics
from switchboard_gateway.presence_counts import PresenceCounts
from switchboard_gateway.publish_hook import hook_from_settings
from switchboard_gateway.readmarks import Key, Mark, ReadMarks
from switchboard_gateway.room import ReadAfter, Room, RoomEvent
from switchboard_gateway.settings import Settings
from switchboard_gateway.supervision import Backoff, Supervisor
from switchboard_gateway.wire import text_frame

log = logging.getLogger("switchboard.node")

CATCH_UP_TASK = "catch_up"
READ_MARK_TASK = "read_mark"
# The latest view reads history backwards in pages of this many entries
# until it has a page of messages (or history ends).
LATEST_READ_PAGE = 200


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


class _RoomLink:
    """One room this node is subscribed to: its delivery core, and what the
    node does for it (the core's ``RoomOutput``)."""

    __slots__ = ("name", "node", "core", "lock", "subscribed", "worker", "_kick")

    def __init__(self, node: Node, name: str) -> None:
        self.name = name
        self.node = node
        # More waiting messages than history keeps could not be caught up
        # anyway: beyond that the backlog is dropped and history read instead.
        self.core: Room[Connection] = Room(self, backlog_max=node.settings.history_size)
        self.lock = asyncio.Lock()  # serialises subscribe/unsubscribe
        self.subscribed = False
        self.worker: asyncio.Task[None] | None = None  # performs core.request
        self._kick = asyncio.Event()  # cuts a retry's backoff short

    # --- RoomOutput ------------------------------------------------------------

    def deliver(self, members: Collection[Connection], frame: str, ts: int | None) -> None:
        self.node.fan_out(members, frame, ts)

    def send(self, member: Connection, frame: str) -> None:
        member.send_text(frame)
        self.node.metrics.messages_out.inc()

    def reset(self, members: Collection[Connection], epoch: str) -> None:
        text = codec.encode(frames.Reset(room=self.name, epoch=epoch, offset=0))
        for conn in members:
            conn.send_text(text)

    def evict(self, member: Connection) -> None:
        member.close_soon(CloseCode.TRY_AGAIN_LATER, "missed messages beyond history; resume")

    def wake(self) -> None:
        self.node.serve_requests(self)

    def event(self, event: RoomEvent) -> None:
        self.node.room_event(self, event)

    # --- retries ---------------------------------------------------------------

    def kick(self) -> None:
        self._kick.set()

    async def pause(self, seconds: float) -> None:
        """Sleep `seconds`, or less if kicked (the backplane came back)."""
        try:
            async with asyncio.timeout(seconds):
                await self._kick.wait()
        except TimeoutError:
            pass
        self._kick.clear()


class Node:
    def __init__(self, settings: Settings, broker: Broker, metrics: Metrics) -> None:
        self.settings = settings
        self.broker = broker
        self.metrics = metrics
        self.name = settings.node
        self.rooms: dict[str, _RoomLink] = {}
        self.connections: dict[Connection, None] = {}
        self.draining = False
        self.supervisor = Supervisor(metrics.task_failures)
        self.presence_counts = PresenceCounts(self._send_presence_count)
        self.publish_hook = hook_from_settings(settings, metrics)  # None without PUBLISH_HOOK_URL
        self.control = UserControl(self)
        self.read_marks = ReadMarks(interval_s=1.0)
        self.directs = DirectRooms(broker, self.supervisor)  # tells a user of a new direct room
        self._read_flush: asyncio.TimerHandle | None = None

    # --- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        if self.publish_hook is not None:
            await self.publish_hook.start()
        await self.broker.start(self)
        self.metrics.broker_available.set(1 if self.broker.available else 0)
        self.supervisor.every("presence", self.settings.presence_refresh_interval_s, self.refresh_presence)
        self.supervisor.every("positions", self.settings.position_check_s, self.check_positions)

    async def stop(self) -> None:
        # The last read marks are written before the backplane goes (best effort).
        await asyncio.gather(*(self._write_mark(key, mark) for key, mark in self.read_marks.drain()))
        if self._read_flush is not None:
            self._read_flush.cancel()
            self._read_flush = None
        await self.supervisor.stop()
        self.presence_counts.close()
        await self.broker.close()
        if self.publish_hook is not None:
            await self.publish_hook.close()

    @property
    def ready(self) -> bool:
        return self.broker.available and not self.draining

    # --- connections -------------------------------------------------------------

    def add_connection(self, conn: Connection) -> None:
        self.connections[conn] = None
        self.metrics.connections.inc()
        conn.spawn = self.supervisor.spawn

    async def remove_connection(self, conn: Connection) -> None:
        """The socket is gone: leave every room (presence too)."""
        self.connections.pop(conn, None)
        self.metrics.connections.dec()
        conn.cancel_expiry()
        conn.out.stop()  # nothing can be sent any more
        rooms = list(conn.rooms)
        conn.rooms.clear()
        links = []
        for room in rooms:
            link = self.rooms.get(room)
            if link is not None:
                link.core.discard(conn)
                links.append(link)
        await asyncio.gather(
            *(self.broker.presence_remove(room, [conn.id]) for room in rooms), return_exceptions=True
        )
        for link in links:
            await self._release(link)

    async def close_all(self, code: int, reason: str) -> None:
        await asyncio.gather(*(conn.close(code, reason) for conn in list(self.connections)))

    def abort_all(self) -> None:
        """Drop every remaining socket at once (the drain deadline is here)."""
        for conn in list(self.connections):
            conn.abort()

    # --- requests -------------------------------------------------------------------

    async def join(self, conn: Connection, frame: frames.Join) -> None:
        """Join (or re-join) a room and send ``joined``; the seam between the
        snapshot and live messages is the room core's (``Room.admit``). One
        backplane call checks the room ban, reads the snapshot and adds the
        presence entry (``Broker.join``)."""
        room = frame.room
        if room in conn.rooms:  # already a member: answer again, nothing else changes
            snapshot, recovered, page = await self._enter(conn, frame)
            reads = await self._read_state(room, conn.user_id, snapshot)
            conn.send_text(self._joined(frame, snapshot, recovered, page, reads, _peer_of(room, conn.user_id)))
            return
        link = await self._attach(room, conn)
        try:
            snapshot, recovered, page = await self._enter(conn, frame)
            reads = await self._read_state(room, conn.user_id, snapshot)
        except BaseException:
            link.core.discard(conn)
            await self._release(link)
            raise
        conn.rooms.add(room)  # from here on, closing the connection removes its presence entry
        if not link.core.parked(conn):
            return  # evicted while its snapshot was read: it is being closed with 1013
        conn.send_text(self._joined(frame, snapshot, recovered, page, reads, _peer_of(room, conn.user_id)))
        link.core.admit(conn, snapshot.epoch, snapshot.top)

    async def _enter(self, conn: Connection, frame: frames.Join) -> tuple[Snapshot, bool | None, PresencePage]:
        """The join's backplane call: the snapshot it asks for (recovery
        after ``since``, else ``history`` newest messages, else the position)
        and the presence page; a banned user is refused (``forbidden``)."""
        room, since, history = frame.room, frame.since, frame.history
        if since is not None:
            mode: ReadMode = "after"
            offset, count = since.offset, self.settings.history_size
        elif history:
            mode, offset, count = "last", 0, history
        else:
            mode, offset, count = "none", 0, 0
        reply = await self.broker.join(
            room, conn.id, conn.user_json, conn.user_id, self.settings.presence_list_max, mode, offset, count
        )
        if reply.banned_s > 0:
            raise ProtocolError(
                ErrorCode.FORBIDDEN, f"banned from room {room!r} for another {math.ceil(reply.banned_s)} s", frame.id
            )
        snapshot, recovered = reply.snapshot, None
        if since is not None:
            gap_free = since.offset == snapshot.top or (
                snapshot.first == since.offset + 1 and snapshot.first + len(snapshot.frames) - 1 == snapshot.top
            )
            recovered = snapshot.epoch == (since.epoch or "") and since.offset <= snapshot.top and gap_free
            self.metrics.recoveries.labels(recovered=str(recovered).lower()).inc()
            if not recovered:  # not recoverable: a fresh start, as without `since`
                if history:
                    snapshot = await self.broker.read_last(room, history)
                else:
                    snapshot = Snapshot(snapshot.epoch, snapshot.top, 0, [])
        return snapshot, recovered, reply.page

    async def _read_state(self, room: str, user_id: str, snapshot: Snapshot) -> ReadState:
        """Read state at the snapshot's position (``joined.last_read``/``unread``,
        and in a direct room ``peer_read``, read in the same call)."""
        if not snapshot.epoch:
            return ReadState(0, 0)
        return await self.broker.read_state(room, user_id, snapshot.epoch, snapshot.top, _peer_of(room, user_id))

    @staticmethod
    def _joined(
        frame: frames.Join,
        snapshot: Snapshot,
        recovered: bool | None,
        page: PresencePage,
        reads: ReadState,
        peer: str | None = None,
    ) -> str:
        return codec.encode(
            frames.Joined(
                id=frame.id,
                room=frame.room,
                offset=snapshot.top,
                epoch=snapshot.epoch or None,  # null until the room's first publish
                recovered=recovered,
                messages=[msgspec.Raw(f) for f in snapshot.frames],
                presence=members_of(page),
                presence_count=page.count,
                last_read=reads.last_read,
                unread=reads.unread,
                peer_read=reads.peer_read if peer is not None else None,
            )
        )

    async def leave(self, conn: Connection, room: str) -> None:
        conn.rooms.discard(room)
        link = self.rooms.get(room)
        if link is not None:
            link.core.discard(conn)
        try:
            await self.broker.presence_remove(room, [conn.id])
        finally:
            if link is not None:
                await self._release(link)

    async def publish(
        self, user: frames.User, room: str, text: str, client_msg_id: str | None
    ) -> frames.Ack:
        if self.publish_hook is not None:  # the app first: it may reject or rewrite the text
            text = await self.publish_hook.moderate(room, user, text, client_msg_id)
        body = frames.MessageBody(user=user, text=text, ts=int(time.time() * 1000))
        return await self.append(room, body, client_msg_id)

    async def append(
        self, room: str, body: frames.MessageBody, client_msg_id: str | None, *, moderator: bool = False
    ) -> frames.Ack:
        """Log an entry (a message, or a change to one: ``body.kind``) and
        return its ``ack``; a refused change raises ``ProtocolError`` (no id).
        An edit goes through the publish hook first, like a publish."""
        if body.kind == "edit" and self.publish_hook is not None:
            text = await self.publish_hook.moderate(
                room, body.user, body.text, client_msg_id, action="edit", target=body.target
            )
            body = msgspec.structs.replace(body, text=text)
        link = self.rooms.get(room)
        result = await self.broker.publish(
            room, body, client_msg_id, link.core.heard() if link else None, moderator=moderator
        )
        if result.status == "noop":  # nothing to log: the reaction is already (or not) there
            return frames.Ack(room=room, offset=None, epoch=result.epoch)
        if result.status:
            raise _refusal(result, body)
        link = self.rooms.get(room)
        if link is not None:
            link.core.on_acked(result.epoch, result.offset)
        if not result.duplicate:
            self.metrics.messages_published.inc()
            if body.kind == "message" and room.startswith("dm:"):
                # Before the ack, so a peer who connects after it finds the room in its list.
                await self.directs.after_publish(room, body.user, body.ts)
        return frames.Ack(room=room, offset=result.offset, epoch=result.epoch)

    async def history(
        self, room: str, before: int | None, limit: int, view: str = "log", viewer: str | None = None
    ) -> frames.HistoryPage:
        if view == "latest":
            return await self._latest(room, before, limit, viewer)
        if before is not None:
            snap = await self.broker.read_before(room, before, limit)
        else:
            snap = await self.broker.read_last(room, limit)
        return frames.HistoryPage(room=room, epoch=snap.epoch or None, messages=[msgspec.Raw(f) for f in snap.frames])

    async def _latest(self, room: str, before: int | None, limit: int, viewer: str | None) -> frames.HistoryPage:
        """The ``latest`` view: read history from its newest entry backwards
        (changes come after their message, and may come after `before`) in
        pages of LATEST_READ_PAGE entries until `limit` messages below
        `before` are in, then fold. Cost: at most all of history
        (HISTORY_SIZE entries, 1,000 by default: five reads of 200), each
        entry decoded once; a room of ordinary chat needs one read."""
        for _ in range(3):  # the epoch changed between two reads: start over (rare)
            snap = await self.broker.read_last(room, LATEST_READ_PAGE)
            epoch, entries, first = snap.epoch, latest.decode(snap.frames), snap.first
            consistent = True
            while first > 1 and latest.messages_below(entries, before) < limit:
                older = await self.broker.read_before(room, first, LATEST_READ_PAGE)
                if older.epoch != epoch:
                    consistent = False
                    break
                if not older.frames:  # trimmed meanwhile: history ends here
                    break
                entries = latest.decode(older.frames) + entries
                first = older.first
            if consistent:
                messages = latest.page(latest.fold(entries, viewer), before, limit)
                raws = [msgspec.Raw(codec.encode_bytes(m)) for m in messages]
                return frames.HistoryPage(room=room, epoch=epoch or None, messages=raws)
        raise BrokerUnavailable("the room's history kept changing epoch while it was read")

    async def presence(self, room: str, limit: int) -> frames.PresenceList:
        """The user count and up to `limit` users (the ``presence`` reply)."""
        page = await self.broker.presence_members(room, limit)
        return frames.PresenceList(room=room, members=members_of(page), count=page.count)

    async def direct_rooms(self, user_id: str, limit: int) -> frames.DirectList:
        """The ``directs`` reply: the user's direct rooms, the most recently active first."""
        return frames.DirectList(rooms=await self.directs.listing(user_id, limit))

    async def typing(self, conn: Connection, room: str) -> None:
        await self.broker.publish_ephemeral(room, codec.encode_bytes(frames.TypingNotice(room=room, user=conn.user)))

    # --- read state (protocol §11) ----------------------------------------------------

    def read(self, conn: Connection, room: str, offset: int) -> None:
        """Take a ``read`` frame: the mark is written (and announced) now, or
        within a second when one was written less than a second ago; the
        last one always is. It is capped at what this gateway knows the room
        holds, so a client cannot mark messages read before they exist."""
        link = self.rooms.get(room)
        heard = link.core.heard() if link is not None else None
        if heard is None or offset <= 0:
            return
        mark = Mark(conn.user, heard.epoch, min(offset, heard.offset))
        key = (conn.user_id, room)
        now = time.monotonic()
        if self.read_marks.offer(key, mark, now) is not None:
            self.supervisor.spawn(READ_MARK_TASK, self._write_mark(key, mark))
        self._schedule_read_flush(now)

    def _schedule_read_flush(self, now: float) -> None:
        due = self.read_marks.next_due()
        if due is not None and self._read_flush is None:
            self._read_flush = asyncio.get_running_loop().call_later(max(0.0, due - now), self._flush_reads)

    def _flush_reads(self) -> None:
        self._read_flush = None
        now = time.monotonic()
        for key, mark in self.read_marks.due(now):
            self.supervisor.spawn(READ_MARK_TASK, self._write_mark(key, mark))
        self._schedule_read_flush(now)

    async def _write_mark(self, key: Key, mark: Mark) -> None:
        try:
            await self.broker.mark_read(key[1], mark.user, mark.epoch, mark.offset)
        except BrokerUnavailable as exc:
            self.supervisor.failed(READ_MARK_TASK, exc)
            self.read_marks.failed(key, mark, time.monotonic())  # retried after the interval
            self._schedule_read_flush(time.monotonic())
        else:
            self.supervisor.succeeded(READ_MARK_TASK)

    # --- subscriptions ------------------------------------------------------------------

    async def _attach(self, room: str, conn: Connection) -> _RoomLink:
        """Park `conn` in the room; the first local member subscribes the
        room and reads its position first."""
        while True:
            link = self.rooms.get(room)
            if link is None:
                link = self.rooms[room] = _RoomLink(self, room)
                self.metrics.rooms.inc()
            async with link.lock:
                if self.rooms.get(room) is not link:
                    continue  # released while we waited for the lock
                if not link.subscribed:
                    try:
                        await self.broker.subscribe(room)
                        link.subscribed = True
                        snap = await self.broker.position(room)
                    except BaseException:
                        await self._release_locked(link)
                        raise
                    link.core.start(snap.epoch, snap.top)
                link.core.park(conn)
                return link

    async def _release(self, link: _RoomLink) -> None:
        if not link.core.empty:
            return
        async with link.lock:
            await self._release_locked(link)

    async def _release_locked(self, link: _RoomLink) -> None:
        if not link.core.empty or self.rooms.get(link.name) is not link:
            return
        del self.rooms[link.name]
        self.metrics.rooms.dec()
        if link.worker is not None:
            link.worker.cancel()
        self.supervisor.forget(CATCH_UP_TASK, link.name)
        if link.subscribed:
            link.subscribed = False
            await self.broker.unsubscribe(link.name)

    # --- delivery (BrokerEvents and RoomOutput) --------------------------------------------

    def on_message(self, room: str, offset: int, epoch: str, ts: int, frame: str) -> None:
        link = self.rooms.get(room)
        if link is None:
            return
        try:
            link.core.on_live(offset, epoch, frame, ts)
        except Exception as exc:  # a bug: never let it break the subscription reader
            self.supervisor.failed("deliver", exc, key=room)
            link.core.catch_up()

    def fan_out(self, members: Collection[Connection], frame: str, ts: int | None) -> None:
        """Hand one message frame to every member; the lag is measured here,
        at delivery, whether the message came live or from history."""
        started = time.perf_counter()
        message = {"type": "websocket.send", "text": frame}  # one dict for every member
        wire = text_frame(frame.encode()) if self.settings.ws_fast_path else None  # one frame for every member
        for conn in members:
            conn.out.send(message, wire)
        self.metrics.messages_out.inc(len(members))
        self.metrics.fanout_seconds.observe(time.perf_counter() - started)
        if ts is None:
            ts = codec.message_ts(frame)
        if ts is not None:
            lag = time.time() - ts / 1000
            if lag >= 0:
                self.metrics.delivery_lag_seconds.observe(lag)

    def serve_requests(self, link: _RoomLink) -> None:
        """Make sure the room's pending read or renewal is being performed."""
        if link.worker is None and self.rooms.get(link.name) is link:
            link.worker = self.supervisor.spawn(CATCH_UP_TASK, self._perform_requests(link))

    async def _perform_requests(self, link: _RoomLink) -> None:
        core = link.core
        backoff = Backoff()
        try:
            while self.rooms.get(link.name) is link and (request := core.request) is not None:
                try:
                    if isinstance(request, ReadAfter):
                        # catch_up, not read_after: if history was lost, members
                        # learn the new epoch now, not at the next publish.
                        snap = await self.broker.catch_up(link.name, request.after, self.settings.history_size)
                        core.on_read(request, snap)
                    else:
                        snap = await self.broker.renew_epoch(link.name, request.stale_epoch)
                        core.on_renewed(request, snap)
                except Exception as exc:
                    # An outage fails every room alike: one streak for all of them.
                    key = "" if isinstance(exc, BrokerUnavailable) else link.name
                    self.supervisor.failed(CATCH_UP_TASK, exc, key=key)
                    await link.pause(backoff.next())
                else:
                    backoff.reset()
                    self.supervisor.succeeded(CATCH_UP_TASK, link.name)
                    self.supervisor.succeeded(CATCH_UP_TASK)
        finally:
            link.worker = None

    def room_event(self, link: _RoomLink, event: RoomEvent) -> None:
        m = self.metrics
        if event is RoomEvent.CATCH_UP:
            m.gap_fills.inc()
        elif event is RoomEvent.RESET:
            m.resets.inc()
            log.warning("room %s: new epoch %s (history lost)", link.name, link.core.epoch)
        elif event is RoomEvent.OFFSET_REUSED:
            m.offset_reuses.inc()
            log.warning("room %s: the backplane lost delivered messages; renewing its epoch", link.name)
        elif event is RoomEvent.LOST_POSITION:
            m.lost_positions.inc()
            log.warning("room %s: gap older than history; closing its members so they resume", link.name)
        elif event is RoomEvent.BACKLOG_OVERFLOW:
            m.backlog_overflows.inc()
            log.warning("room %s: backlog full; reading from history instead", link.name)

    def on_ephemeral(self, room: str, frame: str) -> None:
        link = self.rooms.get(room)
        if link is None:
            return
        try:
            event = _ephemeral.decode(frame)
        except msgspec.MsgspecError:
            return
        if event.count is not None:  # presence_join/_leave: members learn the count from it
            self.presence_counts.announced(room, event.count)
        sender = event.user.id
        message = {"type": "websocket.send", "text": frame}
        for members in (link.core.members, link.core.ahead):
            for conn in members:
                if conn.principal.user_id != sender:
                    conn.out.send(message)

    def on_presence_count(self, room: str, count: int) -> None:
        if room in self.rooms:
            self.presence_counts.update(room, count)

    def _send_presence_count(self, room: str, count: int) -> None:
        link = self.rooms.get(room)
        if link is None:
            return
        message = {"type": "websocket.send", "text": codec.encode(frames.PresenceCount(room=room, count=count))}
        for conn in link.core.members:
            conn.out.send(message)

    def on_resubscribed(self) -> None:
        log.info("backplane subscription re-established; catching up %d rooms", len(self.rooms))
        for link in self.rooms.values():
            link.core.catch_up()
            link.kick()
        self.supervisor.spawn("heal_presence", self.refresh_presence())

    def on_control(self, command: bytes) -> None:
        self.control.on_command(command)

    def on_availability(self, available: bool) -> None:
        log.warning("backplane %s", "available" if available else "UNAVAILABLE")
        self.metrics.broker_available.set(1 if available else 0)

    # --- maintenance ------------------------------------------------------------------------

    async def refresh_presence(self) -> None:
        """Keep this node's members alive in presence (see presence.py)."""
        await presence.refresh(self.broker, [(link.name, link.core.joined()) for link in list(self.rooms.values())])

    async def check_positions(self) -> None:
        """Never deaf silently: compare each room's newest offset in the
        backplane with what was delivered (``Room.on_position``)."""
        probes = []
        for link in list(self.rooms.values()):
            if link.core.request is not None:
                self.serve_requests(link)  # in case its worker died: nothing waits forever
            probe = link.core.probe()
            if probe is not None:
                probes.append((link, probe))
        if not probes:
            return
        positions = await self.broker.positions([link.name for link, _ in probes])
        for link, probe in probes:
            if self.rooms.get(link.name) is link:
                epoch, top = positions[link.name]
                link.core.on_position(probe, epoch, top)


def _peer_of(room: str, user_id: str) -> str | None:
    """In a direct room of `user_id`, the other user's id; otherwise None."""
    pair = direct_members(room) if room.startswith("dm:") else None
    if pair is None or user_id not in pair:
        return None
    return pair[1] if pair[0] == user_id else pair[0]


def _refusal(result: PublishResult, body: frames.MessageBody) -> ProtocolError:
    """Why the backplane refused a change (``PublishResult.status``)."""
    target = body.target
    if result.status == "forbidden":
        return ProtocolError(ErrorCode.FORBIDDEN, f"only its author may {body.kind} message {target}")
    if result.status == "deleted":
        return ProtocolError(ErrorCode.BAD_REQUEST, f"message {target} is deleted")
    if result.status == "emoji_limit":
        return ProtocolError(
            ErrorCode.LIMIT_EXCEEDED, f"message {target} has {MAX_EMOJI_PER_MESSAGE} different emoji already"
        )
    return ProtocolError(ErrorCode.BAD_REQUEST, f"offset {target} is not a message in this room's history")
