"""The user control API in Redis (docs/protocol.md "User control"): the
control channel every gateway listens on, bans, and the list of active rooms.

- Control channel: one pub/sub channel for the whole deployment, named like
  the channel of a pseudo-room ``CONTROL_ROOM`` that no client can join (it
  is not a valid room name). On a Redis Cluster it therefore lives in one
  fixed hash slot and travels by sharded pub/sub like a room's messages, and
  the gateways' subscribers (re)subscribe it with the same machinery as
  rooms. Commands are rare (an operator kicks a user): one slot is plenty.
  Payloads are ``k<command JSON>`` (``k`` keeps them apart from the room
  payloads of ``broker/payload.py``).
- Bans: one key per ban with a TTL (``SET ... PX``); the gateways read it at
  connect (user bans) and at join (room bans). A ban outlives any gateway
  and any pub/sub message lost during a reconnect.
- Active rooms: a room has members while its presence user hash (``pusr``,
  ``keys.py``) exists. Listing SCANs for those keys on every primary: it
  reads the whole key space, which is fine for an operator's call, not for a
  hot path.
"""

from __future__ import annotations

import hashlib
from typing import Any

from switchboard.backplane.keys import RoomKeys, subject_key
from switchboard.protocol.names import is_valid_room

# Not a valid room name (rooms start with a letter or digit), so no room's keys can collide with it.
CONTROL_ROOM = "!control"
CONTROL_PAYLOAD = b"k"
_USER_ID_MAX = 128  # longer user ids are hashed in key names (they are whatever a token says)


def control_channel(prefix: str) -> str:
    return RoomKeys(prefix, CONTROL_ROOM).channel


def user_ban_key(prefix: str, user_id: str) -> str:
    """``sb:{u:alice}:ban``: next to the user's other per-subject keys."""
    return subject_key(prefix, f"u:{user_id}", "ban")


def room_ban_key(prefix: str, room: str, user_id: str) -> str:
    """``sb:{room}:ban:<len>:<user id>``: in the room's hash slot. The user id
    is length-prefixed (no two pairs collide) and hashed when long."""
    if len(user_id) > _USER_ID_MAX:
        user_id = "sha1:" + hashlib.sha1(user_id.encode()).hexdigest()
    return f"{prefix}:{{{room}}}:ban:{len(user_id)}:{user_id}"


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def presence_users_pattern(prefix: str, room_prefix: str) -> str:
    """The SCAN pattern of the presence user hashes of rooms starting with
    `room_prefix` (room names hold no glob characters, the key prefix may)."""
    return f"{_glob_escape(prefix)}:{{{_glob_escape(room_prefix)}*}}:pusr"


def room_of_presence_key(prefix: str, key: str) -> str | None:
    """Inverse of ``RoomKeys.presence_users``; None for anything else."""
    head, tail = f"{prefix}:{{", "}:pusr"
    if not (key.startswith(head) and key.endswith(tail)):
        return None
    room = key[len(head) : -len(tail)]
    return room if is_valid_room(room) else None


async def scan_room_names(redis_clients: list[Any], prefix: str, room_prefix: str) -> set[str]:
    """Names of rooms with a presence user hash, on every given server (the
    primaries of a cluster, or the one Redis)."""
    pattern = presence_users_pattern(prefix, room_prefix)
    rooms: set[str] = set()
    for redis in redis_clients:
        async for key in redis.scan_iter(match=pattern, count=1000):
            room = room_of_presence_key(prefix, key.decode() if isinstance(key, bytes) else str(key))
            if room is not None:
                rooms.add(room)
    return rooms
