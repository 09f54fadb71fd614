"""The events of the events stream and of webhook deliveries
(docs/protocol.md, "Events stream"), as msgspec Structs tagged on ``type``.

Events are written by the gateway's Lua scripts (``backplane/scripts/
events.lua``), not encoded from these Structs: the Structs are the schema
readers decode with, and a contract test decodes what the scripts write.
A ``message`` event is the ``message`` frame of the logged entry itself.

``id`` is absent in the stream (the entry id is the id) and present in
webhook deliveries; decoding accepts both. Unknown fields are ignored, so a
reader keeps working when events gain fields.
"""

from __future__ import annotations

import msgspec
from msgspec import Struct

from switchboard.protocol.frames import User


class _Event(Struct, tag_field="type", kw_only=True):
    id: str = ""
    room: str
    ts: int  # milliseconds since the Unix epoch


class MessageEvent(_Event, tag="message"):
    """A logged entry: a message, or (with ``kind``) an edit, a deletion, a
    reaction or its removal of the message at offset ``target``."""

    offset: int
    epoch: str
    msg_id: str
    user: User
    text: str = ""
    kind: str = "message"
    target: int | None = None
    emoji: str | None = None


class RoomOccupied(_Event, tag="room_occupied"):
    """The room's first member joined (cluster-wide); ``user`` is that member."""

    user: User


class RoomVacated(_Event, tag="room_vacated"):
    """The room's last member left or expired; ``user`` is that member."""

    user: User


class UserJoined(_Event, tag="user_joined"):
    """A user's first connection joined the room."""

    user: User


class UserLeft(_Event, tag="user_left"):
    """A user's last connection left the room (or expired after a crash)."""

    user: User


Event = MessageEvent | RoomOccupied | RoomVacated | UserJoined | UserLeft
EVENT_TYPES = ("message", "room_occupied", "room_vacated", "user_joined", "user_left")

_event_decoder = msgspec.json.Decoder(Event)
_batch_decoder = msgspec.json.Decoder(list[Event])


def decode_event(data: bytes | str) -> Event:
    """One event; raises msgspec.ValidationError / DecodeError when it is not one."""
    event: Event = _event_decoder.decode(data)
    return event


def decode_batch(data: bytes | str) -> list[Event]:
    """A webhook delivery's body: a JSON array of events."""
    events: list[Event] = _batch_decoder.decode(data)
    return events
