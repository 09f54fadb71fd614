"""``MemoryBroker``: the backplane inside one process, for dev mode and tests.

Same semantics as ``RedisBroker`` (the contract suite runs against both):
offsets +1 per room under an epoch, capped history, idempotent publish,
presence with TTL, join/leave announcements up to the events threshold and
counts above it, listings capped like the Lua scripts' (entries' own users
first, then others in a stable order). Several ``MemoryBroker``s on
one ``MemoryHub`` behave like several gateways on one Redis. Deliveries are
scheduled with ``call_soon``, so like Redis they arrive after ``publish``
returns to the event loop, in publish order.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from switchboard.directs import DIRECT_ROOMS_MAX, DirectEntry
from switchboard.protocol import codec
from switchboard.protocol.frames import MessageBody, ReadNotice, User
from switchboard.roomlog import (
    MAX_EMOJI_PER_MESSAGE,
    NOT_JOINED,
    UNREAD_CAP,
    Heard,
    JoinReply,
    PublishResult,
    ReadMode,
    ReadState,
    Snapshot,
)
from switchboard.roster import PresencePage
from switchboard_gateway.broker.base import BrokerEvents


@dataclass
class _ChatState:
    """publish.lua's state hash: what checks a change, and read state, for
    one epoch (another epoch starts empty)."""

    epoch: str = ""
    authors: dict[int, str] = field(default_factory=dict)  # messages still in history
    deleted: set[int] = field(default_factory=set)
    reactions: dict[int, dict[str, set[str]]] = field(default_factory=dict)  # offset -> emoji -> users
    reads: dict[str, int] = field(default_factory=dict)  # user id -> last read offset

    def check(self, body: MessageBody, moderator: bool) -> str:
        """publish.lua's checks of a change: "" to store it, else why not."""
        target = body.target or 0
        author = self.authors.get(target)
        if author is None:
            return "no_target"
        if target in self.deleted:
            return "deleted"
        if body.kind in ("edit", "delete") and author != body.user.id and not moderator:
            return "forbidden"
        if body.kind in ("react", "unreact"):
            by_emoji = self.reactions.get(target, {})
            reacted = body.user.id in by_emoji.get(body.emoji or "", ())
            if body.kind == "react" and reacted or body.kind == "unreact" and not reacted:
                return "noop"
            if body.kind == "react" and body.emoji not in by_emoji and len(by_emoji) >= MAX_EMOJI_PER_MESSAGE:
                return "emoji_limit"
        return ""

    def apply(self, offset: int, body: MessageBody) -> None:
        target, emoji = body.target or 0, body.emoji or ""
        if body.kind == "message":
            self.authors[offset] = body.user.id
        elif body.kind == "delete":
            self.deleted.add(target)
        elif body.kind == "react":
            self.reactions.setdefault(target, {}).setdefault(emoji, set()).add(body.user.id)
        elif body.kind == "unreact":
            by_emoji = self.reactions[target]
            by_emoji[emoji].discard(body.user.id)
            if not by_emoji[emoji]:
                del by_emoji[emoji]

    def trim(self, oldest: int) -> None:
        """Forget messages below `oldest` (they left history)."""
        for offset in [o for o in self.authors if o < oldest]:
            del self.authors[offset]
            self.deleted.discard(offset)
            self.reactions.pop(offset, None)


@dataclass
class _Room:
    epoch: str  # "" while the room has presence only (no history state, like Redis's meta)
    top: int = 0
    history: deque[tuple[int, bytes]] = field(default_factory=deque)
    presence: dict[str, tuple[bytes, float]] = field(default_factory=dict)  # conn -> (user JSON, expiry)
    user_connections: dict[str, int] = field(default_factory=dict)  # len() = users present
    profiles: dict[str, bytes] = field(default_factory=dict)  # user id -> user JSON
    count_changed: bool = False  # above the events threshold, since the last publish_count
    chat: _ChatState = field(default_factory=_ChatState)

    def chat_state(self) -> _ChatState | None:
        """The state of the current epoch, if any was stored in it."""
        return self.chat if self.epoch and self.chat.epoch == self.epoch else None


class MemoryHub:
    """What Redis holds, for every MemoryBroker attached to it."""

    def __init__(
        self,
        *,
        history_size: int,
        idempotency_window_s: float,
        presence_entry_lifetime_s: float,
        presence_events_max: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.history_size = history_size
        self.idempotency_window_s = idempotency_window_s
        self.presence_entry_lifetime_s = presence_entry_lifetime_s  # after each refresh
        self.presence_events_max = presence_events_max
        self.clock = clock
        self.rooms: dict[str, _Room] = {}
        self.idempotency: dict[tuple[str, str, str], tuple[int, str, float]] = {}
        self.subscribers: dict[str, set[MemoryBroker]] = {}
        self.buckets: dict[tuple[str, str], tuple[float, float]] = {}  # (subject, action) -> (tokens, stamp)
        self.slots: dict[str, dict[str, float]] = {}  # subject -> slot -> expiry
        self.bans: dict[tuple[str | None, str], float] = {}  # (room or None, user id) -> expiry
        self.control_listeners: set[MemoryBroker] = set()  # started brokers: the control channel
        # user id -> room -> (last activity ms, the other user's JSON): direct_touch.lua
        self.directs: dict[str, dict[str, tuple[int, bytes]]] = {}

    def room(self, name: str) -> _Room:
        """The room's state, with an epoch (created like publish.lua does)."""
        room = self.presence_room(name)
        if not room.epoch:
            room.epoch = secrets.token_hex(4)
        return room

    def presence_room(self, name: str) -> _Room:
        """The room's state for presence, which (as in Redis) creates no epoch."""
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = _Room(epoch="")
        return room

    def flush(self) -> None:
        """Forget everything, like a Redis restarted empty."""
        self.rooms.clear()
        self.idempotency.clear()
        self.buckets.clear()
        self.slots.clear()
        self.directs.clear()

    def take_tokens(self, key: tuple[str, str], rate: float, burst: int, want: int) -> tuple[int, float]:
        """token_bucket.lua in memory."""
        now = self.clock()
        if len(self.buckets) > 10_000:  # full buckets are as good as absent
            self.buckets = {k: v for k, v in self.buckets.items() if v[0] + (now - v[1]) * rate < burst}
        tokens, stamp = self.buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + max(0.0, now - stamp) * rate)
        taken, wait = 0, 0.0
        if tokens >= 1:
            taken = min(want, int(tokens))
            tokens -= taken
        else:
            wait = (1 - tokens) / rate
        self.buckets[key] = (tokens, now)
        return taken, wait

    def live_slots(self, subject: str) -> dict[str, float]:
        now = self.clock()
        slots = self.slots.get(subject, {})
        for slot in [s for s, expiry in slots.items() if expiry <= now]:
            del slots[slot]
        return slots

    def broadcast(self, name: str, deliver: Callable[[BrokerEvents], None]) -> None:
        loop = asyncio.get_running_loop()
        for broker in self.subscribers.get(name, ()):
            if broker.events is not None:
                loop.call_soon(deliver, broker.events)

    def changed(self, name: str, room: _Room, kind: str, user: bytes) -> None:
        """A user's first connection joined or its last one left."""
        count = len(room.user_connections)
        if count > self.presence_events_max:
            room.count_changed = True
            return
        frame = (
            f'{{"type":"presence_{kind}","room":{json.dumps(name)},"user":{user.decode()},"count":{count}}}'
        )
        self.broadcast(name, lambda events: events.on_ephemeral(name, frame))

    def publish_count(self, name: str, room: _Room) -> None:
        """Once per call: the count, if it changed above the threshold."""
        if not room.count_changed:
            return
        room.count_changed = False
        count = len(room.user_connections)
        if count > self.presence_events_max:
            self.broadcast(name, lambda events: events.on_presence_count(name, count))

    def sweep(self, name: str) -> None:
        room = self.rooms.get(name)
        if room is None:
            return
        now = self.clock()
        for conn in [c for c, (_, expiry) in room.presence.items() if expiry <= now]:
            self.remove_presence(name, room, conn)

    def add_presence(self, name: str, room: _Room, conn: str, user: bytes, expiry: float) -> None:
        if conn not in room.presence:
            uid = json.loads(user)["id"]
            room.user_connections[uid] = room.user_connections.get(uid, 0) + 1
            if room.user_connections[uid] == 1:
                room.profiles[uid] = user
                self.changed(name, room, "join", user)
        room.presence[conn] = (user, expiry)

    def remove_presence(self, name: str, room: _Room, conn: str) -> None:
        entry = room.presence.pop(conn, None)
        if entry is None:
            return
        user = entry[0]
        uid = json.loads(user)["id"]
        left = room.user_connections.get(uid, 0) - 1
        if left <= 0:
            room.user_connections.pop(uid, None)
            room.profiles.pop(uid, None)
            self.changed(name, room, "leave", user)
        else:
            room.user_connections[uid] = left

    @staticmethod
    def listing(room: _Room | None, limit: int, first: Iterable[str] = ()) -> PresencePage:
        """The count and up to `limit` users, those of `first` (user ids) first."""
        if room is None:
            return PresencePage(0, [])
        members: list[tuple[bytes, int]] = []
        listed: set[str] = set()
        for uid in itertools.chain(first, room.profiles):  # insertion order: a stable listing
            if len(members) >= limit:
                break
            if uid not in listed and uid in room.profiles:
                listed.add(uid)
                members.append((room.profiles[uid], room.user_connections[uid]))
        return PresencePage(len(room.user_connections), members)


class MemoryBroker:
    def __init__(self, hub: MemoryHub) -> None:
        self.hub = hub
        self.events: BrokerEvents | None = None
        self.rooms: set[str] = set()

    @property
    def available(self) -> bool:
        return True

    async def start(self, events: BrokerEvents) -> None:
        self.events = events
        self.hub.control_listeners.add(self)

    async def close(self) -> None:
        self.hub.control_listeners.discard(self)
        for room in list(self.rooms):
            await self.unsubscribe(room)
        self.events = None

    async def subscribe(self, room: str) -> None:
        self.rooms.add(room)
        self.hub.subscribers.setdefault(room, set()).add(self)

    async def unsubscribe(self, room: str) -> None:
        self.rooms.discard(room)
        subscribers = self.hub.subscribers.get(room)
        if subscribers is not None:
            subscribers.discard(self)
            if not subscribers:
                del self.hub.subscribers[room]

    async def publish(
        self,
        room: str,
        body: MessageBody,
        client_msg_id: str | None,
        heard: Heard | None = None,
        moderator: bool = False,
    ) -> PublishResult:
        hub = self.hub
        now = hub.clock()
        current = hub.rooms.get(room)
        lost = current is not None and heard is not None and heard.epoch == current.epoch and current.top < heard.offset
        key = (room, body.user.id, client_msg_id or "")
        if client_msg_id is not None and not lost:
            prior = hub.idempotency.get(key)
            # only a result of the room's current epoch stands (as in publish.lua)
            if prior is not None and prior[2] > now and current is not None and prior[1] == current.epoch:
                return PublishResult(prior[0], prior[1], True)
        if body.kind != "message":  # a change: checked against the room's state (as in publish.lua)
            chat = current.chat_state() if current is not None and not lost else None
            status = "no_target" if chat is None else chat.check(body, moderator)
            if status:
                return PublishResult(0, current.epoch if current is not None and not lost else "", False, status)
        if lost and current is not None:
            await self.renew_epoch(room, current.epoch)  # lost writes (as in publish.lua)
        state = hub.room(room)
        state.top += 1
        offset, epoch = state.top, state.epoch
        frame = codec.message_frame(room, offset, epoch, body)
        state.history.append((offset, frame))
        while len(state.history) > hub.history_size:
            state.history.popleft()
        if state.chat.epoch != epoch:
            state.chat = _ChatState(epoch)
        state.chat.trim(state.history[0][0])
        state.chat.apply(offset, body)
        if client_msg_id is not None:
            hub.idempotency[key] = (offset, epoch, now + hub.idempotency_window_s)
        text = frame.decode()
        hub.broadcast(room, lambda events: events.on_message(room, offset, epoch, body.ts, text))
        return PublishResult(offset, epoch, False)

    async def read_state(self, room: str, user_id: str, epoch: str, top: int, peer_id: str | None = None) -> ReadState:
        state = self.hub.rooms.get(room)
        chat = state.chat_state() if state is not None else None
        if chat is None or chat.epoch != epoch:
            return ReadState(0, 0)
        last = chat.reads.get(user_id, 0)
        peer_read = chat.reads.get(peer_id, 0) if peer_id is not None else 0
        unread = sum(
            1
            for offset, author in chat.authors.items()
            if last < offset <= top and author != user_id and offset not in chat.deleted
        )
        return ReadState(last, min(unread, UNREAD_CAP), peer_read)

    async def mark_read(self, room: str, user: User, epoch: str, offset: int) -> bool:
        state = self.hub.rooms.get(room)
        chat = state.chat_state() if state is not None else None
        if chat is None or chat.epoch != epoch or chat.reads.get(user.id, 0) >= offset:
            return False
        chat.reads[user.id] = offset
        await self.publish_ephemeral(room, codec.encode_bytes(ReadNotice(room=room, user=user, offset=offset)))
        return True

    # Reads create nothing (like read.lua): a room without history has epoch "".

    async def position(self, room: str) -> Snapshot:
        return self._snapshot(room, [])

    async def catch_up(self, room: str, offset: int, count: int) -> Snapshot:
        self.hub.room(room)
        return await self.read_after(room, offset, count)

    async def read_after(self, room: str, offset: int, count: int) -> Snapshot:
        history = self._history(room)
        return self._snapshot(room, [e for e in history if e[0] > offset][:count])

    async def read_before(self, room: str, offset: int, count: int) -> Snapshot:
        history = self._history(room)
        return self._snapshot(room, [e for e in history if e[0] < offset][-count:] if count > 0 else [])

    async def read_last(self, room: str, count: int) -> Snapshot:
        history = self._history(room)
        return self._snapshot(room, list(history)[-count:] if count > 0 else [])

    async def renew_epoch(self, room: str, stale_epoch: str) -> Snapshot:
        state = self.hub.presence_room(room)
        if not state.epoch or state.epoch == stale_epoch:
            state.epoch = secrets.token_hex(4)
            state.top = 0
            state.history.clear()
        return self._snapshot(room, [])

    def _history(self, room: str) -> deque[tuple[int, bytes]]:
        state = self.hub.rooms.get(room)
        return state.history if state is not None and state.epoch else deque()

    def _snapshot(self, room: str, entries: list[tuple[int, bytes]]) -> Snapshot:
        state = self.hub.rooms.get(room)
        if state is None or not state.epoch:
            return Snapshot("", 0, 0, [])
        first = entries[0][0] if entries else 0
        return Snapshot(state.epoch, state.top, first, [frame for _, frame in entries])

    async def positions(self, rooms: list[str]) -> dict[str, tuple[str | None, int]]:
        out: dict[str, tuple[str | None, int]] = {}
        for name in rooms:
            state = self.hub.rooms.get(name)
            out[name] = (state.epoch, state.top) if state and state.epoch else (None, 0)
        return out

    async def publish_ephemeral(self, room: str, frame: bytes) -> None:
        text = frame.decode()
        self.hub.broadcast(room, lambda events: events.on_ephemeral(room, text))

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
        # None of these calls suspends: the join is atomic, as the script is.
        banned_s = await self.banned(user_id, room)
        if banned_s > 0:
            return JoinReply(banned_s, *NOT_JOINED)
        if mode == "after":
            snapshot = await self.read_after(room, offset, count)
        elif mode == "last":
            snapshot = await self.read_last(room, count)
        else:
            snapshot = await self.position(room)
        page = await self.presence_upsert(room, [(conn, user)], list_limit)
        return JoinReply(0.0, snapshot, page)

    async def presence_upsert(
        self, room: str, entries: list[tuple[str, bytes]], list_limit: int = 0
    ) -> PresencePage:
        hub = self.hub
        hub.sweep(room)
        state = hub.presence_room(room)
        expiry = hub.clock() + hub.presence_entry_lifetime_s
        for conn, user in entries:
            hub.add_presence(room, state, conn, user, expiry)
        hub.publish_count(room, state)
        first = [json.loads(user)["id"] for _, user in entries] if list_limit > 0 else []
        return hub.listing(state, list_limit, first)

    async def presence_remove(self, room: str, conns: list[str]) -> None:
        hub = self.hub
        hub.sweep(room)
        state = hub.rooms.get(room)
        if state is not None:
            for conn in conns:
                hub.remove_presence(room, state, conn)
            hub.publish_count(room, state)

    async def presence_members(self, room: str, limit: int) -> PresencePage:
        hub = self.hub
        hub.sweep(room)
        state = hub.rooms.get(room)
        if state is not None:
            hub.publish_count(room, state)
        return hub.listing(state, limit)

    async def presence_sweep(self, rooms: list[str]) -> None:
        hub = self.hub
        for room in rooms:
            hub.sweep(room)
            state = hub.rooms.get(room)
            if state is not None:
                hub.publish_count(room, state)

    async def take_tokens(self, subject: str, action: str, rate: float, burst: int, want: int = 1) -> tuple[int, float]:
        return self.hub.take_tokens((subject, action), rate, burst, want)

    async def claim_slot(self, subject: str, slot: str, limit: int, lifetime_s: float) -> bool:
        slots = self.hub.live_slots(subject)
        if slot not in slots and len(slots) >= limit:
            return False
        self.hub.slots[subject] = slots
        slots[slot] = self.hub.clock() + lifetime_s
        return True

    async def refresh_slots(self, subject: str, slots: list[str], lifetime_s: float) -> None:
        live = self.hub.slots.setdefault(subject, self.hub.live_slots(subject))
        for slot in slots:
            live[slot] = self.hub.clock() + lifetime_s

    async def release_slot(self, subject: str, slot: str) -> None:
        slots = self.hub.slots.get(subject)
        if slots is not None:
            slots.pop(slot, None)
            if not slots:
                del self.hub.slots[subject]

    # --- user control --------------------------------------------------------------

    async def publish_control(self, command: bytes) -> None:
        loop = asyncio.get_running_loop()
        for broker in self.hub.control_listeners:
            if broker.events is not None:
                loop.call_soon(broker.events.on_control, command)

    async def ban(self, user_id: str, seconds: float, room: str | None = None) -> None:
        self.hub.bans[(room, user_id)] = self.hub.clock() + seconds

    async def banned(self, user_id: str, room: str | None = None) -> float:
        expiry = self.hub.bans.get((room, user_id))
        if expiry is None:
            return 0.0
        left = expiry - self.hub.clock()
        if left <= 0:
            del self.hub.bans[(room, user_id)]
            return 0.0
        return left

    async def active_rooms(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for name in sorted(n for n in self.hub.rooms if n.startswith(prefix)):
            self.hub.sweep(name)
            count = len(self.hub.rooms[name].user_connections)
            if count > 0:
                out.append((name, count))
                if len(out) >= limit:
                    break
        return out

    # --- a user's direct rooms (direct_touch.lua, direct_list.lua) -------------------

    async def touch_direct(self, user_id: str, room: str, peer: bytes, ts_ms: int, *, overwrite: bool) -> bool:
        rooms = self.hub.directs.setdefault(user_id, {})
        known = rooms.get(room)
        rooms[room] = (ts_ms, peer if overwrite or known is None else known[1])
        if len(rooms) > DIRECT_ROOMS_MAX:  # the oldest drop out, as ZREMRANGEBYRANK does
            for name, _ in sorted(rooms.items(), key=lambda item: (item[1][0], item[0]))[: len(rooms) - DIRECT_ROOMS_MAX]:
                del rooms[name]
        return known is None

    async def direct_rooms(self, user_id: str, limit: int) -> list[DirectEntry]:
        rooms = self.hub.directs.get(user_id, {})
        newest = sorted(rooms.items(), key=lambda item: (item[1][0], item[0]), reverse=True)[:limit]
        return [DirectEntry(room, peer, ts) for room, (ts, peer) in newest]
