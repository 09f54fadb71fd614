"""A user's direct rooms in Redis (docs/protocol.md, direct rooms: our
addition to protocol §11).

Per user, two keys in the user's own hash tag (``sb:{u:alice}:dm`` and
``:dmu``, next to the user's limits): a sorted set of room names by last
activity (ms), capped at ``DIRECT_ROOMS_MAX``, and a hash of the other user
of each room (their ``{id,name}`` JSON). The keys are in another slot than
the room's, so they are written by their own script after the room's
publish, never by a script that touches the room (no cross-slot call on a
Redis Cluster). Both expire ``DIRECT_ROOMS_TTL_S`` after the last activity.
"""

from __future__ import annotations

from switchboard.backplane import scripts
from switchboard.backplane.keys import subject_key
from switchboard.backplane.store import Backplane
from switchboard.directs import DIRECT_ROOMS_MAX, DIRECT_ROOMS_TTL_S, DirectEntry


def user_keys(prefix: str, user_id: str) -> list[str]:
    """The sorted set and the hash of a user's direct rooms: one hash tag, so one slot."""
    return [subject_key(prefix, f"u:{user_id}", "dm"), subject_key(prefix, f"u:{user_id}", "dmu")]


async def touch(bp: Backplane, user_id: str, room: str, peer_json: bytes, ts_ms: int, *, overwrite: bool) -> bool:
    """`room` was active at `ts_ms` for `user_id`, whose other user is
    `peer_json` (kept only if none is stored, unless `overwrite`). True when
    the room was not in the user's list yet. Idempotent enough to retry."""
    keys = user_keys(bp.prefix, user_id)
    args = [room, ts_ms, peer_json, "1" if overwrite else "0", DIRECT_ROOMS_MAX, DIRECT_ROOMS_TTL_S]
    added = await bp.commands.execute(
        keys[0], "EVALSHA", scripts.DIRECT_TOUCH.sha, len(keys), *keys, *args, idempotent=True
    )
    return bool(added)


async def listing(bp: Backplane, user_id: str, limit: int) -> list[DirectEntry]:
    """Up to `limit` of the user's direct rooms, the most recently active first."""
    keys = user_keys(bp.prefix, user_id)
    reply = await bp.commands.execute(
        keys[0], "EVALSHA", scripts.DIRECT_LIST.sha, len(keys), *keys, limit, idempotent=True
    )
    out = []
    for i in range(0, len(reply), 3):
        room, score, peer = reply[i], reply[i + 1], reply[i + 2]
        out.append(DirectEntry(room.decode(), peer or None, int(float(score.decode()))))
    return out
