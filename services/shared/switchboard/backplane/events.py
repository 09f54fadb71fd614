"""Where the events stream lives (docs/protocol.md, "Events stream").

Standalone Redis: one stream, ``<prefix>:events``.

Redis Cluster: a Lua script may only touch keys of one slot, and the event
must be appended by the very script that makes the change (no window where
the change happened and the event did not). So each slot that holds rooms
has its own events stream, ``<prefix>:events:{<tag>}``, where ``<tag>`` is
the precomputed hash tag of that slot (``slots.slot_tag``): a room's events
go to the stream of the slot its own keys hash to, whatever hash tag the
room's keys use. There are at most 16384 such streams; a dispatcher finds
the live ones by checking the stream keys of the slots each primary owns.

Every entry has one field, ``e``: the event JSON without ``id``. The event's
``id`` is the stream entry id, prefixed on a cluster with the slot number
(``"<slot>-<entry id>"``), so it is unique cluster-wide and needs no extra
write; readers (the dispatcher) put it in front of the other fields.

Webhook dispatchers read through the consumer group ``webhooks``; what they
give up on goes to ``<prefix>:events:dead``.

Crash expiry needs one more key, ``<prefix>:events:rooms``: a sorted set of
the rooms that have presence, scored with the latest expiry a gateway gave
their connections. A gateway adds a room there BEFORE its presence script
adds or refreshes the room's connections (so a room with presence is always
listed: a gateway dying in between leaves an empty room listed, which is
harmless). A room whose members' gateways all died is refreshed by nobody,
so its score falls behind the clock; a janitor on the gateways (one at a
time, ``<prefix>:events:janitor`` is its lock) sweeps it, which appends its
``user_left`` / ``room_vacated``, and drops it from the set once it is empty.
It is one key, not one per slot, because it is only a to-do list: the
events themselves are still written by the script that makes the change.
"""

from __future__ import annotations

from redis.asyncio import Redis

from switchboard.backplane import scripts
from switchboard.backplane.slots import SLOTS, key_slot, slot_of_tag, slot_tag

EVENT_FIELD = b"e"
WEBHOOK_GROUP = "webhooks"


class EventsLayout:
    __slots__ = ("prefix", "cluster", "dead_letter")

    def __init__(self, prefix: str, *, cluster: bool) -> None:
        self.prefix = prefix
        self.cluster = cluster
        self.dead_letter = f"{prefix}:events:dead"

    @property
    def room_index(self) -> str:
        """The rooms with presence, for the janitor (see above)."""
        return f"{self.prefix}:events:rooms"

    @property
    def janitor_lock(self) -> str:
        return f"{self.prefix}:events:janitor"

    def stream_for_slot(self, slot: int) -> str:
        return f"{self.prefix}:events:{{{slot_tag(slot)}}}"

    def stream_for_tag(self, hash_tag: str) -> str:
        """The stream for a room whose keys carry the hash tag ``{hash_tag}``
        (today the room name itself, see ``RoomKeys``)."""
        if not self.cluster:
            return f"{self.prefix}:events"
        return self.stream_for_slot(slot_of_tag(hash_tag))

    def all_streams(self) -> list[str]:
        """Every stream an events writer may use."""
        if not self.cluster:
            return [f"{self.prefix}:events"]
        return [self.stream_for_slot(slot) for slot in range(SLOTS)]

    def streams_of_slots(self, slots: list[int]) -> list[str]:
        if not self.cluster:
            return [f"{self.prefix}:events"]
        return [self.stream_for_slot(slot) for slot in slots]

    def event_id(self, stream: str, entry_id: str) -> str:
        """The event's public ``id``: unique across every stream of the layout."""
        if not self.cluster:
            return entry_id
        return f"{key_slot(stream)}-{entry_id}"


def with_id(event_id: str, stored: bytes) -> bytes:
    """The stored event JSON (an object without ``id``) with ``id`` first.
    Raises ValueError when ``stored`` is not a non-empty JSON object."""
    body = stored.strip()
    if len(body) < 2 or body[:1] != b"{" or body[-1:] != b"}" or body[1:].lstrip()[:1] == b"}":
        raise ValueError("not a non-empty JSON object")
    return b'{"id":"' + event_id.encode() + b'",' + body[1:]


async def append_events(redis: Redis, stream: str, maxlen: int, events: list[bytes]) -> None:
    """Append `events` (JSON objects without ``id``) with the same Lua
    function the gateway's scripts use: for tools and tests."""
    if not events:
        return
    await redis.eval(scripts.APPEND_EVENT.source, 1, stream, maxlen, *events)
