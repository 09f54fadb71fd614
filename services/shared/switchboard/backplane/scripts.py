"""The Lua scripts, loaded from the package's ``scripts/`` folder."""

from __future__ import annotations

import hashlib
from importlib import resources


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("scripts", name).read_text()


class Script:
    __slots__ = ("name", "source", "sha")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


_prelude = _read("presence_prelude.lua")
# Functions append_event(), room_event() and presence_events(): prepended to
# every script that makes a change with an event (see scripts/events.lua).
EVENTS_PRELUDE = _read("events.lua")

PUBLISH = Script("publish", EVENTS_PRELUDE + _read("publish.lua"))
# read_log(): a room's position and part of its history (read, join).
_read_log = _read("read_log.lua")
READ = Script("read", _read_log + _read("read.lua"))
RENEW_EPOCH = Script("renew_epoch", _read("renew_epoch.lua"))
# Read state (protocol §11), kept in the room's state hash.
READ_MARK = Script("read_mark", _read("read_mark.lua"))
# The presence scripts append their events through the prelude's changed().
_presence = EVENTS_PRELUDE + _prelude
PRESENCE_UPSERT = Script("presence_upsert", _presence + _read("presence_upsert.lua"))
PRESENCE_REMOVE = Script("presence_remove", _presence + _read("presence_remove.lua"))
PRESENCE_MEMBERS = Script("presence_members", _presence + _read("presence_members.lua"))
# A join: the room ban, read_log() and the presence entry in one call.
JOIN = Script("join", _presence + _read_log + _read("join.lua"))
PRESENCE_SWEEP = Script("presence_sweep", _presence + "sweep()\npublish_count()\nreturn {}\n")
APPEND_EVENT = Script("append_event", EVENTS_PRELUDE + _read("append_event.lua"))
# The janitor's room index (events.py): drop rooms it found empty, unless
# refreshed since it read them.
FORGET_ROOMS = Script("forget_rooms", _read("forget_rooms.lua"))

# Per-subject limits (docs/security.md): a user's publish/typing rate and
# connections, guest sign-ins per address.
TOKEN_BUCKET = Script("token_bucket", _read("token_bucket.lua"))
SLOTS = Script("slots", _read("slots.lua"))

# A user's direct rooms (docs/protocol.md, direct rooms), one sorted set and
# one hash in the user's own hash tag (backplane/directs.py).
DIRECT_TOUCH = Script("direct_touch", _read("direct_touch.lua"))
DIRECT_LIST = Script("direct_list", _read("direct_list.lua"))

ALL = (
    PUBLISH,
    READ,
    RENEW_EPOCH,
    READ_MARK,
    PRESENCE_UPSERT,
    PRESENCE_REMOVE,
    PRESENCE_MEMBERS,
    PRESENCE_SWEEP,
    JOIN,
    APPEND_EVENT,
    FORGET_ROOMS,
    TOKEN_BUCKET,
    SLOTS,
    DIRECT_TOUCH,
    DIRECT_LIST,
)
