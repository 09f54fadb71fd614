"""Every Redis key and channel name, built in this one place.

A room's keys share the hash tag ``{room}`` so that each Lua script touches a
single Redis Cluster slot. Room names cannot contain braces (see
``switchboard.protocol.names``).
"""

from __future__ import annotations

import hashlib


class RoomKeys:
    __slots__ = (
        "room",
        "channel",
        "meta",
        "log",
        "state",
        "presence",
        "presence_expiry",
        "presence_users",
        "presence_profiles",
        "_idem",
    )

    def __init__(self, prefix: str, room: str) -> None:
        base = f"{prefix}:{{{room}}}"
        self.room = room
        self.channel = f"{base}:ch"  # pub/sub: messages and ephemeral events
        self.meta = f"{base}:meta"  # hash: e = epoch, s = newest offset
        self.log = f"{base}:log"  # stream: the capped history, entry id = offset
        # hash: what the log's changes need to be checked (authors, deletions,
        # reactions) and read state, one hash so each script passes one key
        # for it (fields: backplane/scripts/publish.lua)
        self.state = f"{base}:state"
        self.presence = f"{base}:pres"  # hash: connection -> user JSON
        self.presence_expiry = f"{base}:pexp"  # zset: connection -> expiry (ms)
        self.presence_users = f"{base}:pusr"  # hash: user id -> live connections (HLEN = users present)
        self.presence_profiles = f"{base}:pprf"  # hash: user id -> user JSON, for listing members
        self._idem = f"{base}:idem:"

    def idempotency(self, user_id: str, client_msg_id: str) -> str:
        # The user id is length-prefixed so no (user, id) pair can collide with another.
        return f"{self._idem}{len(user_id)}:{user_id}:{client_msg_id}"

    def presence_keys(self) -> list[str]:
        return [self.presence, self.presence_expiry, self.presence_users, self.presence_profiles]


def room_of_channel(prefix: str, channel: str) -> str:
    """Inverse of ``RoomKeys.channel``."""
    return channel[len(prefix) + 2 : -4]


def subject_key(prefix: str, subject: str, what: str) -> str:
    """The key of a per-subject limit (``subject`` is ``u:<user id>`` or
    ``ip:<address>``), e.g. ``sb:{u:alice}:rl:publish``. Each limit is one
    key in its own hash tag, so its script touches one Redis Cluster slot.
    A long subject (a user id is whatever the token says) is hashed."""
    if len(subject) > 128:
        kind, _, rest = subject.partition(":")
        subject = f"{kind}:sha1:{hashlib.sha1(rest.encode()).hexdigest()}"
    return f"{prefix}:{{{subject}}}:{what}"
