"""The narrow interface between a gateway node and its backplane.

Two implementations keep the same semantics, proven by one contract suite
(tests/contract): ``RedisBroker`` (production, many gateways) and
``MemoryBroker`` (one process, dev mode and unit tests).

Guarantees a broker gives its node:

- ``publish`` stores the message in the room's capped history and hands it
  to every subscribed node in one atomic step: offsets are +1 per message in
  the one order every node sees. A repeat ``client_msg_id`` (same user, same
  room) within the idempotency window returns the first result and is not
  delivered again.
- ``publish`` appends every kind of log entry (``MessageBody.kind``,
  protocol §11): a message, or an edit, delete, react or unreact of one,
  checked in the same atomic step against the room's state (its authors,
  deletions and reactions, kept with history and trimmed with it). A
  refused change stores nothing and says why in ``PublishResult.status``.
- Read state (``read_state`` / ``mark_read``) is per user and room, shared by
  every node, and only moves forward within an epoch; a move is announced
  to the room as an ephemeral ``read`` frame.
- After ``subscribe(room)`` returns, every later message of the room reaches
  ``BrokerEvents.on_message`` -- unless the broker's subscription connection
  drops, in which case the broker re-establishes it and calls
  ``on_resubscribed``; the node then compares positions and fills gaps.
- Reads never write: a room without history has the epoch ``""`` (offset 0)
  until its first publish creates one. Only ``catch_up`` creates it without
  a publish (the node catches up only rooms it has members in, so after a
  loss of history they get ``reset`` with the new epoch at once).
- An offset is never reused under one epoch: when the backplane lost writes
  (a Redis restart, a failover to a replica that lacked them),
  ``renew_epoch`` moves the room to a fresh epoch, once, however many nodes ask.
  ``publish`` takes what the node has ``heard`` of the room: if the backplane
  shows less of that epoch, the message itself opens a fresh epoch (so a
  publisher racing the members' own checks cannot reuse a lost offset).
- Presence keeps, per room, each live connection and each present user
  incrementally: a join, a leave or a listing costs the same whatever the
  room's size (no call reads the whole room). A user's first connection is
  announced with ``presence_join`` and its last with ``presence_leave`` (both
  carrying ``count``) while the room has at most ``presence_events_max``
  users after the change; above that, ``on_presence_count`` reports the new
  count instead (once per broker call that changed it).

Errors: any ``BrokerUnavailable`` (or a connection error it wraps) means the
backplane is down and nothing was written; callers answer ``unavailable``.
``BrokerOutcomeUnknown`` (a subclass, raised by ``publish`` only) means the
command was sent but no answer came: it may be stored. Callers answer
``outcome_unknown``; a retry with the same ``client_msg_id`` is safe.
"""

from __future__ import annotations

from typing import Protocol

from switchboard.directs import DirectEntry
from switchboard.protocol.frames import MessageBody, User
from switchboard.roomlog import Heard, JoinReply, PublishResult, ReadMode, ReadState, Snapshot
from switchboard.roster import PresencePage

__all__ = [
    "Broker",
    "BrokerEvents",
    "BrokerOutcomeUnknown",
    "BrokerUnavailable",
    "PresencePage",
    "PublishResult",
    "ReadState",
    "Snapshot",
]


class BrokerUnavailable(Exception):
    """The backplane cannot be reached right now; nothing was written."""


class BrokerOutcomeUnknown(BrokerUnavailable):
    """A publish was sent but not answered: it may or may not be stored."""


class BrokerEvents(Protocol):
    def on_message(self, room: str, offset: int, epoch: str, ts: int, frame: str) -> None:
        """A stored message, as its encoded ``message`` frame."""

    def on_ephemeral(self, room: str, frame: str) -> None:
        """A frame that is not stored (``typing``, ``presence_join``/``_leave``)."""

    def on_presence_count(self, room: str, count: int) -> None:
        """The number of users present changed in a room above the events
        threshold (no ``presence_join``/``_leave`` was sent for it)."""

    def on_resubscribed(self) -> None:
        """A subscription connection was lost and is back, or rooms moved to
        another shard (Redis Cluster): anything may have been missed
        meanwhile."""

    def on_availability(self, available: bool) -> None:
        """The backplane went down or came back."""

    def on_control(self, command: bytes) -> None:
        """A user control command (``publish_control``), on every node."""


class Broker(Protocol):
    @property
    def available(self) -> bool: ...

    async def start(self, events: BrokerEvents) -> None: ...

    async def close(self) -> None: ...

    async def subscribe(self, room: str) -> None: ...

    async def unsubscribe(self, room: str) -> None: ...

    async def publish(
        self,
        room: str,
        body: MessageBody,
        client_msg_id: str | None,
        heard: Heard | None = None,
        moderator: bool = False,
    ) -> PublishResult:
        """Append a log entry (``body.kind``); `moderator` may delete anyone's message."""

    async def read_state(self, room: str, user_id: str, epoch: str, top: int, peer_id: str | None = None) -> ReadState:
        """The user's last read offset and unread count at (`epoch`, `top`);
        with `peer_id`, that user's last read offset too (``peer_read``)."""

    async def mark_read(self, room: str, user: User, epoch: str, offset: int) -> bool:
        """Move the user's read state forward to `offset` of `epoch` and
        announce it (ephemeral ``read``); False when it did not move."""

    async def position(self, room: str) -> Snapshot:
        """The room's epoch ("" when it has no history) and newest offset, no entries."""

    async def catch_up(self, room: str, offset: int, count: int) -> Snapshot:
        """Like ``read_after``, but creates the room's epoch when it has none."""

    async def read_after(self, room: str, offset: int, count: int) -> Snapshot:
        """Up to `count` entries with offsets above `offset` (a catch-up or a recovery)."""

    async def read_before(self, room: str, offset: int, count: int) -> Snapshot:
        """The newest `count` entries below `offset` (paging back through history)."""

    async def read_last(self, room: str, count: int) -> Snapshot:
        """The newest `count` entries."""

    async def positions(self, rooms: list[str]) -> dict[str, tuple[str | None, int]]:
        """(epoch or None when the room has no state, newest offset) per room."""

    async def renew_epoch(self, room: str, stale_epoch: str) -> Snapshot:
        """Atomically: if the room's epoch is still `stale_epoch` (or it has
        none), give it a fresh epoch at offset 0 and drop the old history.
        Returns the room's position either way (no entries)."""

    async def publish_ephemeral(self, room: str, frame: bytes) -> None: ...

    async def presence_upsert(
        self, room: str, entries: list[tuple[str, bytes]], list_limit: int = 0
    ) -> PresencePage:
        """Add or refresh (connection id, user JSON) entries. Returns the
        user count and up to `list_limit` users, those of `entries` first (a
        joiner always sees itself); a refresh passes 0 and lists nobody."""

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
        """One call for a join: refused while `user_id` is banned from the
        room (``banned_s``), else the connection's presence entry added (as
        ``presence_upsert``, listing the joiner first) and the room read as
        `mode` asks (``position``, ``read_after``, ``read_last``)."""

    async def presence_remove(self, room: str, conns: list[str]) -> None: ...

    async def presence_members(self, room: str, limit: int) -> PresencePage:
        """The user count and up to `limit` users."""

    async def presence_sweep(self, rooms: list[str]) -> None:
        """Expire entries nobody refreshed within PRESENCE_TTL (dead gateways)."""

    # --- per-subject limits, shared by every gateway (docs/security.md) ----------
    # A subject is ``u:<user id>`` or ``ip:<client address>``.

    async def take_tokens(self, subject: str, action: str, rate: float, burst: int, want: int = 1) -> tuple[int, float]:
        """Take up to `want` tokens from the (`subject`, `action`) bucket
        (`rate` per second, at most `burst` banked): (taken >= 1, 0.0), or
        (0, seconds until one is there)."""

    async def claim_slot(self, subject: str, slot: str, limit: int, lifetime_s: float) -> bool:
        """Hold one of `subject`'s `limit` slots (e.g. connections); False at
        the limit. A slot expires `lifetime_s` after its last claim or refresh."""

    async def refresh_slots(self, subject: str, slots: list[str], lifetime_s: float) -> None:
        """Keep slots alive (and re-add them if the backplane lost them)."""

    async def release_slot(self, subject: str, slot: str) -> None: ...

    # --- user control (docs/protocol.md "User control") ----------------------------
    # Commands reach every node through one control channel, at most once
    # like any pub/sub message; bans live in the backplane with a TTL, so a
    # ban holds whatever was missed.

    async def publish_control(self, command: bytes) -> None:
        """Hand `command` to ``BrokerEvents.on_control`` of every started
        broker, this one included."""

    async def ban(self, user_id: str, seconds: float, room: str | None = None) -> None:
        """Refuse `user_id` (in `room`, or everywhere) for `seconds`."""

    async def banned(self, user_id: str, room: str | None = None) -> float:
        """Seconds left of the user's ban (in `room`, or everywhere); 0.0 when none."""

    async def active_rooms(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        """Up to `limit` rooms starting with `prefix` that have members, by
        name, with their number of distinct users."""

    # --- a user's direct rooms (docs/protocol.md, direct rooms) ---------------------
    # Per user, shared by every node, capped and ordered by last activity.

    async def touch_direct(self, user_id: str, room: str, peer: bytes, ts_ms: int, *, overwrite: bool) -> bool:
        """`room` was active for `user_id`; `peer` is the other user's JSON
        (replacing a stored one only with `overwrite`). True when the room
        was not in the user's list."""

    async def direct_rooms(self, user_id: str, limit: int) -> list[DirectEntry]:
        """Up to `limit` of the user's direct rooms, the most recently active first."""
