"""``Backplane``: the calls a gateway (or a tool) makes to Redis.

Stateless apart from configuration: every call is routed by its room's key
through a ``Commands`` object (one Redis server, or the primary owning the
room's slot on a Redis Cluster) and batched by that node's auto-pipeline
(``pipeline.py``). A room's keys and channel share one hash slot, so each
script touches one slot (``keys.py``).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from switchboard.backplane import control, scripts
from switchboard.backplane.commands import Commands
from switchboard.backplane.events import EventsLayout
from switchboard.backplane.keys import RoomKeys, subject_key
from switchboard.protocol import codec, frames
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


def new_epoch() -> str:
    return secrets.token_hex(4)


class Backplane:
    def __init__(
        self,
        commands: Commands,
        *,
        prefix: str = "sb",
        history_size: int = 1000,
        history_ttl: int = 86400,
        idempotency_window: int = 120,
        presence_ttl: float = 30.0,
        presence_events_max: int = 200,
        events_maxlen: int = 0,
        durable: bool = False,
    ) -> None:
        self.commands = commands
        self.prefix = prefix
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.idempotency_window = idempotency_window
        self.presence_ttl = presence_ttl
        self.presence_events_max = presence_events_max
        # publishes confirmed by a replica (PUBLISH_DURABILITY=replicas)
        self.durable = durable
        # fan-out: SPUBLISH reaches the room's shard only; PUBLISH on one Redis
        self.publish_command = "SPUBLISH" if commands.sharded else "PUBLISH"
        self._keys: dict[str, RoomKeys] = {}
        # Events stream (events.py): on when events_maxlen > 0. Off, the
        # scripts get "0" and no stream key, and do no extra Redis work.
        self.events_maxlen = str(events_maxlen)
        self.events_layout = EventsLayout(prefix, cluster=commands.sharded) if events_maxlen > 0 else None
        self._event_streams: dict[str, str] = {}

    def keys(self, room: str) -> RoomKeys:
        keys = self._keys.get(room)
        if keys is None:
            if len(self._keys) > 10_000:
                self._keys.clear()
            keys = self._keys[room] = RoomKeys(self.prefix, room)
        return keys

    def events_stream(self, room: str) -> str | None:
        """The room's events stream (in the slot of the room's keys), or
        None when events are off."""
        if self.events_layout is None:
            return None
        stream = self._event_streams.get(room)
        if stream is None:
            if len(self._event_streams) > 10_000:
                self._event_streams.clear()
            stream = self._event_streams[room] = self.events_layout.stream_for_tag(room)
        return stream

    def _eval(
        self, script: scripts.Script, keys: list[str], args: list[Any], *, durable: bool = False, idempotent: bool = True
    ) -> Any:
        return self.commands.execute(
            keys[0], "EVALSHA", script.sha, len(keys), *keys, *args, durable=durable, idempotent=idempotent
        )

    async def publish(
        self,
        room: str,
        body: frames.MessageBody,
        *,
        client_msg_id: str | None = None,
        heard: Heard | None = None,
        moderator: bool = False,
    ) -> PublishResult:
        """Append and fan out a log entry: a message, or a change to one
        (``body.kind``, protocol §11), checked by the same script against
        the room's state (a refusal stores nothing: see ``PublishResult``).
        `moderator` may delete anyone's message. `heard` is the room's newest
        position the caller knows the backplane held: if the backplane now
        shows less of that epoch, it lost writes, and the message opens a
        fresh epoch instead of reusing their offsets."""
        k = self.keys(room)
        keys = [k.meta, k.log, k.state]
        if client_msg_id is not None:
            keys.append(k.idempotency(body.user.id, client_msg_id))
        args = [
            k.channel,
            codec.message_head(room),
            codec.message_tail(body),
            new_epoch(),
            self.history_size,
            self.history_ttl,
            self.idempotency_window,
            body.ts,
            self.publish_command,
            heard.epoch if heard is not None else "",
            heard.offset if heard is not None else 0,
            body.kind,
            body.target or 0,
            body.emoji or "",
            body.user.id,
            "1" if moderator else "0",
            MAX_EMOJI_PER_MESSAGE,
        ]
        # events stream: must stay the last key and the last argument (publish.lua)
        if (stream := self.events_stream(room)) is not None:
            keys.append(stream)
        args.append(self.events_maxlen)
        # Retried after a lost connection only with an idempotency key: without
        # one, running it twice would store the message twice.
        offset, epoch, duplicate, status = await self._eval(
            scripts.PUBLISH, keys, args, durable=self.durable, idempotent=client_msg_id is not None
        )
        return PublishResult(int(offset), epoch.decode(), bool(duplicate), status.decode())

    async def read_state(self, room: str, user_id: str, epoch: str, top: int, peer_id: str | None = None) -> ReadState:
        """`user_id`'s read state in `room` at the position (`epoch`, `top`):
        the last offset read and the messages of others after it, not
        deleted, still in history (at most UNREAD_CAP).

        Two plain HMGETs of the state hash (publish.lua): the mark, then
        the ``a:`` field of each offset after it. Counting in the gateway
        keeps Redis's share to field lookups: about 0.1 ms for 1,000
        offsets, the most there can be (HISTORY_SIZE), where a Lua loop over
        them cost over 1 ms of Redis time per join.

        `peer_id` (a direct room's other user): their mark comes in the same
        first HMGET, as ``peer_read``."""
        if not epoch:
            return ReadState(0, 0)
        state = self.keys(room).state
        fields = ["e", "f", f"l:{user_id}"] + ([f"l:{peer_id}"] if peer_id is not None else [])
        stored_epoch, floor, last, *peer = await self.commands.execute(state, "HMGET", state, *fields, idempotent=True)
        if stored_epoch is None or stored_epoch.decode() != epoch:
            return ReadState(0, 0)  # nothing stored in this epoch yet
        last_read = int(last or 0)
        peer_read = int(peer[0] or 0) if peer else 0
        first = max(last_read + 1, int(floor or 1), top - self.history_size + 1)
        if first > top:
            return ReadState(last_read, 0, peer_read)
        fields = [f"a:{offset}" for offset in range(first, top + 1)]
        # "e" again: an epoch renewed between the two calls counts nothing.
        again, *authors = await self.commands.execute(state, "HMGET", state, "e", *fields, idempotent=True)
        if again is None or again.decode() != epoch:
            return ReadState(0, 0)
        mine = b"=" + user_id.encode()
        unread = sum(1 for a in authors if a is not None and a[:1] == b"=" and a != mine)
        return ReadState(last_read, min(unread, UNREAD_CAP), peer_read)

    async def mark_read(self, room: str, user: frames.User, epoch: str, offset: int) -> bool:
        """Move `user`'s read state to `offset` of `epoch` if that is further,
        and then tell the room's members (a ``read`` event). True if it moved."""
        k = self.keys(room)
        event = codec.encode_bytes(frames.ReadNotice(room=room, user=user, offset=offset))
        args = [epoch, offset, user.id, k.channel, event, self.publish_command]
        return bool(await self._eval(scripts.READ_MARK, [k.state], args))

    async def position(self, room: str) -> Snapshot:
        """The room's epoch ("" when it has no history) and newest offset."""
        return await self._read(room, "none", 0, 0)

    async def catch_up(self, room: str, offset: int, count: int) -> Snapshot:
        """Like ``read_after``, but creates the room's epoch when it has none
        (a gateway catching up a room it has members in, whose history was
        lost: they learn the new epoch at once)."""
        return await self._read(room, "after", offset, count, create=True)

    async def read_after(self, room: str, offset: int, count: int) -> Snapshot:
        """Up to `count` entries with offsets above `offset`."""
        return await self._read(room, "after", offset, count)

    async def read_before(self, room: str, offset: int, count: int) -> Snapshot:
        """The newest `count` entries with offsets below `offset`."""
        return await self._read(room, "before", offset, count)

    async def read_last(self, room: str, count: int) -> Snapshot:
        """The newest `count` entries."""
        return await self._read(room, "last", 0, count)

    async def _read(self, room: str, mode: ReadMode, offset: int, count: int, create: bool = False) -> Snapshot:
        k = self.keys(room)
        reply = await self._eval(
            scripts.READ, [k.meta, k.log], [new_epoch() if create else "", self.history_ttl, mode, offset, count]
        )
        return Snapshot(reply[0].decode(), int(reply[1]), int(reply[2]), reply[3:])

    async def renew_epoch(self, room: str, stale_epoch: str) -> Snapshot:
        """A fresh epoch (offset 0, history dropped) if the room's is still
        `stale_epoch`; the room's position either way."""
        k = self.keys(room)
        epoch, top = await self._eval(scripts.RENEW_EPOCH, [k.meta, k.log], [stale_epoch, new_epoch(), self.history_ttl])
        return Snapshot(epoch.decode(), int(top), 0, [])

    async def positions(self, rooms: list[str]) -> dict[str, tuple[str | None, int]]:
        """(epoch, newest offset) of each room, without creating anything;
        epoch None when the room has no history in Redis."""
        futures = []
        for room in rooms:
            meta = self.keys(room).meta
            futures.append(self.commands.execute(meta, "HMGET", meta, "e", "s", idempotent=True))
        out = {}
        for room, (epoch, top) in zip(rooms, await asyncio.gather(*futures), strict=False):
            out[room] = (epoch.decode() if epoch else None, int(top or 0))
        return out

    async def publish_ephemeral(self, room: str, frame: bytes) -> None:
        """Fan out a frame that is not stored (typing)."""
        channel = self.keys(room).channel
        await self.commands.execute(channel, self.publish_command, channel, b"e" + frame, idempotent=True)

    # --- presence --------------------------------------------------------------

    def _presence_keys(self, k: RoomKeys) -> list[str]:
        keys = k.presence_keys()
        if (stream := self.events_stream(k.room)) is not None:
            keys.append(stream)
        return keys

    def _presence_args(self, k: RoomKeys, now_ms: int) -> list[Any]:
        return [
            k.channel,
            codec.encode_bytes(k.room),
            now_ms,
            int(self.presence_ttl * 3) + 1,
            self.presence_events_max,
            self.publish_command,
            self.events_maxlen,
        ]

    async def _index_for_janitor(self, room: str, expiry: int) -> None:
        """With events on: listed for the janitor first, then present
        (events.py), so a room with presence is never missing from the index."""
        if self.events_layout is not None:
            index = self.events_layout.room_index
            await self.commands.execute(index, "ZADD", index, "GT", expiry, room, idempotent=True)

    async def presence_upsert(
        self, room: str, entries: list[tuple[str, bytes]], now_ms: int, list_limit: int = 0
    ) -> PresencePage:
        """Add or refresh (connection id, user JSON) entries; they expire
        PRESENCE_TTL after this call unless refreshed again. Lists up to
        `list_limit` users, the entries' own first."""
        k = self.keys(room)
        expiry = now_ms + int(self.presence_ttl * 1000)
        await self._index_for_janitor(room, expiry)
        args = self._presence_args(k, now_ms)
        args += [expiry, list_limit]
        for conn, user in entries:
            args += [conn, user]
        return _presence_page(await self._eval(scripts.PRESENCE_UPSERT, self._presence_keys(k), args))

    async def join(
        self,
        room: str,
        conn: str,
        user: bytes,
        user_id: str,
        now_ms: int,
        list_limit: int,
        mode: ReadMode = "none",
        offset: int = 0,
        count: int = 0,
    ) -> JoinReply:
        """A connection joins (join.lua): refused while `user_id` is banned
        from the room, else its presence entry is added (as
        ``presence_upsert``) and the room read as `mode` asks (as ``_read``),
        in one call."""
        k = self.keys(room)
        expiry = now_ms + int(self.presence_ttl * 1000)
        await self._index_for_janitor(room, expiry)
        stream = self.events_stream(room)
        keys = k.presence_keys() + [stream or k.meta, k.meta, k.log, control.room_ban_key(self.prefix, room, user_id)]
        args = self._presence_args(k, now_ms)
        args += [expiry, list_limit, conn, user, self.history_ttl, mode, offset, count]
        reply = await self._eval(scripts.JOIN, keys, args)
        if int(reply[0]) > 0:
            return JoinReply(int(reply[0]) / 1000, *NOT_JOINED)
        read, listing = reply[1], reply[2]
        return JoinReply(0.0, Snapshot(read[0].decode(), int(read[1]), int(read[2]), read[3:]), _presence_page(listing))

    async def presence_remove(self, room: str, conns: list[str], now_ms: int) -> None:
        k = self.keys(room)
        await self._eval(scripts.PRESENCE_REMOVE, self._presence_keys(k), self._presence_args(k, now_ms) + conns)

    async def presence_members(self, room: str, now_ms: int, limit: int) -> PresencePage:
        k = self.keys(room)
        args = self._presence_args(k, now_ms) + [limit]
        return _presence_page(await self._eval(scripts.PRESENCE_MEMBERS, self._presence_keys(k), args))

    async def presence_sweep(self, rooms: list[str], now_ms: int) -> None:
        """Expire connections that nobody refreshed (their gateway died)."""
        calls = []
        for room in rooms:
            k = self.keys(room)
            calls.append(self._eval(scripts.PRESENCE_SWEEP, self._presence_keys(k), self._presence_args(k, now_ms)))
        await asyncio.gather(*calls)

    async def sweep_abandoned_rooms(self, now_ms: int, lock_ms: int, limit: int = 500) -> int:
        """Crash expiry for rooms no live gateway refreshes any more (their
        members' gateways all died): sweep the listed rooms whose connections
        have all expired, which appends their ``user_left`` /
        ``room_vacated``, and forget those left empty. One gateway at a time
        (a lock held `lock_ms`). Returns the number of rooms swept: 0 when
        events are off or another gateway holds the lock."""
        layout = self.events_layout
        if layout is None:
            return 0
        lock, index = layout.janitor_lock, layout.room_index
        if not await self.commands.execute(lock, "SET", lock, "1", "NX", "PX", lock_ms, idempotent=True):
            return 0
        due = await self.commands.execute(
            index, "ZRANGEBYSCORE", index, "-inf", now_ms, "WITHSCORES", "LIMIT", 0, limit, idempotent=True
        )
        if not due:
            return 0
        listed = [(due[i], due[i + 1]) for i in range(0, len(due), 2)]
        # presence_members sweeps, then counts who is left (listing nobody).
        pages = await asyncio.gather(*(self.presence_members(room.decode(), now_ms, 0) for room, _ in listed))
        empty = [part for (room, score), page in zip(listed, pages, strict=True) if page.count == 0 for part in (room, score)]
        if empty:
            await self._eval(scripts.FORGET_ROOMS, [index], empty)
        return len(listed)

    # --- per-subject limits (docs/security.md) -----------------------------------

    async def take_tokens(self, subject: str, action: str, rate: float, burst: int, want: int = 1) -> tuple[int, float]:
        """Take up to `want` tokens from the cluster-wide bucket of
        (`subject`, `action`): (tokens taken, 0.0), or (0, seconds until one
        is there)."""
        key = subject_key(self.prefix, subject, f"rl:{action}")
        taken, wait_ms = await self._eval(scripts.TOKEN_BUCKET, [key], [rate, burst, want])
        return int(taken), int(wait_ms) / 1000

    async def claim_slot(self, subject: str, slot: str, limit: int, lifetime_s: float) -> bool:
        """Hold one of `subject`'s `limit` slots for `lifetime_s` (refresh to keep it)."""
        key = subject_key(self.prefix, subject, "slots")
        return bool(await self._eval(scripts.SLOTS, [key], ["claim", limit, int(lifetime_s * 1000), slot]))

    async def refresh_slots(self, subject: str, slots: list[str], lifetime_s: float) -> None:
        key = subject_key(self.prefix, subject, "slots")
        await self._eval(scripts.SLOTS, [key], ["refresh", 0, int(lifetime_s * 1000), *slots])

    async def release_slot(self, subject: str, slot: str) -> None:
        key = subject_key(self.prefix, subject, "slots")
        await self._eval(scripts.SLOTS, [key], ["release", 0, 0, slot])


def _presence_page(reply: list[Any]) -> PresencePage:
    """The presence scripts' {count, user JSON, connections, ...} reply."""
    return PresencePage(int(reply[0]), [(reply[i], int(reply[i + 1])) for i in range(1, len(reply), 2)])
